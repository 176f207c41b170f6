"""The challenge runners end to end (challenges.runner behind ``python -m challenges.<name>``, and
the generic ``challenges.attack`` where they share a path: interruption and resume) in subprocesses
(repo root as cwd) on the shared fixtures, checked with ``python -m challenges.eval``; the flags'
choices, the registry's defaults and the offline refusals in process."""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from challenges import fetch_model, registry, resolve, runner, submission
from tests.helpers import (ENV, GENERIC_DAA, REPO_ROOT, command, evaluated_accuracy,
                           final_accuracy, interrupt_once_saved, mnist_fixtures, run_module)

# A small DAA-BLOB run: 200 MNIST images, 10 steps, 3 restarts, groups of 100.
MNIST_DAA = {"attack": "daa_blob", "num_examples": 200, "steps": 10, "restarts": 3,
             "particles": 100, "seed": 3}


def assert_evaluator_agrees(challenge: str, output: Path, fixtures: Dict[str, object],
                            runner_log: str, tmp_path: Path) -> np.ndarray:
    """Evaluates ``output`` with ``challenges.eval``; its accuracy is the runner's final one."""
    x_adv = np.load(output)
    pred_file = tmp_path / "pred.npy"
    done = run_module("challenges.eval", {"challenge": challenge, "attack_file": output,
                                          "num_examples": len(x_adv), "pred_file": pred_file,
                                          **fixtures})
    assert done.returncode == 0, done.stderr
    assert evaluated_accuracy(done.stdout) == final_accuracy(runner_log)
    pred = np.load(pred_file)
    assert pred.shape == (len(x_adv),) and np.issubdtype(pred.dtype, np.integer)
    return pred


@pytest.fixture(scope="module")
def mnist_run(shared, tmp_path_factory):
    """One uninterrupted MNIST DAA-BLOB run: ``(output, completed process)``."""
    output = tmp_path_factory.mktemp("mnist") / "attack.npy"
    done = run_module("challenges.mnist", {**MNIST_DAA, **mnist_fixtures(shared),
                                           "output": output})
    assert done.returncode == 0, done.stderr
    return output, done


# ----------------------------------------------------------------------------- end to end


def test_mnist_daa_blob_writes_a_valid_file_the_evaluator_agrees_with(mnist_run, shared,
                                                                        tmp_path):
    from daa_tf.data import load_mnist

    output, done = mnist_run
    x_adv = np.load(output)
    assert x_adv.dtype == np.float32 and x_adv.shape == (200, 784)
    x_nat, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=200)
    size = submission.check(x_adv, x_nat, registry.CHALLENGES["mnist"].format)
    assert 0 < size.linf <= 0.3 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not Path(runner.state_path(str(output))).exists()  # removed once the file is written
    log = done.stderr
    for expected in ("daa_blob", "eps 0.3", "10 steps", "3 restarts", "100 particles",
                     "c 1.1 (default)", "restart 1/3: accuracy", "restart 3/3: accuracy",
                     "L-inf", "mean L2", "elapsed", "NOT a leaderboard submission"):
        assert expected in log, expected
    assert "image-step" in done.stdout  # the library's progress bar
    assert_evaluator_agrees("mnist", output, mnist_fixtures(shared), log, tmp_path)


def test_mnist_strongest_writes_a_valid_file_the_evaluator_agrees_with(shared, tmp_path):
    """``--attack=strongest``: the cascade through the same runner, ``--steps`` its budget in
    gradients, ``--queries`` its Square stage's."""
    from daa_tf.data import load_mnist

    output = tmp_path / "strongest.npy"
    done = run_module("challenges.mnist", {
        "attack": "strongest", "steps": 100, "restarts": 1, "num_examples": 100, "verbose": 0,
        "loss": "cw", "queries": 50, "output": output, **mnist_fixtures(shared)})
    assert done.returncode == 0, done.stderr
    x_nat, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=100)
    size = submission.check(np.load(output), x_nat, registry.CHALLENGES["mnist"].format)
    assert 0 < size.linf <= 0.3 + 1e-6
    log = done.stderr
    for expected in ("strongest cascade", "budget 100 gradients per image", "stage 1: accuracy",
                     "stage 2: accuracy", "gradients per image: budget 100",
                     "--loss is set by the cascade's stages: ignored",
                     "budget 100 gradients per image, 50 queries per image",
                     "after Square\n", "queries per image: budget 50"):
        assert expected in log, expected
    assert "stage 3: accuracy" in log and "stage 4:" not in log  # 2 x 50 gradients, Square
    assert_evaluator_agrees("mnist", output, mnist_fixtures(shared), log, tmp_path)


