"""Inception-ResNet-v2 port (daa_tf.models.inception_resnet_v2): slim's logits and aux logits on
the shared layout's recipe checkpoint.

The shared folder ``models/imagenet/ens_adv_inception_resnet_v2_layout`` holds the 908 slim
variable names and shapes, four images and the logits of the original TF-slim graph with every
variable filled by a seeded recipe. The recipe checkpoint (~240 MB) is written once per session
(the ``recipe_checkpoint`` fixture of tests/conftest.py).
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from daa_tf.models import LOADERS, inception_resnet_v2, load_ens_adv_inception_resnet_v2
from daa_tf.models import load_model
from tests.helpers import CKPT_NAME, layout_dir, save_v2


@pytest.fixture(scope="module")
def layout(shared):
    return json.loads((layout_dir(shared) / "variables.json").read_text())["variables"]


@pytest.fixture(scope="module")
def images(shared) -> np.ndarray:
    x = np.load(layout_dir(shared) / "inputs.npy")
    assert x.shape == (4, 299, 299, 3) and x.dtype == np.uint8
    return x.astype(np.float32) / 255.0


def assert_close_to_slim(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape == (4, 1001)
    tol = 1e-3 * np.max(np.abs(expected))
    err = np.max(np.abs(ours - expected))
    assert err < tol, f"max |difference| {err:.3g} >= {tol:.3g}"
    assert np.array_equal(ours.argmax(1), expected.argmax(1))


def test_names_and_shapes_are_slims(layout):
    model = inception_resnet_v2.build_inception_resnet_v2(aux_logits=True)
    ours = {n: tuple(v.shape) for n, v in inception_resnet_v2.slim_variables(model).items()}
    assert ours == {v["name"]: tuple(v["shape"]) for v in layout}
    assert len(ours) == 908
    plain = inception_resnet_v2.slim_variables(inception_resnet_v2.build_inception_resnet_v2())
    aux = {n for n in ours if n.startswith("InceptionResnetV2/AuxLogits/")}
    assert len(aux) == 10 and set(ours) - set(plain) == aux


def test_prefix_with_aux_logits_matches_slim(shared, recipe_checkpoint, images):
    model = load_ens_adv_inception_resnet_v2(recipe_checkpoint, aux_logits=True)
    logits, aux = model(images, training=False)
    assert_close_to_slim(logits.numpy(), np.load(layout_dir(shared) / "expected_logits.npy"))
    assert_close_to_slim(aux.numpy(), np.load(layout_dir(shared) / "expected_aux_logits.npy"))


def test_folder_loads_logits_only_from_pixels_in_unit_range(shared, recipe_checkpoint, images):
    model = load_model("ens_adv_inception_resnet_v2", recipe_checkpoint.parent)
    assert model.input_shape == (None, 299, 299, 3)
    assert model.output_shape == (None, 1001)  # one output: the aux head is not attacked
    assert_close_to_slim(model(images).numpy(), np.load(layout_dir(shared) / "expected_logits.npy"))
    rescale = model.get_layer("to_minus1_1")
    np.testing.assert_allclose(rescale(np.array([[0.0, 0.5, 1.0]], np.float32)).numpy(),
                               [[-1.0, 0.0, 1.0]])


def layout_only_tensors(layout) -> tuple:
    """One-element slices of every variable (names and full shapes right, no data to load)."""
    tensors = {v["name"]: tf.ones([1] * len(v["shape"])) for v in layout}
    return tensors, {v["name"]: v["shape"] for v in layout}


def test_missing_variable_is_named(layout, tmp_path):
    tensors, shapes = layout_only_tensors(layout)
    gone = "InceptionResnetV2/Repeat/block35_7/Branch_1/Conv2d_0b_3x3/weights"
    del tensors[gone]
    save_v2(tmp_path / CKPT_NAME, tensors, shapes)
    with pytest.raises(ValueError, match=f"1 variable\\(s\\) missing: '{gone}'"):
        load_ens_adv_inception_resnet_v2(tmp_path)


def test_wrong_shape_is_named(layout, tmp_path):
    tensors, shapes = layout_only_tensors(layout)
    bad = "InceptionResnetV2/Repeat_2/block8_3/Conv2d_1x1/biases"
    shapes[bad] = [2081]
    save_v2(tmp_path / CKPT_NAME, tensors, shapes)
    with pytest.raises(ValueError, match=f"'{bad}' has shape \\[2081\\], expected \\[2080\\]"):
        load_ens_adv_inception_resnet_v2(tmp_path / CKPT_NAME)


def test_aux_variables_needed_only_with_aux_head(layout, tmp_path):
    tensors, shapes = layout_only_tensors(layout)
    tensors = {n: t for n, t in tensors.items() if "/AuxLogits/" not in n}
    save_v2(tmp_path / CKPT_NAME, tensors, shapes)
    with pytest.raises(ValueError, match=r"10 variable\(s\) missing: 'InceptionResnetV2/AuxLogits"):
        load_ens_adv_inception_resnet_v2(tmp_path, aux_logits=True)
    # without the aux head the layout passes; only reading the (one-element) slices fails
    with pytest.raises(Exception, match="InceptionResnetV2/Conv2d_1a_3x3/weights") as err:
        load_ens_adv_inception_resnet_v2(tmp_path)
    assert "missing" not in str(err.value)


def test_nothing_there_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="--challenge=imagenet"):
        load_ens_adv_inception_resnet_v2(tmp_path)
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        load_ens_adv_inception_resnet_v2(tmp_path / CKPT_NAME)


def test_registered():
    assert LOADERS["ens_adv_inception_resnet_v2"] is load_ens_adv_inception_resnet_v2
