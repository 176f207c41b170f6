"""Streamed runs (``daa_tf.run`` on a ``tf.data.Dataset``): equal to the array path, the shards and
their index, resume in the middle of a pass, refused pipelines and datasets, DAA and the cascade
batch by batch, and the strategy's input pipeline on two replicas."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import shards, stream

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPE, CLASSES, N, BATCH = (4, 4, 1), 5, 23, 10  # batches of 10, 10 and 3
PGD = dict(eps=0.05, step_size=0.02, steps=4, random_start=False)


def toy_model() -> keras.Model:
    """A small fixed net on ``[N, 4, 4, 1]`` images in [0, 1]."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def toy_data(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.2, 0.8, (n,) + SHAPE).astype(np.float32),
            rng.integers(0, CLASSES, n).astype(np.int64))


def batched(x, y, batch=BATCH):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


@pytest.fixture(scope="module")
def model():
    return toy_model()


@pytest.fixture(scope="module")
def data():
    return toy_data()


def test_dataset_path_equals_the_array_path_bit_for_bit(model, data, tmp_path):
    x, y = data
    arrays = daa_tf.run(model, x, y, "pgd", batch_size=BATCH, verbose=0, **PGD)
    assert 0.0 < arrays.accuracy < 1.0  # some examples fooled, some not: the figure is informative
    out = tmp_path / "adv"
    streamed = daa_tf.run(model, batched(x, y), "pgd", verbose=0, output=str(out), **PGD)
    assert isinstance(streamed, stream.StreamResult)
    assert streamed.accuracy == arrays.accuracy
    np.testing.assert_array_equal(streamed.correct, arrays.correct)
    assert streamed.restart_accuracies == arrays.restart_accuracies
    assert (streamed.examples, streamed.batches) == (N, 3)
    assert streamed.gradients_per_image == arrays.gradients_per_image == PGD["steps"]
    assert streamed.gradients_mean == pytest.approx(arrays.gradients_mean)
    index = shards.read_index(str(out))
    assert index["complete"] and index["examples"] == N
    assert [s["count"] for s in index["shards"]] == [10, 10, 3]
    assert [s["shape"] for s in index["shards"]] == [[10, 4, 4, 1], [10, 4, 4, 1], [3, 4, 4, 1]]
    assert sum(s["correct"] for s in index["shards"]) == int(arrays.correct.sum())
    x_adv, labels = shards.load(str(out))
    np.testing.assert_array_equal(x_adv, arrays.x_adv)  # bit for bit
    np.testing.assert_array_equal(labels, y)
    with pytest.raises(AttributeError, match="output="):
        streamed.x_adv


def test_one_batch_with_a_random_start_equals_the_array_path(model, data):
    x, y = data
    kw = dict(PGD, random_start=True)
    arrays = daa_tf.run(model, x, y, "pgd", seed=4, restarts=2, verbose=0, **kw)
    streamed = daa_tf.run(model, batched(x, y, N), "pgd", seed=4, restarts=2, verbose=0, **kw)
    np.testing.assert_array_equal(streamed.correct, arrays.correct)
    assert streamed.restart_accuracies == arrays.restart_accuracies
    # later batches draw other starts: the seed of batch b is derived from (seed, b)
    assert stream.batch_seed(4, 0) == 4 and len({stream.batch_seed(4, b) for b in range(5)}) == 5