def test_mnist_autoattack_plus_logs_every_stage_without_a_budget(shared, tmp_path):
    """``--attack=autoattack --autoattack_version=plus``: AutoAttack's own settings (no gradient
    budget, one restart unless given; ``--steps`` ignored with a warning), the robust accuracy
    logged after each of its six attacks, a valid file. On the natural model APGD-CE fools every
    image, so the later stages find nothing left to attack."""
    fixtures = {**mnist_fixtures(shared), "model_dir": shared / "models/mnist/natural"}
    output = tmp_path / "autoattack.npy"
    done = run_module("challenges.mnist", {
        "attack": "autoattack", "autoattack_version": "plus", "steps": 50, "num_examples": 20,
        "verbose": 0, "output": output, **fixtures})
    assert done.returncode == 0, done.stderr
    log = done.stderr
    labels = ("APGD-xent x 5", "APGD-DLR x 5", "FAB x 5", "Square", "APGD-T", "FAB-T")
    for i, label in enumerate(labels):
        assert re.search(rf"stage {i + 1}: accuracy [0-9.]+% \([0-9.]+ s\) after {label}\n",
                         log), label
    assert "stage 7:" not in log  # one restart: the challenge's 50 do not apply
    for expected in ("autoattack cascade, eps 0.3, no gradient budget, version plus",
                     "--steps is set by the cascade's stages: ignored by --attack=autoattack",
                     "gradients per image: budget 3300", "queries per image: budget 5000"):
        assert expected in log, expected
    x_nat, _ = load_mnist_images(shared, 20)
    size = submission.check(np.load(output), x_nat, registry.CHALLENGES["mnist"].format)
    assert 0 < size.linf <= 0.3 + 1e-6
    assert_evaluator_agrees("mnist", output, fixtures, log, tmp_path)


def load_mnist_images(shared: Path, count: int):
    from daa_tf.data import load_mnist

    return load_mnist(data_dir=shared / "data/mnist", num_examples=count)


def test_a_targeted_challenge_refuses_the_cascade():
    from daa_tf import catalogue

    settings = catalogue.cascade_settings(eps=2 / 255)
    with pytest.raises(ValueError, match="untargeted cascade"):
        runner._targeted(registry.CHALLENGES["imagenet"], settings)
    assert runner._targeted(registry.CHALLENGES["mnist"], settings) is settings


def _mnist_resume_case(request, tmp_path):
    """The MNIST runner, SIGINT (Ctrl-C), over an old output file it must leave untouched."""
    shared = request.getfixturevalue("shared")
    expected, _ = request.getfixturevalue("mnist_run")
    output = tmp_path / "attack.npy"
    np.save(output, np.zeros(3))
    return "challenges.mnist", {**MNIST_DAA, **mnist_fixtures(shared), "output": output}, \
        signal.SIGINT, expected


def _generic_resume_case(request, tmp_path):
    """The generic runner, SIGTERM, no output file before."""
    files = request.getfixturevalue("generic_files")
    _, expected = request.getfixturevalue("generic_baseline")
    return "challenges.attack", {"model": files["logits"], "data": files["data"], **GENERIC_DAA,
                                 "output": tmp_path / "adv.npy"}, signal.SIGTERM, expected


