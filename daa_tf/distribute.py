"""Scaling out on ``tf.distribute``: several GPUs, TPU cores or worker machines.

Design. The data set is cut into groups before anything is distributed: the driver permutes the set,
cuts it into batches of whole DAA groups exactly as on one device, and hands this module a *global
batch* of up to ``replicas x shard_size`` rows. :func:`run_loop` cuts it into *shards* of
``shard_size`` rows (a multiple of ``particles``: whole groups), gives each replica one shard
(``strategy.experimental_distribute_values_from_function``), runs the compiled step loop of
:mod:`daa_tf.loop` on every replica (``strategy.run``) and gathers the shards back in order
(``strategy.gather``). Groups never span two replicas, and the random starts were drawn per example
over the whole set beforehand, so nothing depends on the number of replicas.

Uneven tails. Every replica of one call gets a shard of the same shape (required by TPUs and by the
collective gather of multi-worker runs):

- replicas left without a full shard get a *dummy* shard (zeros, label 0) of the same shape; dummy
  shards are separate groups on separate replicas, never touch real examples, and are discarded;
- the set's last, partial group (``N mod particles`` examples) ends the last shard, which is shorter
  than the others. It is never padded (padding it would add particles to its group); the call that
  holds it passes every replica a second, *tail* shard of that length: the real one on one replica,
  dummies on the others.

Exact results on any number of devices. The driver uses ``shard_size = batch_size``: each replica
computes exactly one of the batches the single-device driver computes, on the same rows. This is
what makes the results bit for bit the same: TensorFlow's CPU matrix products (oneDNN and Eigen
alike) round an example's row differently depending on how many rows the batch holds (measured on
the MadryLab MNIST net: every row of ``fc1``'s output differs in the last bits between batches of
100 and 300 images; after 20 PGD steps, 2 of 245 images differ between batch sizes 100 and 150,
since a ``sign`` turns a last-bit difference into a different step). Splitting one batch across
replicas would therefore change results with the replica count; distributing whole batches does not.

Models. Create (or load) the model under ``strategy.scope()`` (:func:`strategy_scope`), so that its
variables are mirrored on every replica; a model built outside the scope may still work with
``MirroredStrategy`` (its variables are then read across devices) but not on TPUs.
Multi-worker runs are SPMD: every worker runs the same program on the same data and ends with the
same result; only the chief (:func:`is_chief`) should write files.
"""
import contextlib
from typing import Any, ContextManager, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from daa_tf import engine, loop
from daa_tf.catalogue import STRATEGIES


def make_strategy(name: str) -> Optional[tf.distribute.Strategy]:
    """The strategy named ``none`` (None: no tf.distribute), ``mirrored`` or ``multi_worker``.

    ``mirrored``: every local GPU, else every logical CPU device (one CPU unless the program split
    it with ``tf.config.set_logical_device_configuration``). ``multi_worker``:
    ``MultiWorkerMirroredStrategy`` configured from the ``TF_CONFIG`` environment variable (without
    it, one local worker); create it at the start of the program, before any other TensorFlow call.
    """
    if name == "none":
        return None
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")


