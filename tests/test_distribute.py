"""tf.distribute (daa_tf.distribute): the same result, bit for bit (no tolerance), on one device,
on 2 or 4 logical CPU devices (MirroredStrategy), on two worker processes
(MultiWorkerMirroredStrategy on loopback) and through the MNIST runner with --distribute=mirrored.

Logical devices and multi-worker collectives must be configured before TensorFlow initialises, so
those runs happen in fresh subprocesses (tests/distribute_worker.py) on the shared MNIST fixtures.
The in-process tests use a one-device MirroredStrategy on toy models: they exercise the code path
of every kind of attack (APGD's and the best iterates' tuple outputs, MultiTargeted's label pairs,
ODI), the shard arithmetic and the checks, but not several replicas.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import distribute
from daa_tf import engine
from tests.helpers import REPO_ROOT, TOY_CLASSES, TOY_SHAPE, dense_batch, dense_model, toy_model

N, PARTICLES = 11, 4
EPS, STEP = 0.3, 0.05
TIMEOUT = 240  # seconds for one subprocess run (usually 10-20)
ATTACKS = ("pgd", "daa_blob")


# ------------------------------------------------------------------------------ in-process


@pytest.fixture(scope="module")
def strategy():
    return distribute.make_strategy("mirrored")  # here: the one CPU device of this process


@pytest.fixture(scope="module")
def model(strategy):
    with distribute.strategy_scope(strategy):
        return toy_model()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return (rng.uniform(0.2, 0.8, (N,) + TOY_SHAPE).astype(np.float32),
            rng.integers(0, TOY_CLASSES, N))


@pytest.fixture(scope="module")
def dense_in_scope(strategy):
    with distribute.strategy_scope(strategy):
        return dense_model()


@pytest.fixture(scope="module")
def dense_data(dense_in_scope):
    return dense_batch(dense_in_scope, 51)


def test_make_strategy_and_helpers(strategy):
    assert distribute.make_strategy("none") is None
    with pytest.raises(ValueError, match="unknown strategy 'tpu_pod'"):
        distribute.make_strategy("tpu_pod")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert distribute.num_replicas(strategy) == 1 and distribute.num_replicas(None) == 1
    assert distribute.is_chief(strategy) and distribute.is_chief(None)
    with distribute.strategy_scope(None):
        pass
    with distribute.strategy_scope(strategy):
        assert tf.distribute.get_strategy() is strategy


TOY_RUN = dict(eps=EPS, step_size=STEP, steps=5, steps_per_round=2, seed=4,
               batch_size=PARTICLES * 2)
DENSE_RUN = dict(eps=0.04, seed=3, batch_size=4, restarts=2)
# case: (model fixture, data fixture, run arguments)
STRATEGY_CASES = {
    "pgd": ("model", "data", dict(attack="pgd", **TOY_RUN)),
    "momentum_pgd": ("model", "data", dict(attack="momentum_pgd", **TOY_RUN)),
    "daa_blob": ("model", "data", dict(attack="daa_blob", particles=PARTICLES, **TOY_RUN)),
    "daa_dgf": ("model", "data", dict(attack="daa_dgf", particles=PARTICLES, **TOY_RUN)),
    # the stronger attacks: tuple outputs (best iterates), label pairs (targets), ODI
    "apgd": ("dense_in_scope", "dense_data", dict(attack="apgd", steps=6, loss="dlr",
                                                  **DENSE_RUN)),
    "pgd_odi_best": ("dense_in_scope", "dense_data",
                     dict(attack="pgd", step_size=0.01, steps=4, init="odi", best=True,
                          **DENSE_RUN)),
    "multitargeted": ("dense_in_scope", "dense_data",
                      dict(attack="multitargeted", steps=4, targets=2, **DENSE_RUN)),
    "daa_blob_best": ("dense_in_scope", "dense_data",
                      dict(attack="daa_blob", step_size=0.01, steps=5, particles=4, best=True,
                           c=5.0, **DENSE_RUN)),
    "apgd_daa_blob": ("dense_in_scope", "dense_data",
                      dict(attack="apgd_daa_blob", steps=5, particles=4, **DENSE_RUN)),
}


@pytest.mark.parametrize("case", list(STRATEGY_CASES))
def test_run_with_a_strategy_equals_run_without(request, strategy, case):
    model_fixture, data_fixture, kw = STRATEGY_CASES[case]
    model = request.getfixturevalue(model_fixture)
    x0, y = request.getfixturevalue(data_fixture)
    plain = daa_tf.run(model, x0, y, verbose=0, **kw)
    spread = daa_tf.run(model, x0, y, strategy=strategy, verbose=0, **kw)
    np.testing.assert_array_equal(spread.x_adv, plain.x_adv)
    assert spread.restart_accuracies == plain.restart_accuracies


@pytest.mark.parametrize("shard_size", [PARTICLES, 2 * PARTICLES, None])
def test_shards_are_the_batches_of_one_device(strategy, model, data, shard_size):
    # 11 rows = 2 whole groups of 4 and a partial one of 3; shards of whole groups, several calls.
    x0, y = data
    cfg = engine.make_config("daa_blob", eps=EPS, step_size=STEP, steps=3, particles=PARTICLES,
                              c=5.0)
    start = engine.start_points(cfg, tf.constant(x0), engine.seed_tensor(0)).numpy()
    y = y.astype(np.int32)
    got = distribute.run_loop(strategy, model, cfg, x0, y, start, shard_size=shard_size)
    size = shard_size or 3 * PARTICLES
    expected = np.concatenate([
        engine.run_loop(model, cfg, tf.constant(x0[i:i + size]), tf.constant(y[i:i + size]),
                        tf.constant(start[i:i + size])).numpy() for i in range(0, N, size)])
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="multiple of 4"):
        distribute.run_loop(strategy, model, cfg, x0, y, start, shard_size=6)


# ------------------------------------------------------------------- several devices / workers


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _start(args: List[str], env: Dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.distribute_worker"] + args,
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(procs: List[subprocess.Popen], logs: List[Path]) -> None:
    """Waits for every process (TIMEOUT in all); when one fails or time runs out, kills the ones we
    started (each in its own process group) and fails with the end of their logs."""
    deadline = time.monotonic() + TIMEOUT
    failed = None
    while failed is None and any(proc.poll() is None for proc in procs):
        if time.monotonic() > deadline:
            failed = f"timed out after {TIMEOUT} s"
        elif any(proc.poll() not in (None, 0) for proc in procs):
            failed = "failed"
        else:
            time.sleep(0.2)
    codes = [proc.poll() for proc in procs]
    if failed is None and any(codes):
        failed = "failed"
    if failed:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        tails = "\n".join(f"--- {log.name} (exit code {proc.returncode})\n"
                          + log.read_text(errors="replace")[-3000:]
                          for proc, log in zip(procs, logs))
        pytest.fail(f"distribute worker {failed}:\n{tails}")


def _run_worker(tmp: Path, name: str, args: List[str]) -> Path:
    log = tmp / f"{name}.log"
    _finish([_start(args, _env(), log)], [log])
    return tmp / f"{name}.npz"


def _worker_args(shared: Path, out: Path, cpus: int, strategy: str) -> List[str]:
    return ["--cpus", str(cpus), "--strategy", strategy, "--shared", str(shared), "--out", str(out),
            "--attacks", ",".join(ATTACKS), "--num", "245", "--steps", "10",
            "--steps-per-round", "3", "--batch-size", "50", "--particles", "25"]


@pytest.fixture(scope="module")
def one_device(shared, tmp_path_factory):
    """PGD and DAA-BLOB on 245 MNIST images (groups of 25, the last of 20), batches of 50 (the
    last of 45), 10 steps in rounds of 3, one device: what every distributed run must equal."""
    tmp = tmp_path_factory.mktemp("one_device")
    out = _run_worker(tmp, "ref", _worker_args(shared, tmp / "ref.npz", 1, "none"))
    with np.load(out) as saved:
        assert int(saved["replicas"]) == 1
        return {name: saved[name] for name in ATTACKS}


@pytest.mark.parametrize("cpus", [2, 4])
def test_mirrored_on_logical_cpus_equals_one_device(shared, tmp_path, one_device, cpus):
    # Batches of 50 over 2 replicas: two calls of 2 batches, then one with the 45-row tail (a whole
    # group and the partial one) beside a dummy; over 4: a call of 4 batches, then the tail beside
    # 3 dummies.
    out = _run_worker(tmp_path, f"mirrored{cpus}",
                      _worker_args(shared, tmp_path / f"mirrored{cpus}.npz", cpus, "mirrored"))
    with np.load(out) as saved:
        assert int(saved["replicas"]) == cpus
        for name in ATTACKS:
            np.testing.assert_array_equal(saved[name], one_device[name], err_msg=name)


def _free_ports(count: int) -> List[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_two_workers_on_loopback_equal_one_process(shared, tmp_path, one_device):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs, logs = [], []
    for index in range(2):
        env = _env()
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                       "task": {"type": "worker", "index": index}})
        logs.append(tmp_path / f"worker{index}.log")
        procs.append(_start(_worker_args(shared, tmp_path / "workers.npz", 1, "multi_worker"),
                            env, logs[-1]))
    _finish(procs, logs)
    for index in range(2):
        with np.load(tmp_path / f"workers.{index}.npz") as saved:
            assert int(saved["replicas"]) == 2
            assert bool(saved["chief"]) == (index == 0)
            for name in ATTACKS:
                np.testing.assert_array_equal(saved[name], one_device[name],
                                              err_msg=f"{name}, worker {index}")


def test_runner_cli_on_two_devices_equals_one_device(shared, tmp_path, one_device):
    # The MNIST runner with --distribute=mirrored on 2 logical CPUs writes the one-device DAA-BLOB
    # points (one restart, so the file is that run's x_adv).
    output = tmp_path / "attack.npy"
    options = dict(attack="daa_blob", num_examples=245, steps=10, steps_per_round=3,
                   restarts=1, particles=25, batch_size=50, seed=1, epsilon=0.3, step_size=0.01,
                   model_dir=shared / "models" / "mnist" / "adv_trained",
                   data_dir=shared / "data" / "mnist", output=output, distribute="mirrored")
    _run_worker(tmp_path, "runner", ["--cpus", "2", "--module", "challenges.mnist", "--"]
                + [f"--{key}={value}" for key, value in options.items()])
    log = (tmp_path / "runner.log").read_text(errors="replace")
    assert "Using MirroredStrategy with devices" in log and "device:CPU:1" in log, log[-3000:]
    np.testing.assert_array_equal(np.load(output), one_device["daa_blob"])