@pytest.mark.parametrize("case", [_mnist_resume_case, _generic_resume_case],
                         ids=["mnist", "generic"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(request, tmp_path, case):
    """A signal once the first restart's state is saved: exit status 130, the output as it was,
    the state kept and the command to resume logged; ``--resume`` then writes the uninterrupted
    run's file and removes the state."""
    module, options, sig, expected = case(request, tmp_path)
    output = options["output"]
    state = Path(runner.state_path(str(output)))
    old = output.read_bytes() if output.exists() else None
    returncode, err = interrupt_once_saved(command(module, options), state, sig)
    assert returncode == 130, err
    assert (output.read_bytes() if output.exists() else None) == old and state.exists()
    assert not Path(f"{output}.json").exists()
    assert "interrupted" in err and f"python -m {module}" in err and "--resume" in err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    done = run_module(module, {**options, "resume": True})
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr and "(earlier run)" in done.stderr
    assert np.array_equal(np.load(output), np.load(expected))
    assert not state.exists()
    if module == "challenges.attack":  # the generic runner's summary beside the output
        assert json.loads(Path(f"{output}.json").read_text())["restarts_resumed"] >= 1


@pytest.mark.slow
def test_cifar10_pgd_on_the_first_images(shared, tmp_path):
    fixtures = {"model_dir": shared / "models/cifar10/adv_trained_narrow",
                "data_dir": shared / "data/cifar10/test_first1000.npz"}
    output = tmp_path / "attack.npy"
    done = run_module("challenges.cifar10", {"attack": "pgd", "num_examples": 20, "steps": 3,
                                             "output": output, **fixtures})
    assert done.returncode == 0, done.stderr
    assert "eps 8, step size 2, 3 steps, 1 restarts, no random start" in done.stderr
    x_adv = np.load(output)
    assert x_adv.dtype == np.float32 and x_adv.shape == (20, 32, 32, 3)
    assert x_adv.min() >= 0 and x_adv.max() <= 255
    x_nat = np.load(shared / "data/cifar10/test_first1000.npz")["x"][:20].astype(np.float32)
    assert 0 < np.abs(x_adv - x_nat).max() <= 8 + 1e-4
    assert_evaluator_agrees("cifar10", output, fixtures, done.stderr, tmp_path)


def test_fashion_mnist_daa_dgf(shared, tmp_path):
    fixtures = {"model_dir": shared / "models/fashion_mnist/adv_trained",
                "data_dir": shared / "data/fashion_mnist"}
    output = tmp_path / "attack.npy"
    done = run_module("challenges.fashion_mnist", {
        "attack": "daa_dgf", "loss": "cw", "num_examples": 100, "particles": 50, "steps": 4,
        "restarts": 1, "output": output, **fixtures})
    assert done.returncode == 0, done.stderr
    assert "eps 0.2" in done.stderr and "c -0.01 (default)" in done.stderr
    x_adv = np.load(output)
    assert x_adv.dtype == np.float32 and x_adv.shape == (100, 784)
    assert_evaluator_agrees("fashion_mnist", output, fixtures, done.stderr, tmp_path)


# ------------------------------------------------------------------- refusals (no TensorFlow)


@pytest.mark.parametrize("option, value, message", [
    ("attack", "cw_pgd", "--attack"),
    ("loss", "l2", "--loss"),
    ("steps", 0, "--steps"),
    ("restarts", -1, "--restarts"),
    ("epsilon", -0.1, "--epsilon"),
    ("particles", 1, "--particles"),
    ("jit_compile", "maybe", "--jit_compile"),
    ("model", "robust", "--model"),
    ("batch_size", 150, "multiple of --particles"),
])
def test_bad_flag_values_fail_with_absl_errors(tmp_path, option, value, message):
    done = run_module("challenges.mnist", {option: value, "output": tmp_path / "a.npy"})
    assert done.returncode == 1
    assert "Flags parsing error" in done.stderr and message in done.stderr
    assert not (tmp_path / "a.npy").exists()


def test_unknown_flag_fails(tmp_path):
    done = run_module("challenges.cifar10", {"epsilon_max": 8})
    assert done.returncode == 1
    assert "Unknown command line flag 'epsilon_max'" in done.stderr


def test_fgsm_refuses_several_steps(tmp_path):
    done = run_module("challenges.mnist", {"attack": "fgsm", "steps": 5})
    assert done.returncode == 1 and "exactly one step" in done.stderr


def test_helpfull_shows_the_challenge_defaults():
    done = run_module("challenges.fashion_mnist", {"helpfull": True})  # absl exits with 1
    for expected in ("--attack", "--steps_per_round", "--resume", "--jit_compile",
                     "default: '100'", "default: '0.2'", "default: 'attack.npy'"):
        assert expected in done.stdout, expected


def test_missing_model_folder_is_refused(tmp_path):
    missing = tmp_path / "no_such_model"
    done = run_module("challenges.mnist", {"model_dir": missing, "output": tmp_path / "a.npy"})
    assert done.returncode == 1
    assert f"--model_dir={missing} does not exist" in done.stderr


def test_fashion_mnist_requires_model_dir(tmp_path):
    done = run_module("challenges.fashion_mnist", {"output": tmp_path / "a.npy"})
    assert done.returncode == 1
    assert "--model_dir is required for Fashion-MNIST" in done.stderr


# ------------------------------------------------------------------------------- in process


def test_the_flags_offer_the_catalogue_and_registry():
    """The CLIs' choices are read from the one catalogue and registry (no copies to keep in step)."""
    from daa_tf import catalogue

    def choices(module, flag):
        done = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=REPO_ROOT, env=ENV,
                              capture_output=True, text=True, timeout=120)
        listed = re.search(rf"--{flag}: <([^>]*)>", done.stdout).group(1)
        return re.sub(r"\s+", "", listed).split("|")  # absl wraps long lists

    assert choices("challenges.mnist", "attack") == list(catalogue.RUNNABLE)
    assert choices("challenges.mnist", "loss") == list(catalogue.LOSSES)
    assert choices("challenges.cifar10", "distribute") == list(catalogue.STRATEGIES)
    assert choices("challenges.eval", "challenge") == list(registry.CHALLENGES)
    assert choices("challenges.report", "examples_daa") == list(catalogue.DAA_ATTACKS)
    assert {n for n, c in registry.CHALLENGES.items() if c.downloadable} == set(
        fetch_model.CHALLENGES) & set(registry.CHALLENGES)


def test_the_defaults_are_the_papers():
    table = {name: (c.format.eps, c.defaults.step_size, c.defaults.steps, c.defaults.restarts,
                    c.defaults.particles, c.defaults.steps_per_round)
             for name, c in registry.CHALLENGES.items()}
    assert table == {"mnist": (0.3, 0.01, 200, 50, 200, 10),
                     "fashion_mnist": (0.2, 0.01, 100, 10, 200, 10),
                     "cifar10": (8.0, 2.0, 20, 1, 200, 10),
                     "imagenet": (2 / 255, 0.25 / 255, 50, 1, 32, 10)}
    assert registry.CHALLENGES["mnist"].format.shape() == (10000, 784)
    assert registry.CHALLENGES["cifar10"].format.shape() == (10000, 32, 32, 3)


def failing_loader(*args, **kwargs):
    from daa_tf.data import DataNotFoundError

    raise DataNotFoundError("no network")


def test_offline_without_model_and_data_names_both_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("DAA_TF_CACHE", str(tmp_path))
    monkeypatch.setenv(fetch_model.url_env_var("mnist", "secret"), "http://127.0.0.1:9/x.zip")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    import dataclasses

    offline = dataclasses.replace(registry.CHALLENGES["mnist"],
                                  data_loader=f"{__name__}:failing_loader")
    with pytest.raises(resolve.SetupError) as err:
        resolve.load_inputs(offline, None, "secret", None, None)
    message = str(err.value)
    assert "--model_dir=" in message and "--data_dir=" in message
    assert "no network" in message


def test_one_step_size_rule_for_library_runners_and_trainer():
    """catalogue.default_step_size: FGSM eps, APGD-scheduled 2 eps, the others the configured
    default (a challenge's, a recipe's); left to attack_settings (no eps yet), the same value."""
    from daa_tf import catalogue

    own = {"fgsm": 0.3, "rand_fgsm": 0.3, "apgd": 0.6, "apgd_daa_blob": 0.6,
           "apgd_daa_dgf": 0.6, "multitargeted": 0.6, "apgd_t": 0.6, "fab": 0.3, "fab_t": 0.3,
           "square": 0.6}
    for attack in catalogue.ATTACKS:
        expected = own.get(attack, 0.01)
        assert catalogue.default_step_size(attack, 0.3, configured=0.01) == pytest.approx(
            expected), attack
        later = catalogue.default_step_size(attack, configured=0.01)
        assert later == (None if attack in own else 0.01), attack
        settings = catalogue.attack_settings(attack, eps=0.3, step_size=later, steps=1)
        assert settings.step_size == pytest.approx(expected), attack
    assert catalogue.default_step_size("pgd", 0.3) is None  # no configured default: required
    with pytest.raises(ValueError, match="pgd needs step_size: it has no default for it; pass step_size=..."):
        catalogue.attack_settings("pgd", eps=0.3, steps=5)