def strategy_scope(strategy: Optional[tf.distribute.Strategy]) -> ContextManager:
    """``strategy.scope()``, or a context that does nothing for ``None``: create or load the model
    inside it (``with strategy_scope(strategy): model = load_madry_mnist(path)``)."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def num_replicas(strategy: Optional[tf.distribute.Strategy]) -> int:
    """Replicas in sync over all workers (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_chief(strategy: Optional[tf.distribute.Strategy]) -> bool:
    """True on the worker that should write files (always, except on non-chief workers of a
    multi-worker run)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


def _distributed_loop(strategy: tf.distribute.Strategy, model: loop.Model,
                      cfg: engine.AttackConfig) -> Any:
    """The cached ``tf.function`` running the compiled loop on every replica, then gathering."""
    def build(get_model):
        def replica_fn(main, tail, scalars, params):
            steps_fn = engine.compiled(get_model(), cfg)
            # a shard is (x0, y, x_start) or, for a random schedule, (x0, y, x_start, keys)
            return tuple(None if shard is None else
                         steps_fn(*shard[:3], *scalars, params, *shard[3:])
                         for shard in (main, tail))

        def run_and_gather(main, tail, scalars, params):
            outs = strategy.run(replica_fn, args=(main, tail, scalars, params))
            # with cfg.best (or queries) the loop returns a tuple of per-example tensors
            return tuple(None if out is None else tf.nest.map_structure(
                lambda t: strategy.gather(t, axis=0), out) for out in outs)

        return tf.function(run_and_gather, reduce_retracing=False)

    key = ("distributed", strategy) + cfg.loop_key
    return loop.cached(model, key, build)


def _per_replica(strategy: tf.distribute.Strategy, arrays: List[np.ndarray],
                 owner: Dict[int, int], rows: int) -> Tuple[Any, ...]:
    """Distributed shards of ``rows`` rows of each of ``arrays`` (``x0, y, x_start`` and a
    random schedule's ``keys``): replica ``r`` gets rows ``owner[r] * rows ...`` of the arrays,
    or zeros when it owns none."""
    def value_fn(arr):
        def fn(ctx):
            shard = owner.get(ctx.replica_id_in_sync_group)
            if shard is None:
                return tf.zeros((rows,) + arr.shape[1:], tf.as_dtype(arr.dtype))
            return tf.constant(arr[shard * rows:(shard + 1) * rows])
        return strategy.experimental_distribute_values_from_function(fn)
    return tuple(value_fn(a) for a in arrays)


def run_loop(strategy: tf.distribute.Strategy, model: loop.Model,
             cfg: engine.AttackConfig, x0: np.ndarray, y: np.ndarray, x_start: np.ndarray,
             steps: Optional[int] = None, shard_size: Optional[int] = None,
             keys: Optional[np.ndarray] = None) -> Any:
    """:func:`daa_tf.engine.run_loop` spread over the replicas of ``strategy``.

    ``x0`` (clean), ``y`` (labels: ``[N]``, or ``[N, 2]`` / ``[N, C]`` for the losses that take
    them) and ``x_start`` are NumPy arrays holding consecutive whole
    groups of ``particles`` (the last group may be smaller; for PGD-like attacks any rows).
    ``shard_size``: rows per replica and call, a multiple of ``particles`` (default: the batch's
    groups spread evenly over the replicas); a batch longer than ``replicas x shard_size`` takes
    several calls. Each shard is computed exactly as ``engine.run_loop`` computes a batch of
    those rows on one device (so the result equals ``engine.run_loop`` on consecutive batches of
    ``shard_size`` rows, bit for bit). ``keys``: the rows' keys ``[N]`` uint32, required for a
    random schedule (Square), sharded with the rows. Returns the points after ``steps`` (default
    the settings') steps, NumPy, ``x_start``'s shape; with ``cfg.best``, the tuple ``(x_last,
    x_best, objective, fooled)`` of NumPy arrays; with ``cfg.counts_queries`` the queries per
    example end the tuple (:func:`daa_tf.engine.outputs`'s layout).
    """
    if cfg.random and keys is None:
        raise ValueError(f"{cfg.settings.attack} draws inside its loop: pass the rows' keys")
    tupled = cfg.best or cfg.counts_queries
    if keys is not None:
        keys = np.asarray(keys, np.uint32)
    x0, x_start = np.asarray(x0, np.float32), np.asarray(x_start, np.float32)
    y = np.asarray(y)
    y = y.astype(np.float32 if np.issubdtype(y.dtype, np.floating) else np.int32)
    replicas = num_replicas(strategy)
    unit = cfg.settings.particles if cfg.interacting else 1
    n = len(x0)
    if shard_size is None:
        groups = -(-n // unit)
        shard_size = max(1, -(-groups // replicas)) * unit
    if shard_size < 1 or shard_size % unit:
        raise ValueError(f"shard_size must be a positive multiple of {unit}, got {shard_size}")
    fn = _distributed_loop(strategy, model, cfg)
    scalars, params = engine.loop_arguments(cfg, steps)
    outs = None
    for begin in range(0, n, replicas * shard_size):
        end = min(n, begin + replicas * shard_size)
        full, tail = divmod(end - begin, shard_size)
        chunk = [a[begin:end] for a in (x0, y, x_start) + ((keys,) if cfg.random else ())]
        # Shards absent from this call are None (static in the trace): nothing empty is gathered
        # (TF 2.21 segfaults gathering zero-row per-replica tensors across devices).
        main = (_per_replica(strategy, chunk, {r: r for r in range(full)}, shard_size)
                if full else None)
        tail_in = (_per_replica(strategy, [a[full * shard_size:] for a in chunk], {full: 0}, tail)
                   if tail else None)
        main_out, tail_out = fn(main, tail_in, scalars, params)
        main_out, tail_out = [None if o is None else (tuple(o) if tupled else (o,))
                              for o in (main_out, tail_out)]
        if outs is None:
            outs = [np.empty((n,) + tuple(t.shape[1:]), t.dtype.as_numpy_dtype)
                    for t in (main_out or tail_out)]
        for out, main_part, tail_part in zip(outs, main_out or [None] * len(outs),
                                             tail_out or [None] * len(outs)):
            if full:
                out[begin:begin + full * shard_size] = main_part.numpy()[:full * shard_size]
            if tail:
                out[begin + full * shard_size:end] = \
                    tail_part.numpy()[full * tail:(full + 1) * tail]
    return tuple(outs) if tupled else outs[0]
