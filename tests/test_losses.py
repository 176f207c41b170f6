"""The losses (daa_tf.losses): DLR, its targeted form, the margins and the forms toward a target,
against NumPy (docs/algorithms.md#dlr, #margin, #losses-toward-a-target), and their names."""
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from daa_tf import catalogue, losses
from tests import numpy_reference as ref


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(5)
    z = rng.normal(0, 3, (64, 10)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    y[:16] = z[:16].argmax(axis=1)  # some correctly classified rows (then max_{j != y} is 2nd)
    t = (y + rng.integers(1, 10, 64)) % 10
    return z, y, t


def test_the_catalogue_names_the_new_losses():
    assert {"dlr", "margin"} <= set(catalogue.LOSSES)
    assert catalogue.LOSS_LABELS["dlr"] == "DLR"
    assert set(losses.TARGET_FORMS) == set(catalogue.LOSSES)


def test_a_loss_the_catalogue_names_but_losses_lacks_fails_the_import(monkeypatch):
    """daa_tf.losses checks on import that it implements the catalogue's loss names (so comparing
    LOSS_FUNCTIONS with the catalogue after the import could not fail): a fresh copy of the module
    must refuse to load when the catalogue it reads names one more loss."""
    monkeypatch.setattr(losses.catalogue, "LOSSES", losses.catalogue.LOSSES + ("hinge",))
    spec = importlib.util.spec_from_file_location("daa_tf_losses_copy", losses.__file__)
    with pytest.raises(ImportError, match="the catalogue names"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_dlr_matches_numpy(logits):
    z, y, _ = logits
    ours = losses.dlr(tf.constant(z), tf.constant(y)).numpy()
    np.testing.assert_allclose(ours, ref.dlr(z, y), rtol=1e-5, atol=1e-6)
    # scale and shift invariance (the point of DLR)
    np.testing.assert_allclose(losses.dlr(tf.constant(3 * z + 7), tf.constant(y)).numpy(), ours,
                               rtol=1e-4, atol=1e-5)
    assert np.all(ours[:16] < 0) and np.all(ours[:16] >= -1 - 1e-6)  # correct: in [-1, 0)


def test_dlr_gradient_matches_numpy(logits):
    z, y, _ = logits
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        total = tf.reduce_sum(losses.dlr(zt, tf.constant(y)))
    np.testing.assert_allclose(tape.gradient(total, zt).numpy(), ref.dlr_logit_gradient(z, y),
                               rtol=1e-4, atol=1e-6)


def test_targeted_dlr_matches_numpy(logits):
    z, y, t = logits
    pairs = tf.constant(np.stack([y, t], axis=1))
    ours = losses.dlr_targeted(tf.constant(z), pairs).numpy()
    np.testing.assert_allclose(ours, ref.dlr_targeted(z, y, t), rtol=1e-5, atol=1e-6)
    assert losses.target_form("dlr") is losses.dlr_targeted


def test_margins_match_numpy(logits):
    z, y, t = logits
    np.testing.assert_allclose(losses.margin(tf.constant(z), tf.constant(y)).numpy(),
                               ref.margin(z, y), rtol=1e-6, atol=1e-6)
    pairs = tf.constant(np.stack([y, t], axis=1))
    np.testing.assert_allclose(losses.margin_targeted(tf.constant(z), pairs).numpy(),
                               ref.margin_targeted(z, y, t), rtol=1e-6, atol=1e-6)
    # the margin is positive exactly when the example is misclassified
    wrong = z.argmax(axis=1) != y
    np.testing.assert_array_equal(losses.margin(tf.constant(z), tf.constant(y)).numpy() > 0,
                                  wrong)


def test_xent_and_cw_toward_a_target_descend_them(logits):
    z, y, t = logits
    pairs = tf.constant(np.stack([y, t], axis=1))
    np.testing.assert_allclose(losses.xent_targeted(tf.constant(z), pairs).numpy(),
                               -ref.xent(z.astype(np.float64), t), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses.cw_targeted(tf.constant(z), pairs).numpy(),
                               -losses.cw(tf.constant(z), tf.constant(t)).numpy())


def test_fooled_for_labels_pairs_and_targets(logits):
    z, y, t = logits
    pred = z.argmax(axis=1)
    zt = tf.constant(z)
    np.testing.assert_array_equal(losses.fooled(zt, tf.constant(y), False).numpy(), pred != y)
    np.testing.assert_array_equal(losses.fooled(zt, tf.constant(y), True).numpy(), pred == y)
    pairs = tf.constant(np.stack([y, t], axis=1))
    np.testing.assert_array_equal(losses.fooled(zt, pairs, False).numpy(), pred != y)


def test_odi_loss_is_the_weighted_sum(logits):
    z, _, _ = logits
    w = np.random.default_rng(0).uniform(-1, 1, z.shape).astype(np.float32)
    np.testing.assert_allclose(losses.odi(tf.constant(z), tf.constant(w)).numpy(),
                               np.sum(w.astype(np.float64) * z, axis=1), rtol=1e-5, atol=1e-5)
