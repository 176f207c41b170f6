"""``daa_tf.run`` over a ``tf.data.Dataset`` of ``(x, y)`` batches: the set is read once per pass,
attacked batch by batch and never held whole (docs/algorithms.md#streaming).

Each batch is an ordinary run of :func:`daa_tf.runs.run` on that batch's arrays, restarts
included: all restarts (a cascade: all its stages) of a batch run before the next batch is read,
so one pass reads the data once whatever the number of restarts. What is kept across batches is
per example one bool (still classified correctly) and per restart a count, so memory does not grow
with the set beyond those. The adversarial examples, when asked for (``output=`` a folder), are
written as they are made (:mod:`daa_tf.shards`).

Equal to the array path. For attacks whose examples do not interact, a batch's examples are
attacked exactly as the array path attacks them when the dataset's batch equals the array path's
``batch_size`` (the default here: the first batch's size): without a random start the adversarial
examples are the same bit for bit; with one restart and a random start only the draw differs
(batch ``b`` takes the seed :func:`batch_seed` ``(seed, b)``, batch 0 the seed itself, so a
one-batch dataset equals the array path exactly). With several restarts and early stop, later
restarts of the array path gather the surviving examples of the whole set into calls, here of the
batch: the same attack on calls of other sizes (equal up to last-bit rounding, see
:mod:`daa_tf.distribute`). DAA's particles are the consecutive groups inside each batch and its
rounds permute the batch, not the whole set: Algorithm 1 over the whole set needs the array form.

Resuming. With ``state_path`` the state is saved after every batch: the batches done, the
per-example correctness so far, the per-restart counts, the gradients and queries spent (a
cascade's: its clean count and stage labels too; :mod:`daa_tf.tally`), the shards written
and a running hash of the batches read. ``resume=True`` re-reads the dataset, checks that the
batches done are the same ones (the hash), skips them and goes on: the result equals an
uninterrupted pass. A resumed pass, like any second pass, needs a deterministic pipeline (not a
shuffle without a fixed seed, ``reshuffle_each_iteration``, random augmentation): with a state the
first batch is read once more before the pass and a difference refused; without one, a pass over
a dataset object streamed before compares its first batch with the earlier pass's (no extra read)
and warns about a difference; ``options().deterministic = False`` is warned about.

AutoAttack's checks (:mod:`daa_tf.checks`) are made once per pass: the model's on the first
batch, Square's drop on the figures over the whole set at the end.

``tf.distribute``: the dataset (of global batches) goes through the strategy's own input pipeline
(``strategy.experimental_distribute_dataset``); each global batch is put back together from the
replicas' parts (in replica order: the batch as read) and run as the array path runs it, one
batch of ``batch_size`` per replica.
"""
import hashlib
import json
import os
import warnings
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from daa_tf import cascade, distribute, loop, runs, shards
from daa_tf.settings import attack_settings, whole_number
from daa_tf.specs import DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND
from daa_tf.stages import RunSettings, cascade_settings, is_cascade
from daa_tf.tally import StreamResult, Tally

OnBatch = Callable[[int, int, float], None]


def is_dataset(value: Any) -> bool:
    """True for a ``tf.data.Dataset`` (what :func:`run` takes in place of arrays)."""
    return isinstance(value, tf.data.Dataset)


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index``: ``seed`` for the first batch, else a 32-bit draw of
    ``SeedSequence([seed, index])``."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def resolve_settings(attack: Any, params: Dict[str, Any]) -> RunSettings:
    """``attack`` (a name or settings) with ``params`` as validated settings."""
    if isinstance(attack, str):
        return (cascade_settings(attack, **params) if is_cascade(attack)
                else attack_settings(attack, **params))
    return attack.replace(**params) if params else attack


def check_dataset(dataset: tf.data.Dataset) -> None:
    """Refuses what is not a finite dataset of batched ``(x [B, ...], y [B])`` pairs."""
    spec = dataset.element_spec
    if isinstance(spec, dict):
        raise ValueError(f"the dataset yields dicts ({sorted(spec)}); it must yield (x, y) "
                         "batches, e.g. tfds.load(..., as_supervised=True).batch(B)")
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError("the dataset must yield (x, y) pairs of batches; got elements "
                         f"{spec}")
    x_spec, y_spec = spec
    if y_spec.shape.rank == 0 or (x_spec.shape.rank is not None and x_spec.shape.rank < 2):
        raise ValueError("the dataset yields single examples: batch it (dataset.batch(B))")
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the dataset is infinite (repeat()?): a pass must end")


def _labels(y: np.ndarray) -> np.ndarray:
    """Labels ``[B]`` (Keras-style ``[B, 1]`` flattened)."""
    return y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y