def test_resume_in_the_middle_of_a_pass_equals_an_uninterrupted_one(model, data, tmp_path):
    x, y = data
    kw = dict(PGD, random_start=True, restarts=2, seed=3, verbose=0)
    whole = daa_tf.run(model, batched(x, y), "pgd", output=str(tmp_path / "whole"), **kw)
    state, out = str(tmp_path / "state.npz"), str(tmp_path / "adv")
    seen = []

    def interrupt(index, examples, accuracy):
        seen.append((index, examples))
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        daa_tf.run(model, batched(x, y), "pgd", output=out, state_path=state, on_batch=interrupt,
                   **kw)
    assert seen == [(0, 10), (1, 20)]
    index = shards.read_index(out)  # what the interrupted pass left: two whole shards
    assert not index["complete"] and [s["count"] for s in index["shards"]] == [10, 10]
    with pytest.raises(ValueError, match="incomplete"):
        shards.load(out)
    attacked = []
    resumed = daa_tf.run(model, batched(x, y), "pgd", output=out, state_path=state, resume=True,
                         on_batch=lambda i, n, a: attacked.append(i), **kw)
    assert attacked == [2]  # only the batch left
    np.testing.assert_array_equal(resumed.correct, whole.correct)
    assert resumed.restart_accuracies == whole.restart_accuracies
    assert resumed.gradients_mean == pytest.approx(whole.gradients_mean)
    np.testing.assert_array_equal(shards.load(out)[0], shards.load(str(tmp_path / "whole"))[0])
    # other data under the same state: refused, not silently merged
    x2 = x.copy()
    x2[0] += 0.01
    with pytest.raises(ValueError, match="differ"):
        daa_tf.run(model, batched(x2, y), "pgd", state_path=state, resume=True, **kw)
    with pytest.raises(ValueError, match="different run"):
        daa_tf.run(model, batched(x, y), "pgd", state_path=state, resume=True,
                   **dict(kw, seed=4))


def test_a_fresh_run_replaces_an_earlier_folder(model, data, tmp_path):
    x, y = data
    out = str(tmp_path / "adv")
    daa_tf.run(model, batched(x, y, 5), "pgd", output=out, verbose=0, **PGD)  # 5 shards
    assert os.path.exists(os.path.join(out, "x-00004.npy"))
    daa_tf.run(model, batched(x, y), "pgd", output=out, verbose=0, **PGD)  # 3 shards
    assert not os.path.exists(os.path.join(out, "x-00004.npy"))
    assert len(shards.read_index(out)["shards"]) == 3
    assert len(list(shards.iterate(out))) == 3


def test_a_random_pipeline_is_refused_with_a_state_and_warned_about_without(model, data,
                                                                            tmp_path):
    x, y = data
    shuffled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(N).batch(BATCH)
    with pytest.raises(ValueError, match="different batches"):
        daa_tf.run(model, shuffled, "pgd", state_path=str(tmp_path / "s.npz"), verbose=0, **PGD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a first pass over it has nothing to compare with
        daa_tf.run(model, shuffled, "pgd", verbose=0, **PGD)
    with pytest.warns(UserWarning, match="different batches"):  # a second pass over it
        daa_tf.run(model, shuffled, "pgd", verbose=0, **PGD)
    fixed = batched(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            daa_tf.run(model, fixed, "pgd", verbose=0, **PGD)
    seeded = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        N, seed=1, reshuffle_each_iteration=False).batch(BATCH)
    result = daa_tf.run(model, seeded, "pgd", state_path=str(tmp_path / "s2.npz"), verbose=0,
                        **PGD)
    assert result.examples == N


@pytest.mark.parametrize("dataset,message", [
    (lambda x, y: tf.data.Dataset.from_tensor_slices({"image": x, "label": y}).batch(4), "dicts"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)), "batch it"),
    (lambda x, y: batched(x, y).repeat(), "infinite"),
    (lambda x, y: batched(x, y).take(0), "no batches"),
])
def test_datasets_that_cannot_be_streamed_are_refused(model, data, dataset, message):
    with pytest.raises(ValueError, match=message):
        daa_tf.run(model, dataset(*data), "pgd", verbose=0, **PGD)


def test_labels_beside_a_dataset_are_refused_and_arrays_need_labels(model, data):
    x, y = data
    with pytest.raises(ValueError, match="leave y out"):
        daa_tf.run(model, batched(x, y), y, attack="pgd", **PGD)
    with pytest.raises(ValueError, match="labels y are required"):
        daa_tf.run(model, x, attack="pgd", **PGD)


