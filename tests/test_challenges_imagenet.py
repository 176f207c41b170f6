"""The ImageNet challenge: ``python -m challenges.imagenet`` on a NIPS 2017 folder made from the
layout fixture's four images and the recipe checkpoint (random weights), the PNG output, the
targets, and ``challenges.eval --challenge=imagenet``; the targets, rounding and flags in process.
"""
import re
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from challenges import imagenet, registry, resolve, runner, submission
from daa_tf import catalogue
from tests.helpers import ENV, REPO_ROOT, command, layout_dir, make_nips17
from tests.helpers import NIPS17_IDS as IDS
from tests.helpers import NIPS17_LABELS as LABELS

EPS = 2.0 / 255


def start(module: str, options: Dict[str, object]) -> subprocess.Popen:
    return subprocess.Popen(command(module, options), cwd=REPO_ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def logged(pattern: str, text: str) -> float:
    found = re.findall(pattern, text, flags=re.M)
    assert len(found) == 1, text[-3000:]
    return float(found[0])


# ------------------------------------------------------------------------------- in process

def test_least_likely_never_picks_the_background_class():
    logits = np.zeros((3, 1001), np.float32)
    logits[:, 0] = -100.0  # the background is the smallest logit: still never a target
    logits[0, 7], logits[1, 1000], logits[2, 1] = -5.0, -5.0, -5.0
    assert imagenet.least_likely(logits).tolist() == [7, 1000, 1]


def test_random_targets_avoid_the_label_and_follow_the_seed():
    y = np.repeat(np.array([1, 500, 1000]), 2000)
    t = imagenet.random_targets(y, seed=3)
    assert t.dtype == np.int64 and t.min() >= 1 and t.max() <= 1000
    assert not np.any(t == y)
    assert len(np.unique(t[y == 1000])) > 800  # spread over the other classes
    np.testing.assert_array_equal(t, imagenet.random_targets(y, seed=3))
    assert not np.array_equal(t, imagenet.random_targets(y, seed=4))


def test_quantise_rounds_then_keeps_the_bound():
    rng = np.random.default_rng(0)
    x_nat = rng.integers(0, 256, (2, 5, 5, 3)).astype(np.float32) / 255
    x_adv = np.clip(x_nat + rng.uniform(-EPS, EPS, x_nat.shape), 0, 1).astype(np.float32)
    q = imagenet.quantise(x_adv, x_nat, EPS)
    assert q.dtype == np.uint8 and q.shape == x_nat.shape
    np.testing.assert_array_equal(q, np.rint(x_adv.astype(np.float64) * 255))  # inside: rounded
    # an eps off the grid (2.5 levels): x_nat + 2.5/255 rounds to 3 levels, clipped back to 2
    off = np.full((1, 1, 1, 3), 100 / 255, np.float32)
    q = imagenet.quantise(off + 2.5 / 255, off, 2.5 / 255)
    assert q.ravel().tolist() == [102] * 3
    size = submission.perturbation(q.astype(np.float32) / 255, off)
    assert size.linf <= 2.5 / 255
    assert imagenet.quantise(np.ones_like(off), np.ones_like(off), EPS).max() == 255


def test_the_challenge_is_targeted_by_registry_not_by_name():
    challenge = registry.get_challenge("imagenet")
    assert challenge.targeted and challenge.targets.default == "least_likely"
    assert challenge.targets.choices == ("least_likely", "dataset", "random")
    assert challenge.format.shape() == (1000, 299, 299, 3) and challenge.format.eps == EPS
    assert challenge.defaults.particles == 32  # benchmarks/imagenet.py: see challenges.imagenet
    assert challenge.defaults.attack_batch_size(2) == 32
    assert challenge.defaults.attack_batch_size(None) == 32
    assert challenge.defaults.attack_batch_size(5) == 30
    assert challenge.defaults.attack_batch_size(40) == 40  # at least one group
    for name in ("mnist", "cifar10", "fashion_mnist"):
        other = registry.get_challenge(name)
        assert not other.targeted and other.defaults.attack_batch_size(200) is None
    pgd = catalogue.attack_settings("pgd", eps=EPS, step_size=EPS / 8, steps=2)
    assert runner._targeted(challenge, pgd).targeted
    assert not runner._targeted(registry.get_challenge("mnist"), pgd).targeted
    multi = catalogue.attack_settings("multitargeted", eps=EPS, steps=2)
    with pytest.raises(ValueError, match="chooses its own target classes"):
        runner._targeted(challenge, multi)


FETCHED = Path("fetched", "ens_adv_inception_resnet_v2")


def fake_fetcher() -> Path:
    return FETCHED


def offline_fetcher() -> Path:
    raise RuntimeError("no network.")


def test_a_missing_model_dir_is_fetched_after_the_data_is_read(tmp_path):
    import dataclasses

    imagenet_ = registry.get_challenge("imagenet")
    assert imagenet_.model_fetcher == "challenges.imagenet:fetch_model"
    data = make_nips17(tmp_path / "nips17", np.zeros((4, 299, 299, 3), np.uint8))
    fake = dataclasses.replace(imagenet_, model_fetcher=f"{__name__}:fake_fetcher")
    assert resolve.model_path(fake, None, "secret") == FETCHED
    assert resolve.model_path(fake, "mine", "secret") == Path("mine")  # --model_dir wins
    # no download before the data is known good
    offline = dataclasses.replace(imagenet_, model_fetcher=f"{__name__}:offline_fetcher")
    with pytest.raises(resolve.SetupError, match="--data_dir=.* does not exist"):
        resolve.check_paths(offline, None, str(tmp_path / "typo"))
    with pytest.raises(resolve.SetupError, match="--data_dir is required") as err:
        resolve.load_inputs(offline, None, "secret", None, None)
    assert "could not download" not in str(err.value)
    with pytest.raises(resolve.SetupError, match="could not download the ImageNet model: no "
                       "network. Or pass --model_dir="):
        resolve.load_inputs(offline, None, "secret", str(data), None)
    assert registry.get_challenge("mnist").model_fetcher is None


def test_target_flag_and_its_refusals():
    done = subprocess.run(command("challenges.imagenet", {}) + ["--helpfull"], cwd=REPO_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)
    listed = re.search(r"--target: <([^>]*)>", done.stdout).group(1)
    assert re.sub(r"\s+", "", listed).split("|") == ["least_likely", "dataset", "random"]
    assert "--png_dir" in done.stdout and "--attack" in done.stdout
    done = subprocess.run(command("challenges.mnist", {}) + ["--helpfull"], cwd=REPO_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert "--target" not in done.stdout and "--png_dir" not in done.stdout
    done = subprocess.run(command("challenges.eval", {"challenge": "mnist", "target": "random"}),
                          cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "untargeted" in done.stderr


# ------------------------------------------------------------------------- end to end (slow)

@pytest.fixture(scope="module")
def nips17(shared, recipe_checkpoint, tmp_path_factory) -> Dict[str, Path]:
    """A NIPS 2017 folder of the fixture's four images, and the recipe checkpoint's folder."""
    inputs = np.load(layout_dir(shared) / "inputs.npy")
    data = make_nips17(tmp_path_factory.mktemp("nips17"), inputs)
    return {"data_dir": data, "model_dir": recipe_checkpoint.parent, "inputs": inputs}


def clean_least_likely(model_dir: Path, x: np.ndarray) -> np.ndarray:
    from daa_tf.models import load_ens_adv_inception_resnet_v2
    logits = load_ens_adv_inception_resnet_v2(model_dir)(x).numpy()
    return imagenet.least_likely(logits)


def check_images(x_adv: np.ndarray, x_nat: np.ndarray) -> None:
    assert x_adv.dtype == np.float32 and x_adv.shape == (4, 299, 299, 3)
    assert np.all(np.isfinite(x_adv)) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv.astype(np.float64) - x_nat).max() <= EPS + submission.EPS_TOLERANCE
    assert np.abs(x_adv - x_nat).max() > EPS / 2  # the attack moved the images


@pytest.mark.slow
def test_targeted_runs_write_valid_files_pngs_and_score(nips17, tmp_path):
    common = {"model_dir": nips17["model_dir"], "data_dir": nips17["data_dir"], "steps": 1,
              "verbose": 0}
    pgd = start("challenges.imagenet", {**common, "attack": "pgd", "output": tmp_path / "pgd.npy",
                                        "png_dir": tmp_path / "png"})
    daa = start("challenges.imagenet", {**common, "attack": "daa_blob", "particles": 2,
                                        "target": "dataset", "output": tmp_path / "daa.npy"})
    x_nat = nips17["inputs"].astype(np.float32) / 255
    expected_targets = clean_least_likely(nips17["model_dir"], x_nat)
    runs = {"pgd": finish(pgd), "daa": finish(daa)}
    for name, done in runs.items():
        assert done.returncode == 0, (name, done.stderr[-3000:])
        check_images(np.load(tmp_path / f"{name}.npy"), x_nat)
        assert "targets: " + ("least_likely" if name == "pgd" else "dataset") in done.stderr
        logged(r"targeted success rate: (\d+\.\d\d)%", done.stderr)
    assert "2 particles per group" in runs["daa"].stderr
    assert not list(tmp_path.glob("*.state.npz")) and not list(tmp_path.glob(".*.tmp"))

    # the competition's output: PNGs of the same names, on the 8-bit grid, inside the ball
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == sorted([f"{i}.png" for i in IDS] + [imagenet.TARGET_CSV])
    from daa_tf.data import load_nips17
    (tmp_path / "png_set").mkdir()
    (tmp_path / "png_set" / "images").symlink_to(tmp_path / "png")
    (tmp_path / "png_set" / "images.csv").write_text(
        (nips17["data_dir"] / "images.csv").read_text())
    quantised = load_nips17(tmp_path / "png_set").x
    assert np.abs(quantised.astype(np.float64) - x_nat).max() <= EPS + 1e-6
    npy = np.load(tmp_path / "pgd.npy")
    assert np.abs(quantised - npy).max() <= 0.5 / 255 + 1e-6  # rounding moves at most half a level

    # the targets: each image's least likely class (PGD) and the csv's TargetClass (DAA)
    rows = [line.split(",") for line in (tmp_path / "png" / imagenet.TARGET_CSV).read_text()
            .splitlines()]
    assert [r[0] for r in rows] == IDS
    np.testing.assert_array_equal([int(r[1]) for r in rows], expected_targets)
    assert set(expected_targets.tolist()).isdisjoint({0})

    # the evaluator agrees with the runner on both numbers
    done = subprocess.run(command("challenges.eval", {
        "challenge": "imagenet", "attack_file": tmp_path / "pgd.npy", "num_examples": 4,
        "model_dir": nips17["model_dir"], "data_dir": nips17["data_dir"],
        "pred_file": tmp_path / "pred.npy"}), cwd=REPO_ROOT, env=ENV, capture_output=True,
        text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    pred = np.load(tmp_path / "pred.npy")
    accuracy = logged(r"^Accuracy: (\d+\.\d\d)%$", done.stdout)
    success = logged(r"^Targeted success rate: (\d+\.\d\d)% \(targets: least_likely\)$",
                     done.stdout)
    assert accuracy == pytest.approx(100 * np.mean(pred == np.array(LABELS)), abs=0.01)
    assert success == pytest.approx(100 * np.mean(pred == expected_targets), abs=0.01)
    assert accuracy == logged(r"final accuracy: (\d+\.\d\d)%", runs["pgd"].stderr)
    assert success == logged(r"targeted success rate: (\d+\.\d\d)%", runs["pgd"].stderr)