def _local(strategy: tf.distribute.Strategy, value: Any) -> np.ndarray:
    """A distributed batch put back together: the replicas' parts in order."""
    parts = strategy.experimental_local_results(value)
    if len(parts) == strategy.num_replicas_in_sync:
        return np.concatenate([np.asarray(p) for p in parts])
    return strategy.gather(value, axis=0).numpy()  # multi-worker: the other workers' parts too


def _single_worker(strategy: Optional[tf.distribute.Strategy]) -> bool:
    """True without a strategy or when this worker holds every replica."""
    return strategy is None or (len(strategy.extended.worker_devices)
                                == strategy.num_replicas_in_sync)


def untuned(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning off, unless its options set it either way.

    Measured on a 2-core CPU: while an iterator with autotuning lives, the attack's compiled calls
    take about 25% longer in wall time at the same CPU time (the tuning thread's interference),
    which no prefetching hides; off, ``AUTOTUNE`` parallelism is fixed (at the core count)."""
    if dataset.options().autotune.enabled is not None:
        return dataset
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def batches(dataset: tf.data.Dataset, strategy: Optional[tf.distribute.Strategy] = None
            ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The dataset's batches as NumPy ``(x, y)``, one at a time (through the strategy's input
    pipeline with a ``strategy``), read with :func:`untuned`."""
    dataset = untuned(dataset)
    if strategy is None:
        for x, y in dataset:
            yield np.asarray(x), _labels(np.asarray(y))
        return
    for x, y in strategy.experimental_distribute_dataset(dataset):
        yield _local(strategy, x), _labels(_local(strategy, y))


def _digest(previous: str, x: np.ndarray, y: np.ndarray) -> str:
    """The running hash of the batches read: ``previous`` extended by ``(x, y)``."""
    h = hashlib.sha256(previous.encode())
    for a in (x, y):
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# The first batch of the latest pass over each dataset object (its hash): a later pass over the
# same object compares its own first batch with it, at no extra read.
_FIRST_BATCHES: "weakref.WeakKeyDictionary[tf.data.Dataset, str]" = weakref.WeakKeyDictionary()
_RANDOM = ("two passes over the dataset begin with different batches: its order or content is "
           "random (a shuffle without a fixed seed or with reshuffle_each_iteration, random "
           "augmentation)")


def _check_first(dataset: tf.data.Dataset, first: str, again: Optional[str]) -> None:
    """Compares this pass's first batch (hash ``first``) with ``again`` (an extra read, or None)
    and with the previous pass over the same dataset object: refuses a difference with the extra
    read (kept for a resumable pass), warns about one with an earlier pass; warns about
    ``options().deterministic = False``."""
    if again is not None and again != first:
        raise ValueError(_RANDOM + "; a resumable pass needs the same batches every time")
    try:
        earlier = _FIRST_BATCHES.get(dataset)
        _FIRST_BATCHES[dataset] = first
    except TypeError:  # not weakly referable: no memory of earlier passes
        earlier = None
    if earlier is not None and earlier != first:
        warnings.warn(_RANDOM + "; the results of its passes cannot be compared", stacklevel=4)
    elif dataset.options().deterministic is False:
        warnings.warn("the dataset's options set deterministic=False: parallel stages may "
                      "reorder its elements from one pass to the next", stacklevel=4)


def _fingerprint(settings: RunSettings, restarts: int, steps_per_round: int, batch_size: Any,
                 seed: int, early_stop: Any, replicas: int) -> str:
    head = [repr(settings), restarts, steps_per_round, batch_size, seed, early_stop, replicas]
    return hashlib.sha256(json.dumps(head, default=repr).encode()).hexdigest()


def _default_batch(settings: RunSettings, first: int, replicas: int) -> Optional[int]:
    """The per-call batch (per replica) when the caller gives none: the first batch's share of
    one replica, unless that breaks DAA's whole groups (then the driver's default)."""
    size = -(-first // replicas)
    multiple = settings.batch_multiple
    return None if multiple and size % multiple else size


def run(model: loop.Model, dataset: tf.data.Dataset, attack: Any = "daa_blob",
        restarts: int = 1, steps_per_round: int = DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None, on_restart: Any = None,
        early_stop: Optional[bool] = None, output: Optional[str] = None,
        on_batch: Optional[OnBatch] = None, **attack_params: Any) -> StreamResult:
    """``attack`` over ``dataset``, a finite ``tf.data.Dataset`` of ``(x [B, ...], y [B])``
    batches (pixel units in the box; the last batch may be shorter); what ``daa_tf.run`` does
    with a dataset. The arguments are ``daa_tf.run``'s, with ``batch_size`` (per replica under a
    ``strategy``) defaulting to the first batch's size; and ``output``: a folder to write the
    adversarial examples to (:mod:`daa_tf.shards`); ``on_batch(index, examples, accuracy)``:
    after each batch, the examples read so far and their robust accuracy. ``on_restart(index,
    accuracy, seconds)`` is called at the end of the pass, once per restart (stage), with the
    running accuracy over the whole set and the seconds spent in that restart.
    """
    settings = resolve_settings(attack, attack_params)
    if not is_dataset(dataset):
        raise ValueError(f"expected a tf.data.Dataset, got {type(dataset).__name__}")
    check_dataset(dataset)
    restarts = whole_number("restarts", restarts, 1)
    replicas = distribute.num_replicas(strategy)
    chief = distribute.is_chief(strategy)
    again, key, done, writer = None, "", Tally(), None
    if state_path:  # a resumable pass: its key and state before reading, the first batch twice
        first = next(iter(batches(dataset.take(1))), None)
        if first is None:
            raise ValueError("the dataset yields no batches")
        again = _digest("", *first)
        if batch_size is None:
            batch_size = _default_batch(settings, len(first[0]), replicas)
        key = _fingerprint(settings, restarts, steps_per_round, batch_size, seed, early_stop,
                           replicas)
        if resume and os.path.exists(state_path):
            done = Tally.load(state_path, key)
    if output and done.batches and len(done.shards) != done.batches:
        raise ValueError(f"the pass saved in {state_path} wrote no shards for its "
                         f"{done.batches} batches done: resume it without output=, or start "
                         "afresh")
    cardinality = int(dataset.cardinality())
    bar = keras.utils.Progbar(cardinality if cardinality >= 0 else None, verbose=verbose,
                              stateful_metrics=["accuracy"], unit_name="batch")
    seconds = None
    digest = ""
    read = 0
    for index, (x, y) in enumerate(batches(dataset, strategy)):
        read = index + 1
        if index == 0:
            if batch_size is None:
                batch_size = _default_batch(settings, len(x), replicas)
            if _single_worker(strategy):  # several workers may shard the data otherwise
                _check_first(dataset, _digest("", x, y), again)
            if output and chief:
                writer = shards.ShardWriter(output, done.shards, meta={
                    "settings": repr(settings), "restarts": restarts, "seed": seed})
        if state_path:  # only a state needs it (for resuming)
            digest = _digest(digest, x, y)
        if index < done.batches:
            if index == done.batches - 1 and digest != done.digest:
                raise ValueError(f"the dataset's first {done.batches} batches differ from those "
                                 f"of the pass saved in {state_path}: cannot resume it")
            bar.update(index + 1)
            continue
        running: List[Tuple[float, float]] = []
        result = runs.run(model, x, y, settings, restarts=restarts,
                          steps_per_round=steps_per_round, batch_size=batch_size,
                          seed=batch_seed(seed, index), verbose=0, strategy=strategy,
                          on_restart=lambda i, a, s: running.append((a, s)),
                          early_stop=early_stop, checks_made=("model",) if index == 0 else ())
        done.add(result, [a for a, _ in running], len(y))
        done.digest = digest
        step_seconds = np.asarray([s for _, s in running])
        seconds = step_seconds if seconds is None else seconds + step_seconds
        if writer is not None:
            done.shards.append(writer.add(result.x_adv, y, result.correct))
        if state_path and chief:
            done.save(state_path, key)
        if writer is not None:
            writer.write_index(complete=False)
        accuracy = done.kept / done.examples
        bar.update(index + 1, values=[("accuracy", accuracy)])
        if on_batch is not None:
            on_batch(index, done.examples, accuracy)
    if read < done.batches:
        raise ValueError(f"the dataset holds {read} batches, fewer than the {done.batches} done "
                         f"in the pass saved in {state_path}: cannot resume it")
    if read == 0:
        raise ValueError("the dataset yields no batches")
    n = done.examples
    if n == 0:
        raise ValueError("the dataset yields no examples")
    result = done.result(seconds, output)
    if is_cascade(settings) and settings.spec.checks and result.clean_accuracy is not None:
        cascade.check_figures(result.clean_accuracy, result.stage_labels,
                              result.restart_accuracies)
    if writer is not None:
        writer.write_index(complete=True, accuracy=result.accuracy,
                           restart_accuracies=result.restart_accuracies)
    if on_restart is not None and seconds is not None:
        for i, (count, spent) in enumerate(zip(done.running, seconds)):
            on_restart(i, float(count) / n, float(spent))
    return result

