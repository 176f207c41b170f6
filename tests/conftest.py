"""Shared test fixtures (plain helpers shared by several modules are in tests/helpers.py).

The real data and checkpoints live in ``../shared`` beside the checkout (or where the environment
variable ``DAA_TF_SHARED`` points). They are read in place, never copied, through the one
``shared`` fixture below; tests that need them skip with a clear reason when the folder is absent.

The small models are session fixtures: built once, their compiled loops are traced once for the
whole run. A test that counts traces builds its own model instead.
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import helpers  # noqa: E402

SHARED_DIR = Path(os.environ.get("DAA_TF_SHARED", helpers.REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared`` fixture folder (data/, models/, docs/); skips the test when it is absent."""
    if not (SHARED_DIR / "models").is_dir() or not (SHARED_DIR / "data").is_dir():
        pytest.skip(
            f"shared fixtures not found at {SHARED_DIR} (expected ../shared beside the checkout, "
            "with data/ and models/); set DAA_TF_SHARED to their folder to run this test"
        )
    return SHARED_DIR


@pytest.fixture(scope="session")
def toy():
    """:func:`tests.helpers.toy_model`, shared by the attack and driver tests."""
    return helpers.toy_model()


@pytest.fixture(scope="session")
def dense():
    """:func:`tests.helpers.dense_model`, shared by the APGD, ODI, MultiTargeted, cascade and
    driver tests."""
    return helpers.dense_model()


@pytest.fixture(scope="session")
def curved():
    """:func:`tests.helpers.curved_model`, shared by the best-iterate and early-stop tests."""
    return helpers.curved_model()


@pytest.fixture(scope="session")
def recipe_checkpoint(shared, tmp_path_factory) -> Path:
    """The Inception-ResNet-v2 recipe checkpoint (~240 MB, written once per session): the recipe's
    908 variables of the shared layout, ``global_step`` and an Adam slot, as the release's two
    files (no state file). Returns its prefix."""
    import json

    import tensorflow as tf

    layout = json.loads((helpers.layout_dir(shared) / "variables.json").read_text())["variables"]
    folder = tmp_path_factory.mktemp("ens_adv_irv2")
    tensors = {v["name"]: tf.constant(helpers.recipe_value(k, v["shape"], v["kind"]))
               for k, v in enumerate(layout)}
    tensors["global_step"] = tf.constant(np.int64(123456))
    tensors["InceptionResnetV2/Logits/Logits/biases/Adam"] = tf.zeros([1001])
    helpers.save_v2(folder / helpers.CKPT_NAME, tensors)
    del tensors
    (folder / "checkpoint").unlink(missing_ok=True)  # the release ships no state file
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{helpers.CKPT_NAME}.data-00000-of-00001", f"{helpers.CKPT_NAME}.index"]
    return folder / helpers.CKPT_NAME


@pytest.fixture(scope="session")
def generic_files(tmp_path_factory):
    """The generic runner's inputs (:func:`tests.helpers.write_generic_files`)."""
    return helpers.write_generic_files(tmp_path_factory.mktemp("generic"))


@pytest.fixture(scope="session")
def generic_baseline(generic_files, tmp_path_factory):
    """One uninterrupted ``python -m challenges.attack`` DAA-BLOB run of the .keras model on the
    .npz (:data:`tests.helpers.GENERIC_DAA`): ``(completed process, output)``."""
    output = tmp_path_factory.mktemp("baseline") / "adv.npy"
    done = helpers.run_module("challenges.attack", {
        "model": generic_files["logits"], "data": generic_files["data"], **helpers.GENERIC_DAA,
        "output": output})
    assert done.returncode == 0, done.stderr
    return done, output