def test_daa_particles_are_groups_inside_each_batch(model):
    x, y = toy_data(20, seed=2)
    kw = dict(eps=0.05, step_size=0.02, steps=4, particles=4, c=5.0, seed=6, verbose=0,
              steps_per_round=2)
    streamed = daa_tf.run(model, batched(x, y, 8), "daa_blob", **kw)  # 8, 8, 4
    expected = np.concatenate([
        daa_tf.run(model, x[i:i + 8], y[i:i + 8], "daa_blob",
                   **dict(kw, seed=stream.batch_seed(6, b))).correct
        for b, i in enumerate(range(0, 20, 8))])
    np.testing.assert_array_equal(streamed.correct, expected)


def test_the_cascade_streams_batch_by_batch(model, data):
    x, y = data
    stages = [daa_tf.Stage("pgd", dict(steps=3, step_size=0.02)),
              daa_tf.Stage("apgd", dict(steps=3, loss="dlr"))]
    result = daa_tf.strongest(model, batched(x, y), eps=0.05, budget=6, stages=stages,
                              verbose=0, seed=2)
    expected = np.concatenate([
        daa_tf.strongest(model, x[i:i + BATCH], y[i:i + BATCH], eps=0.05, budget=6,
                         stages=stages, verbose=0, seed=stream.batch_seed(2, b)).correct
        for b, i in enumerate(range(0, N, BATCH))])
    np.testing.assert_array_equal(result.correct, expected)
    assert len(result.restart_accuracies) == 2  # one figure per stage, over the whole set
    assert result.restart_accuracies[-1] == pytest.approx(result.accuracy)


def test_square_streams_and_counts_its_queries(model, data):
    """Square (forward passes only) batch by batch: each batch as the array path with that batch's
    seed; the queries spent summed over the batches, the budget that of one image."""
    x, y = data
    kw = dict(eps=0.05, steps=40, verbose=0)
    result = daa_tf.run(model, batched(x, y), "square", seed=5, **kw)
    parts = [daa_tf.run(model, x[i:i + BATCH], y[i:i + BATCH], "square",
                        seed=stream.batch_seed(5, b), batch_size=BATCH, **kw)
             for b, i in enumerate(range(0, N, BATCH))]
    np.testing.assert_array_equal(result.correct, np.concatenate([p.correct for p in parts]))
    assert result.gradients_per_image == 0 and result.queries_per_image == 40
    spent = sum(p.queries_mean * len(p.correct) for p in parts) / N
    assert result.queries_mean == pytest.approx(spent)
    assert 0 < result.queries_mean <= 40


