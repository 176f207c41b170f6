"""Bucketed shapes (daa_tf.driver today; the planned daa_tf.batching): calls on fewer rows than
a batch are padded to a few sizes, so that the compiled loop is traced once per bucket."""
import numpy as np

from daa_tf import driver
from daa_tf import batching


def test_short_calls_are_padded_to_a_few_shapes():
    """A call on fewer rows than a batch is padded to the next multiple of batch / BUCKETS."""
    assert [batching.bucket(n, 1000) for n in (1, 125, 126, 903, 1000)] == [125, 125, 250, 1000,
                                                                         1000]
    assert batching.bucket(3, 5) == 3 and batching.bucket(7, 7) == 7
    assert len({batching.bucket(n, 1000) for n in range(1, 1001)}) == batching.BUCKETS
    # a plain graph (a new shape is only a retrace) pads to finer buckets than XLA
    assert batching.buckets_for(True) == batching.BUCKETS < batching.buckets_for(False)
    fine = batching.buckets_for(False)
    assert len({batching.bucket(n, 1000, fine) for n in range(1, 1001)}) == fine
    assert batching.bucket(904, 1000, fine) - 904 < 1000 / fine <= 1000 - 904
    a, b = np.arange(6).reshape(3, 2), np.array([7, 8, 9])
    pa, pb = batching.padded([a, b], 5)
    np.testing.assert_array_equal(pa, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(pb, [7, 8, 9, 9, 9])
    assert batching.padded([a], 3)[0] is a
