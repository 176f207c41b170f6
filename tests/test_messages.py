"""Careless inputs get one sentence naming the problem and the fix, never a traceback (issue 22):
damaged checkpoints (with the intact one training can resume from), models returning a dict,
empty batches, ``.npz`` files with mismatched or object arrays, labels of shape ``[N, 1]`` (one
rule for the API and the command line), ``--num_examples`` beyond the test set, a failed run's
``--output`` folder, the help flags' exit status and the messages' grammar."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import daa_tf
from daa_tf import data, validation
from daa_tf.models import checkpoint_writer as cw
from daa_tf.models.madry_mnist import build_madry_mnist

from challenges import data_source, registry, resolve

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                   os.environ.get("PYTHONPATH")]))}
MNIST = registry.get_challenge("mnist")


def run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def dense(outputs=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,))
    logits = keras.layers.Dense(10)(inputs)
    return keras.Model(inputs, logits if outputs is None else outputs(logits))


def images(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (n, 784)).astype(np.float32)


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    """A training folder keeping MNIST checkpoints at steps 1, 2 and 3."""
    model = build_madry_mnist()
    for step in (1, 2, 3):
        cw.save_madry_mnist(model, tmp_path / "run", step, max_to_keep=3)
    return tmp_path / "run"


def truncate(path: Path, keep: int = 500) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_truncated_data_file_is_one_sentence_in_the_runners(checkpoints):
    truncate(checkpoints / "checkpoint-3.data-00000-of-00001")
    with pytest.raises(resolve.SetupError) as err:
        resolve.load_model(MNIST, checkpoints)
    message = str(err.value)
    assert "checkpoint-3: cannot read variable" in message
    assert "its .data file is truncated or corrupt" in message
    assert "copy or download the checkpoint again" in message


@pytest.mark.parametrize("damage", ["data", "index"])
def test_resuming_names_the_newest_intact_checkpoint(checkpoints, damage):
    from challenges import train

    if damage == "data":
        truncate(checkpoints / "checkpoint-3.data-00000-of-00001")
    else:
        (checkpoints / "checkpoint-3.index").write_bytes(b"garbage" * 10)
    with pytest.raises(resolve.SetupError) as err:
        train._restore(build_madry_mnist(), "madry_mnist", str(checkpoints), None)
    message = str(err.value)
    assert "checkpoint-3" in message and ("truncated or corrupt" in message)
    assert message.endswith(f"delete checkpoint-3.index and checkpoint-3.data-* in {checkpoints} "
                            "and rerun with --resume to continue from checkpoint-2, the newest "
                            "intact one")


def test_resuming_without_an_intact_checkpoint_says_to_start_afresh(checkpoints):
    from challenges import train

    for step in (1, 2, 3):
        truncate(checkpoints / f"checkpoint-{step}.data-00000-of-00001")
    with pytest.raises(resolve.SetupError, match="keeps no older intact checkpoint: train afresh "
                                                 "in another --model_dir"):
        train._restore(build_madry_mnist(), "madry_mnist", str(checkpoints), None)


def test_train_resume_of_a_truncated_checkpoint_exits_with_the_sentence(shared, checkpoints):
    truncate(checkpoints / "checkpoint-3.data-00000-of-00001")
    done = run("challenges.train", "--challenge=mnist", f"--model_dir={checkpoints}", "--resume",
               f"--data_dir={shared / 'data' / 'mnist'}", "--num_examples=100", "--batch_size=50",
               "--train_steps=5", "--steps=1", cwd=checkpoints.parent)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "IndexError" not in done.stderr.replace(
        "(IndexError: Read less bytes than requested)", "")
    assert "continue from checkpoint-2, the newest intact one" in done.stderr


# ----------------------------------------------------------------------- models and batches


def test_a_model_returning_a_dict_is_named(tmp_path):
    model = dense(lambda logits: {"logits": logits})
    y = np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=r"the model returns a dict \(keys \['logits'\]\), not one "
                                         r"logits tensor: .*lambda x: model\(x\)\['logits'\]"):
        daa_tf.pgd(model, images(), y, eps=0.1, step_size=0.05, steps=1)
    from challenges import attack

    with pytest.raises(resolve.SetupError, match="returns a dict"):
        attack.check_model(model, images(), y, "a test model")


@pytest.mark.parametrize("call", [
    lambda m, x, y: daa_tf.pgd(m, x, y, eps=0.1, step_size=0.05, steps=1),
    lambda m, x, y: daa_tf.daa_blob(m, x, y, eps=0.1, step_size=0.05, steps=1),
    lambda m, x, y: daa_tf.run(m, x, y, attack="pgd", eps=0.1, step_size=0.05, steps=1,
                               verbose=0),
], ids=["pgd", "daa_blob", "run"])
def test_an_empty_batch_is_named(call):
    with pytest.raises(ValueError, match=r"^x holds no images \(shape \[0, 784\]\): pass a batch "
                                         "of at least one$"):
        call(dense(), images(0), np.zeros(0, np.int64))


# ------------------------------------------------------------------------------- npz files


def test_npz_x_and_y_of_different_lengths_are_refused_whatever_is_used(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 784), np.uint8), y=np.zeros(12, np.int64))
    with pytest.raises(resolve.SetupError, match=r"d.npz: x holds 20 images but y holds 12 "
                                                 "labels: save one label per image"):
        data_source.load(data_source.parse(str(tmp_path / "d.npz")), 1.0, 5)
    with pytest.raises(ValueError, match="d.npz: x holds 20 images but y holds 12 labels"):
        data.load_mnist(data_dir=tmp_path / "d.npz", num_examples=5)


def test_object_arrays_are_refused_naming_the_file(tmp_path):
    x = np.array([np.zeros(784), "not an image"], dtype=object)
    np.savez(tmp_path / "o.npz", x=x, y=np.zeros(2, np.int64))
    for load in (lambda: data_source.load(data_source.parse(str(tmp_path / "o.npz")), 1.0, None),
                 lambda: data.load_mnist(data_dir=tmp_path / "o.npz")):
        with pytest.raises((ValueError, resolve.SetupError),
                           match=f"{tmp_path / 'o.npz'}: refused, its x or y is an object array"):
            load()


# ------------------------------------------------------------------------------------ labels


def test_labels_of_shape_n_by_1_are_read_as_n_by_the_one_rule(tmp_path):
    y = np.arange(6)[:, None] % 10
    np.testing.assert_array_equal(validation.labels(y, 6), np.arange(6))
    np.testing.assert_array_equal(validation.check_batch(images(6), y, 0.0, 1.0), np.arange(6))
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 784), np.uint8), y=y)
    loaded = data_source.load(data_source.parse(str(tmp_path / "d.npz")), 1.0, None)
    np.testing.assert_array_equal(loaded.y, np.arange(6))
    np.testing.assert_array_equal(data.load_mnist(data_dir=tmp_path / "d.npz")[1], np.arange(6))


def test_other_label_shapes_are_refused_everywhere(tmp_path):
    y = np.zeros((6, 2), np.int64)  # e.g. one-hot over two classes
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[6\] \(or \[6, 1\]\)"):
        validation.check_batch(images(6), y, 0.0, 1.0)
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 784), np.uint8), y=y)
    with pytest.raises(resolve.SetupError, match="y.argmax"):
        data_source.load(data_source.parse(str(tmp_path / "d.npz")), 1.0, None)
    with pytest.raises(ValueError, match=r"d.npz: labels must have shape \[N\] = \[6\]"):
        data.load_mnist(data_dir=tmp_path / "d.npz")


def test_the_api_reads_labels_of_shape_n_by_1():
    """One label rule: [N] or [N, 1] (squeezed) in the attack functions, run and strongest."""
    x, y = images(6), np.arange(6) % 10
    model = dense()
    kw = dict(eps=0.1, step_size=0.05, steps=2, random_start=False)
    expected = daa_tf.pgd(model, x, y, **kw)
    np.testing.assert_array_equal(daa_tf.pgd(model, x, y[:, None], **kw).numpy(),
                                  expected.numpy())
    target = daa_tf.multitargeted(model, x, y, eps=0.1, steps=2, targets=2)
    np.testing.assert_array_equal(
        daa_tf.multitargeted(model, x, y[:, None], eps=0.1, steps=2, targets=2).numpy(),
        target.numpy())
    flat = daa_tf.run(model, x, y, attack="pgd", verbose=0, **kw)
    tall = daa_tf.run(model, x, y[:, None], attack="pgd", verbose=0, **kw)
    np.testing.assert_array_equal(tall.x_adv, flat.x_adv)
    np.testing.assert_array_equal(tall.correct, flat.correct)
    cascade = daa_tf.strongest(model, x, y[:, None], eps=0.1, budget=4, verbose=0)
    assert cascade.x_adv.shape == x.shape and cascade.correct.shape == (6,)
    with pytest.raises(ValueError, match="label"):
        daa_tf.pgd(model, x, np.stack([y, y], axis=1), **kw)


# --------------------------------------------------------------------------- command lines


def test_num_examples_beyond_the_test_set_gives_no_misleading_warning(shared, tmp_path):
    done = run("challenges.mnist", f"--model_dir={shared / 'models' / 'mnist' / 'adv_trained'}",
               f"--data_dir={shared / 'data' / 'mnist'}", "--num_examples=10001",
               f"--output={tmp_path / 'a.npy'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "covers only" not in done.stderr
    assert "num_examples=10001 but mnist test" in done.stderr
    assert "holds only 10000 examples: pass at most 10000" in done.stderr


def test_check_output_creates_no_folder(tmp_path):
    resolve.check_output(str(tmp_path / "new" / "sub" / "a.npy"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(resolve.SetupError, match="is a file"):
        resolve.check_output(str(tmp_path / "file" / "sub" / "a.npy"))


def test_a_failed_run_leaves_no_output_folder(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([1, "x"], dtype=object), y=np.zeros(2, np.int64))
    dense().save(tmp_path / "m.keras")
    done = run("challenges.attack", f"--model={tmp_path / 'm.keras'}",
               f"--data={tmp_path / 'o.npz'}", "--epsilon=0.1", "--clip_min=0", "--clip_max=1",
               f"--output={tmp_path / 'new' / 'sub' / 'a.npy'}", cwd=tmp_path)
    assert done.returncode == 1 and "object array" in done.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("module", ["challenges.mnist", "challenges.attack", "challenges.eval",
                                    "challenges.train", "challenges.fetch_model"])
def test_help_exits_with_status_0(module, tmp_path):
    full = run(module, "--helpfull", cwd=tmp_path)
    assert full.returncode == 0 and "--helpfull" in full.stdout, full.stderr[-500:]
    short = run(module, "--help", cwd=tmp_path)
    assert short.returncode == 0 and "Try --helpfull" in short.stdout
    bad = run(module, "--no_such_flag", cwd=tmp_path)
    assert bad.returncode == 1


def test_batch_messages_read_as_sentences():
    x = images(4)
    for bad in (x * 2, np.where(np.arange(784) == 3, np.nan, x).astype(np.float32)):
        with pytest.raises(ValueError) as err:
            validation.check_batch(bad, np.zeros(4, np.int64), 0.0, 1.0,
                                   name="the data's images")
        text = str(err.value)
        assert text.startswith("the data's images: ")
        assert " has " not in text and " contains " not in text