def test_autoattack_streams_with_its_figures_and_checks_once(model, data, monkeypatch):
    """AutoAttack over a dataset: each batch as the array path with that batch's seed; its
    per-attack figures (clean first) and Square's queries over the whole set; the model checked
    on the first batch only and Square's drop judged once, on the whole set's figures."""
    from daa_tf import cascade
    x, y = data
    checked, judged = [], []
    check_model, check_figures = cascade._check_model, cascade.check_figures
    monkeypatch.setattr(cascade, "_check_model",
                        lambda m, x0, *a: (checked.append(len(x0)), check_model(m, x0, *a)))
    monkeypatch.setattr(cascade, "check_figures",
                        lambda *a: (judged.append(a), check_figures(*a)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daa_tf.checks.EvaluationWarning)  # 5 classes, 9 targets
        result = daa_tf.autoattack(model, batched(x, y), eps=0.02, seed=5, verbose=0)
        assert checked == [BATCH] and len(judged) == 1
        parts = [daa_tf.autoattack(model, x[i:i + BATCH], y[i:i + BATCH], eps=0.02,
                                   seed=stream.batch_seed(5, b), batch_size=BATCH, verbose=0)
                 for b, i in enumerate(range(0, N, BATCH))]
    np.testing.assert_array_equal(result.correct, np.concatenate([p.correct for p in parts]))
    figures = result.accuracies()
    assert list(figures) == ["clean", "APGD-xent", "APGD-T", "FAB-T", "Square"]
    clean = np.argmax(model.predict(x, verbose=0), axis=1) == y
    assert figures["clean"] == pytest.approx(clean.mean())
    assert figures["clean"] > figures["APGD-xent"] >= figures["Square"] == result.accuracy
    assert judged[0] == (figures["clean"], result.stage_labels, result.restart_accuracies)
    assert result.queries_per_image == 5000 and result.gradients_per_image > 0
    spent = sum(p.queries_mean * len(p.correct) for p in parts) / N
    assert 0 < result.queries_mean == pytest.approx(spent)


def test_a_saved_tally_is_read_back_and_an_older_one_refused(tmp_path):
    """The streamed state keeps queries, a cascade's clean count and labels; a state without
    them (an older version's) is refused with a sentence, not a KeyError."""
    from daa_tf.tally import Tally
    tally = Tally(correct=[np.array([True, False]), np.array([False])], own=np.array([1.0]),
                  running=np.array([1.0]), spent=3.0, budget=4, queried=70.0, query_budget=50,
                  clean=2.0, labels=["APGD-xent", "Square"], digest="d", shards=[])
    path = str(tmp_path / "state.npz")
    tally.save(path, "key")
    back = Tally.load(path, "key")
    assert (back.queried, back.query_budget, back.clean, back.labels, back.kept, back.examples) \
        == (70.0, 50, 2.0, ["APGD-xent", "Square"], 1, 3)
    Tally(correct=[np.array([True])]).save(path, "key")
    assert Tally.load(path, "key").clean is None
    with np.load(path) as saved:
        older = {k: saved[k] for k in saved.files if k not in ("queried", "clean")}
    np.savez(path, **older)
    with pytest.raises(ValueError, match="older version"):
        Tally.load(path, "key")


def test_on_restart_gets_the_running_accuracy_of_the_whole_set(model, data):
    x, y = data
    kw = dict(PGD, random_start=True, restarts=3, seed=1, verbose=0)
    calls = []
    result = daa_tf.run(model, batched(x, y), "pgd", on_restart=lambda *a: calls.append(a), **kw)
    assert [c[0] for c in calls] == [0, 1, 2]
    accuracies = [c[1] for c in calls]
    assert accuracies == sorted(accuracies, reverse=True)  # the worst case only gets worse
    assert accuracies[-1] == pytest.approx(result.accuracy)
    assert all(c[2] > 0 for c in calls) and len(result.restart_seconds) == 3


_TWO_REPLICAS = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import daa_tf
from daa_tf import distribute
from tests.test_stream import PGD, toy_data, toy_model, batched
strategy = distribute.make_strategy("mirrored")
with strategy.scope():
    model = toy_model()
x, y = toy_data()
kw = dict(PGD, verbose=0)
arrays = daa_tf.run(model, x, y, "pgd", batch_size=5, strategy=strategy, **kw)
streamed = daa_tf.run(model, batched(x, y), "pgd", strategy=strategy, output=sys.argv[1], **kw)
x_adv, _ = daa_tf.shards.load(sys.argv[1])
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "same_x": bool(np.array_equal(x_adv, arrays.x_adv)),
                  "same_correct": bool(np.array_equal(streamed.correct, arrays.correct))}))
"""


def test_two_replicas_read_through_the_strategys_input_pipeline(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, str(tmp_path / "adv")],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"replicas": 2, "same_x": True, "same_correct": True}


def test_the_streaming_benchmark_runs_small():
    from benchmarks import streaming

    row = streaming.timing(300, 100, repeats=1)
    assert row["same_correct"] and row["images"] == 300
    assert set(row["wall_s"]) == {"arrays"} | {f"{kind}_{pipeline}" for kind in ("stream", "read")
                                              for pipeline in ("sliced", "batched", "plain")}
    (memory,) = streaming.memory([250], 100)  # a fresh process
    assert memory["images"] == 250 and memory["peak_mb"] > 0


def test_autotuning_is_off_for_the_pass_unless_the_dataset_sets_it(data):
    x, y = data
    assert stream.untuned(batched(x, y)).options().autotune.enabled is False
    options = tf.data.Options()
    options.autotune.enabled = True
    chosen = batched(x, y).with_options(options)
    assert stream.untuned(chosen) is chosen
