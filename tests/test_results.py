"""The results of a run (daa_tf.driver today; the planned daa_tf.results): the one worst-case
merge of restarts and target runs, and the fingerprint a saved state is checked against."""
import numpy as np

from daa_tf import attacks, driver


def test_merge_keeps_fooling_points_then_the_highest_loss():
    x = np.zeros((4, 1), np.float32)
    merged = driver.Merged(x.copy(), np.array([1.0, 5.0, 1.0, 2.0]),
                            np.array([False, False, True, False]), [0.75])
    x_r = np.ones((4, 1), np.float32)
    merged.add(x_r, np.array([0.5, 6.0, 9.0, 1.0]), np.array([True, False, False, False]))
    # 0: fooled now -> taken; 1: higher loss -> taken; 2: fooled before -> kept; 3: lower -> kept
    np.testing.assert_array_equal(merged.x[:, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(merged.fooled, [True, False, True, False])
    x_r2 = np.full((4, 1), 2.0, np.float32)
    merged.add(x_r2, np.array([0.0, 0.0, 0.0, 0.0]), np.array([True, True, True, False]))
    # a point that fools wins over any loss; an example fooled before keeps its first fooling point
    np.testing.assert_array_equal(merged.x[:, 0], [1, 2, 0, 0])
    assert merged.restart_accuracies == [0.75, 0.75, 0.25]



def test_old_states_keep_their_fingerprint():
    """Settings added with the new attacks stay out of the fingerprint at their defaults."""
    s = attacks.make_config("pgd", eps=0.3, step_size=0.01, steps=10).settings
    x0 = np.zeros((2, 3), np.float32)
    y = np.zeros(2, np.int32)
    fp = driver._fingerprint(s, x0, y, 0, 10)
    assert fp == driver._fingerprint(s, x0, y, 0, 10, early_stop=False)
    assert fp != driver._fingerprint(s.replace(odi_steps=2), x0, y, 0, 10)
    assert fp != driver._fingerprint(s, x0, y, 0, 10, early_stop=True)
