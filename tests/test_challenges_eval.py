"""The evaluator (``python -m challenges.eval``) and the submission checks
(challenges.submission) it shares with the runners: every refusal, its tolerances, and a valid
file scored as the library scores it."""
import os
from pathlib import Path

import numpy as np
import pytest

from challenges import submission
from challenges.registry import CHALLENGES
from tests.helpers import evaluated_accuracy, mnist_fixtures, run_module

MNIST = CHALLENGES["mnist"].format
CIFAR = CHALLENGES["cifar10"].format


@pytest.fixture(scope="module")
def mnist_first10(shared):
    from daa_tf.data import load_mnist

    return load_mnist(data_dir=shared / "data/mnist", num_examples=10)


def near_eps(x_nat: np.ndarray, eps: float) -> np.ndarray:
    """``x_nat`` moved by ``eps`` away from the nearer edge of [0, 1] (valid at this eps)."""
    return np.where(x_nat < 0.5, x_nat + eps, x_nat - eps).astype(np.float32)


# ------------------------------------------------------------------------- end to end


def test_a_valid_subset_file_is_scored_and_its_predictions_saved(shared, mnist_first10,
                                                                 tmp_path):
    import daa_tf
    from daa_tf.models import load_madry_mnist

    x_nat, y = mnist_first10
    x_adv = near_eps(x_nat, 0.3 + 0.5e-4)  # inside the 1e-4 tolerance
    attack_file, pred_file = tmp_path / "attack.npy", tmp_path / "pred.npy"
    np.save(attack_file, x_adv)
    done = run_module("challenges.eval", {"challenge": "mnist", "attack_file": attack_file,
                                          "num_examples": 10, "pred_file": pred_file,
                                          **mnist_fixtures(shared)})
    assert done.returncode == 0, done.stderr
    pred, _, _ = daa_tf.evaluate(load_madry_mnist(shared / "models/mnist/adv_trained"), x_adv, y)
    assert evaluated_accuracy(done.stdout) == round(100 * float(np.mean(pred == y)), 2)
    assert np.array_equal(np.load(pred_file), pred)
    assert f"Output saved at {pred_file}" in done.stdout
    assert "not a leaderboard score" in done.stderr


def test_a_perturbation_over_eps_is_refused(shared, mnist_first10, tmp_path):
    x_nat, _ = mnist_first10
    attack_file = tmp_path / "attack.npy"
    np.save(attack_file, near_eps(x_nat, 0.25))  # valid at the challenge's 0.3, not at 0.2
    done = run_module("challenges.eval", {"challenge": "mnist", "attack_file": attack_file,
                                          "num_examples": 10, "epsilon": 0.2,
                                          "pred_file": tmp_path / "pred.npy",
                                          **mnist_fixtures(shared)})
    assert done.returncode == 1
    assert "maximum perturbation found 0.25" in done.stderr and "allowed 0.2" in done.stderr
    assert "Accuracy" not in done.stdout and not (tmp_path / "pred.npy").exists()


def bad_file(case: str) -> np.ndarray:
    x = np.full(MNIST.shape(10), 0.5, np.float32)
    if case == "shape":
        return x.reshape(10, 28, 28)
    if case == "rows":
        return np.concatenate([x, x])
    if case == "nan":
        x[3, 7] = np.nan
    elif case == "inf":
        x[0, 0] = np.inf
    elif case == "range":
        x[1, 1] = 1.0 + 2e-4
    elif case == "negative":
        x[1, 1] = -2e-4
    return x


@pytest.mark.parametrize("case, message", [
    ("shape", "Invalid shape: expected (10, 784), found (10, 28, 28)"),
    ("rows", "Invalid shape: expected (10, 784), found (20, 784)"),
    ("nan", "1 NaN and 0 inf"),
    ("inf", "0 NaN and 1 inf"),
    ("range", "Invalid pixel range: expected [0, 1]"),
    ("negative", "Invalid pixel range: expected [0, 1]"),
])
def test_invalid_files_are_refused(tmp_path, case, message):
    attack_file = tmp_path / "attack.npy"
    np.save(attack_file, bad_file(case))
    done = run_module("challenges.eval", {"challenge": "mnist", "attack_file": attack_file,
                                          "num_examples": 10, "model_dir": tmp_path,
                                          "pred_file": tmp_path / "pred.npy"})
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "pred.npy").exists()


