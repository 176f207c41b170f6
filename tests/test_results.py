"""The results of a run (daa_tf.results): the one worst-case merge of restarts, target runs and
stages, the fingerprint a saved state is checked against, and resuming from a saved state."""
import numpy as np
import pytest

from daa_tf import results


def test_merge_keeps_fooling_points_then_the_highest_loss():
    x = np.zeros((4, 1), np.float32)
    merged = results.Merged(x.copy(), np.array([1.0, 5.0, 1.0, 2.0]),
                            np.array([False, False, True, False]), [0.75])
    rows = np.arange(4)
    x_r = np.ones((4, 1), np.float32)
    merged.update(rows, x_r, np.array([0.5, 6.0, 9.0, 1.0]), np.array([True, False, False, False]))
    # 0: fooled now -> taken; 1: higher loss -> taken; 2: fooled before -> kept; 3: lower -> kept
    np.testing.assert_array_equal(merged.x[:, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(merged.fooled, [True, False, True, False])
    assert merged.accuracy == 0.5
    x_r2 = np.full((2, 1), 2.0, np.float32)
    merged.update(np.array([1, 2]), x_r2, np.array([0.0, 0.0]), np.array([True, True]))
    # a point that fools wins over any loss; an example fooled before keeps its first fooling point
    np.testing.assert_array_equal(merged.x[:, 0], [1, 2, 0, 0])
    assert merged.accuracy == 0.25


def test_fingerprint_covers_the_head_and_the_data():
    x0 = np.zeros((2, 3), np.float32)
    y = np.zeros(2, np.int32)
    fp = results.fingerprint([{"eps": 0.3}, 0, 10], x0, y)
    assert fp == results.fingerprint([{"eps": 0.3}, 0, 10], x0.copy(), y.copy())
    assert fp != results.fingerprint([{"eps": 0.3}, 1, 10], x0, y)
    assert fp != results.fingerprint([{"eps": 0.3}, 0, 10], x0 + 1, y)
    assert fp != results.fingerprint([{"eps": 0.3}, 0, 10], x0, y + 1)


def test_resumed_state_is_checked(tmp_path):
    path = str(tmp_path / "s.npz")
    merged = results.Merged(np.zeros((3, 2), np.float32), np.zeros(3, np.float32),
                            np.array([True, False, False]), [0.9, 0.6])
    merged.save(path, "abc")
    assert results.resumed(path, False, "abc", 5, "restarts") is None  # not asked to resume
    assert results.resumed(str(tmp_path / "none.npz"), True, "abc", 5, "restarts") is None
    back = results.resumed(path, True, "abc", 5, "restarts")
    np.testing.assert_array_equal(back.fooled, merged.fooled)
    assert back.restart_accuracies == [0.9, 0.6]
    with pytest.raises(ValueError, match="different run"):
        results.resumed(path, True, "xyz", 5, "restarts")
    with pytest.raises(ValueError, match="holds 2 stages, more than the 1 asked for"):
        results.resumed(path, True, "abc", 1, "stages")
    (tmp_path / "bad.npz").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="cannot read the saved state"):
        results.resumed(str(tmp_path / "bad.npz"), True, "abc", 5, "restarts")