def test_a_full_size_expectation_without_num_examples(tmp_path):
    attack_file = tmp_path / "attack.npy"
    np.save(attack_file, np.zeros((10, 784), np.float32))
    done = run_module("challenges.eval", {"challenge": "mnist", "attack_file": attack_file})
    assert done.returncode == 1
    assert "expected (10000, 784), found (10, 784)" in done.stderr
    assert "--num_examples=10" in done.stderr


@pytest.mark.parametrize("options, message", [
    ({"challenge": "svhn"}, "--challenge"),
    ({}, "--challenge"),
    ({"challenge": "mnist", "epsilon": 0}, "--epsilon"),
])
def test_bad_evaluator_flags(options, message):
    done = run_module("challenges.eval", options)
    assert done.returncode == 1
    assert "Flags parsing error" in done.stderr and message in done.stderr


def test_missing_attack_file_and_model_folder(tmp_path):
    done = run_module("challenges.eval", {"challenge": "mnist",
                                          "attack_file": tmp_path / "none.npy"})
    assert done.returncode == 1 and "no attack file at" in done.stderr
    np.save(tmp_path / "attack.npy", np.zeros((5, 784), np.float32))
    done = run_module("challenges.eval", {"challenge": "mnist", "num_examples": 5,
                                          "attack_file": tmp_path / "attack.npy",
                                          "model_dir": tmp_path / "missing"})
    assert done.returncode == 1 and "--model_dir=" in done.stderr
    assert "does not exist" in done.stderr


# ------------------------------------------------------------------ checks, in process


def test_check_values_tolerances():
    ok = np.zeros(CIFAR.shape(2), np.float32)
    ok[0, 0, 0, 0] = 255 + 0.9e-4 * 255  # inside 1e-4 of the range
    submission.check_values(ok, CIFAR, 2)
    ok[0, 0, 0, 0] = 255 + 1.1e-4 * 255
    with pytest.raises(submission.InvalidSubmission, match="pixel range"):
        submission.check_values(ok, CIFAR, 2)
    with pytest.raises(submission.InvalidSubmission, match="dtype"):
        submission.check_values(np.zeros(MNIST.shape(1), complex), MNIST, 1)
    submission.check_values(np.zeros(MNIST.shape(), np.float32), MNIST)


def test_check_perturbation_tolerance_and_size():
    x_nat = np.zeros((2, 4))
    size = submission.check_perturbation(x_nat + [[0.3, 0, 0, 0], [0, 0, 0, 0]], x_nat, 0.3)
    assert size.linf == pytest.approx(0.3) and size.mean_l2 == pytest.approx(0.15)
    submission.check_perturbation(x_nat + 0.3 + 0.9e-4, x_nat, 0.3)
    with pytest.raises(submission.InvalidSubmission, match="maximum perturbation"):
        submission.check_perturbation(x_nat + 0.3 + 1.1e-4, x_nat, 0.3)


def test_write_never_writes_an_invalid_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "attack.npy"
    x_nat = np.full(MNIST.shape(3), 0.5, np.float32)
    submission.write(path, x_nat + 0.1, x_nat, MNIST)
    old = np.load(path)
    assert old.dtype == np.float32 and old.shape == (3, 784)
    with pytest.raises(submission.InvalidSubmission):
        submission.write(path, x_nat + 0.4, x_nat, MNIST)
    assert np.array_equal(np.load(path), old)
    assert sorted(os.listdir(tmp_path)) == ["attack.npy"]  # no temporary file left behind


def test_load_refuses_what_is_not_one_array(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    with pytest.raises(submission.InvalidSubmission, match="npz"):
        submission.load(tmp_path / "a.npz")
    np.save(tmp_path / "objects.npy", np.array([{}, None], dtype=object))
    with pytest.raises(submission.InvalidSubmission, match="not a readable"):
        submission.load(tmp_path / "objects.npy")
    Path(tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(submission.InvalidSubmission, match="not a readable"):
        submission.load(tmp_path / "junk.npy")
