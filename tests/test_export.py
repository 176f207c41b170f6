"""daa_tf.export: attacks saved as SavedModels and run where daa_tf cannot be imported.

One module fixture saves every case (a tiny MLP with PGD and DAA-BLOB, with and without the random
start; the MadryLab MNIST net with DAA-BLOB when ../shared is present), then runs them all in ONE
fresh Python process in which ``import daa_tf`` (and ``import keras``) raise ImportError, on batches
of 11, 5 and 8 rows (11 and 5 are not multiples of the 4 particles) and two seeds; the tests compare
those outputs with the library's, bit for bit.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Dict, Optional

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import export

D, CLASSES, PARTICLES = 20, 5, 4
EPS, STEP, STEPS = 0.3, 0.05, 5
SIZES, SEEDS = (11, 5, 8), (7, 8)
TIMEOUT = 240  # seconds for the loader subprocess (usually about 10)

# case -> (model key, attack, settings)
CASES = {
    "pgd": ("mlp", "pgd", dict(eps=EPS, step_size=STEP, steps=STEPS)),
    "pgd_no_start": ("mlp", "pgd", dict(eps=EPS, step_size=STEP, steps=STEPS,
                                        random_start=False)),
    "daa_blob": ("mlp", "daa_blob", dict(eps=EPS, step_size=STEP, steps=STEPS,
                                         particles=PARTICLES, c=5.0)),
    "daa_blob_no_start": ("mlp", "daa_blob", dict(eps=EPS, step_size=STEP, steps=STEPS,
                                                  particles=PARTICLES, c=5.0,
                                                  random_start=False)),
}
MADRY_CASES = {
    "madry_daa_blob": ("madry", "daa_blob", dict(eps=0.3, step_size=0.01, steps=3,
                                                 particles=PARTICLES)),
}

# The loader: TensorFlow only. daa_tf and keras are blocked before anything is imported.
LOADER = textwrap.dedent("""
    import importlib.machinery, json, sys

    class Block:  # daa_tf and keras look absent: no origin, and importing raises ImportError
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("daa_tf", "keras"):
                return importlib.machinery.ModuleSpec(name, self)  # no origin: "not installed"
            return None

        def create_module(self, spec):
            raise ImportError(f"{spec.name} is blocked in this process", name=spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Block())
    for name in ("daa_tf", "keras"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            sys.exit(f"{name} could be imported")

    import numpy as np
    import tensorflow as tf

    jobs = json.loads(sys.argv[1])
    inputs = np.load(sys.argv[2])
    out = {}
    for case, folder in jobs.items():
        loaded = tf.saved_model.load(folder)
        serve = loaded.signatures["serving_default"]
        spec = serve.structured_input_signature[1]
        out[case + "/signature"] = np.array(json.dumps(
            {k: [v.dtype.name, v.shape.as_list()] for k, v in spec.items()}
            | {"outputs": sorted(serve.structured_outputs)}))
        out[case + "/settings"] = np.array(loaded.attack_settings.numpy().decode())
        by_signature = loaded.signatures["attack_settings"]()["attack_settings"].numpy().decode()
        assert by_signature == out[case + "/settings"], case
        x, y = inputs[case + "/x"], inputs[case + "/y"]
        for n in json.loads(str(inputs["sizes"])):
            for seed in json.loads(str(inputs["seeds"])):
                result = serve(x=tf.constant(x[:n]), y=tf.constant(y[:n], tf.int64),
                               seed=tf.constant(seed, tf.int64))
                out[f"{case}/{n}/{seed}"] = result["x_adv"].numpy()
    out["modules"] = np.array(json.dumps(sorted(m for m in sys.modules
                                                if m.split(".")[0] in ("daa_tf", "keras"))))
    np.savez(sys.argv[3], **out)
""")


def mlp() -> keras.Model:
    """A tiny random MLP ``[N, 20] -> [N, 5]`` logits."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((D,))
    h = keras.layers.Dense(16, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def library(model, attack: str, x: np.ndarray, y: np.ndarray, seed: int, **settings) -> np.ndarray:
    """``daa_tf.<attack>`` eagerly with an int seed."""
    return getattr(daa_tf, attack)(model, x, y, seed=seed, **settings).numpy()


_GRAPH_FUNCTIONS: Dict[str, Callable] = {}


def library_in_graph(case: str, model, attack: str, x: np.ndarray, y: np.ndarray, seed: int,
                     **settings) -> np.ndarray:
    """``daa_tf.<attack>`` inside a ``tf.function`` with unknown batch size and a seed tensor
    (traced once per case)."""
    if case not in _GRAPH_FUNCTIONS:
        _GRAPH_FUNCTIONS[case] = tf.function(
            lambda x, y, s: getattr(daa_tf, attack)(model, x, y, seed=s, **settings),
            input_signature=[tf.TensorSpec([None] + list(x.shape[1:]), tf.float32),
                             tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
    return _GRAPH_FUNCTIONS[case](x, y.astype(np.int64), seed).numpy()


def optional_shared(request) -> Optional[Path]:
    """The ``shared`` fixture's folder, or None where it is absent (the test then runs without
    the cases that need it)."""
    try:
        return request.getfixturevalue("shared")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    """Saves every case, runs them in the blocked subprocess; returns (models, data, outputs)."""
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    models = {"mlp": mlp()}
    data = {"mlp": (rng.uniform(0.2, 0.8, (max(SIZES), D)).astype(np.float32),
                    rng.integers(0, CLASSES, max(SIZES)))}
    cases = dict(CASES)
    shared = optional_shared(request)
    if shared is not None:
        from daa_tf.data import load_mnist
        from daa_tf.models import load_madry_mnist
        models["madry"] = load_madry_mnist(shared / "models" / "mnist" / "adv_trained")
        data["madry"] = load_mnist("test", data_dir=shared / "data" / "mnist",
                                   num_examples=max(SIZES))
        cases.update(MADRY_CASES)
    jobs, arrays = {}, {"sizes": json.dumps(SIZES), "seeds": json.dumps(SEEDS)}
    for case, (key, attack, settings) in cases.items():
        export.save_attack(models[key], tmp / case, attack, **settings)
        jobs[case] = str(tmp / case)
        arrays[case + "/x"], arrays[case + "/y"] = data[key]
    np.savez(tmp / "inputs.npz", **arrays)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", LOADER, json.dumps(jobs), str(tmp / "inputs.npz"),
                           str(tmp / "outputs.npz")], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(tmp / "outputs.npz") as saved:
        outputs = {k: saved[k] for k in saved.files}
    return cases, models, data, outputs, tmp


def _each(run, names=None):
    cases, models, data, outputs, _ = run
    for case, (key, attack, settings) in cases.items():
        if names is None or case in names:
            x, y = data[key]
            for n in SIZES:
                for seed in SEEDS:
                    yield case, models[key], attack, settings, x[:n], y[:n], seed, \
                        outputs[f"{case}/{n}/{seed}"]


def test_loader_ran_without_daa_tf_and_signature(run):
    cases, _, _, outputs, tmp = run
    assert json.loads(str(outputs["modules"])) == []
    for case, (key, attack, settings) in cases.items():
        signature = json.loads(str(outputs[case + "/signature"]))
        shape = [None, 784] if key == "madry" else [None, D]
        assert signature == {"x": ["float32", shape], "y": ["int64", [None]],
                             "seed": ["int64", []], "outputs": ["x_adv"]}
        record = json.loads(str(outputs[case + "/settings"]))
        assert record == export.load_settings(tmp / case)  # the constant and the asset agree
        assert record["attack"] == attack and record["input_shape"] == shape[1:]
        assert record["settings"] == {**settings, "jit_compile": False}
        assert record["resolved"]["attack"] == attack
        assert record["resolved"]["eps"] == settings["eps"]


def test_without_random_start_equals_the_eager_library_bit_for_bit(run):
    for case, model, attack, settings, x, y, seed, got in _each(
            run, ("pgd_no_start", "daa_blob_no_start")):
        expected = library(model, attack, x, y, seed, **settings)
        assert np.array_equal(got, expected), (case, len(x), seed)


def test_seeded_equals_the_library_in_a_graph_bit_for_bit(run):
    by_seed: Dict[tuple, set] = {}
    for case, model, attack, settings, x, y, seed, got in _each(run):
        expected = library_in_graph(case, model, attack, x, y, seed, **settings)
        assert np.array_equal(got, expected), (case, len(x), seed)
        if settings.get("random_start", True):
            by_seed.setdefault((case, len(x)), set()).add(got.tobytes())
    assert by_seed and all(len(seen) == len(SEEDS) for seen in by_seed.values())  # seed flows


def test_seeded_equals_the_eager_library_bit_for_bit(run):
    for case, model, attack, settings, x, y, seed, got in _each(run, ("pgd", "daa_blob")):
        expected = library(model, attack, x, y, seed, **settings)
        assert np.array_equal(got, expected), (case, len(x), seed)


def test_in_the_ball_and_the_box(run):
    for case, model, attack, settings, x, y, seed, got in _each(run):
        assert got.shape == x.shape and got.dtype == np.float32
        assert np.all(np.abs(got - x) <= settings["eps"] + 1e-6), case
        assert got.min() >= 0.0 and got.max() <= 1.0, case
        assert np.any(got != x), case


def test_madry_mnist_model(shared, run):
    # The MadryLab MNIST net (its InputConv2D's fold is an XLA function inside the graph).
    got = [(case, got) for case, *_, got in _each(run, tuple(MADRY_CASES))]
    assert len(got) == len(SIZES) * len(SEEDS)


# ------------------------------------------------------------------------- refusals, files


@pytest.fixture(scope="module")
def small():
    return mlp()


@pytest.mark.parametrize("attack,settings,error,match", [
    ("daa_blobb", dict(eps=0.3, step_size=0.1, steps=2), ValueError, "unknown attack 'daa_blobb'"),
    ("pgd", dict(eps=-0.3, step_size=0.1, steps=2), ValueError, "eps must be a positive"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=0), ValueError, "steps must be a whole number"),
    ("pgd", dict(eps=0.3, steps=2), TypeError, "needs step_size: it has no default"),
    ("daa_blob", dict(eps=0.3, step_size=0.1, steps=2, particles=1), ValueError, "particles"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=2, particles=4), TypeError,
     r"unknown setting\(s\) \['particles'\] for pgd"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=2, loss="hinge"), ValueError, "unknown loss"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=2, clip_min=1.0, clip_max=0.0), ValueError,
     "pixel box"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=2, seed=3), TypeError, "seed is not a setting"),
    ("pgd", dict(eps=0.3, step_size=0.1, steps=2, x_init=np.zeros((1, D))), TypeError,
     "x_init is not a setting"),
])
def test_bad_settings_are_refused_before_anything_is_written(small, tmp_path, attack, settings,
                                                             error, match):
    with pytest.raises(error, match=match):
        export.save_attack(small, tmp_path / "out", attack, **settings)
    assert os.listdir(tmp_path) == []


def test_input_shape_is_required_for_a_plain_callable(tmp_path, small):
    with pytest.raises(ValueError, match="pass input_shape"):
        export.save_attack(lambda x: small(x), tmp_path / "out", "pgd", eps=0.3, step_size=0.1,
                           steps=1)
    with pytest.raises(ValueError, match="positive sizes"):
        export.save_attack(small, tmp_path / "out", "pgd", input_shape=(0,), eps=0.3,
                           step_size=0.1, steps=1)
    assert os.listdir(tmp_path) == []


def test_existing_path_is_refused_unless_overwrite(small, tmp_path):
    kw = dict(eps=0.3, step_size=0.1, steps=1, random_start=False)
    target = tmp_path / "attack"
    target.mkdir()
    export.save_attack(small, target, "fgsm", **kw)  # an empty folder is fine
    assert (target / "saved_model.pb").is_file()
    assert export.load_settings(target)["settings"]["random_start"] is False
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.save_attack(small, target, "pgd", **kw)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        export.save_attack(small, tmp_path / "file", "pgd", **kw)
    export.save_attack(small, target, "pgd", overwrite=True, **kw)
    assert export.load_settings(target)["attack"] == "pgd"
    assert sorted(os.listdir(tmp_path)) == ["attack", "file"]  # no temporary folder left
    loaded = tf.saved_model.load(str(target))
    x = np.full((2, D), 0.5, np.float32)
    got = loaded.attack(tf.constant(x), tf.constant([0, 1], tf.int64),
                        tf.constant(0, tf.int64))["x_adv"]
    expected = daa_tf.pgd(small, x, np.array([0, 1]), **kw)
    assert np.array_equal(got.numpy(), expected.numpy())


def test_settings_follow_the_public_functions_defaults():
    kwargs, validated = export.resolve_settings("fgsm", dict(eps=0.1))
    assert kwargs == dict(eps=0.1, jit_compile=False)  # daa_tf.fgsm(..., eps=0.1, seed=seed, ...)
    assert validated.random_start is False and validated.steps == 1  # FGSM's own defaults
    assert validated.step_size == 0.1
    _, validated = export.resolve_settings("daa_dgf", dict(eps=0.1, step_size=0.01, steps=2))
    assert validated.c == -0.001 and validated.particles == 200
    kwargs, _ = export.resolve_settings("pgd", dict(eps=0.1, step_size=0.01, steps=2,
                                                    jit_compile=True))
    assert kwargs["jit_compile"] is True


def test_untracked_variables_are_explained(tmp_path, small):
    with pytest.raises(ValueError, match="not tracked"):
        export.save_attack(lambda x: small(x), tmp_path / "out", "pgd", input_shape=(D,),
                           eps=0.3, step_size=0.1, steps=1)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("attack,settings", [
    ("momentum_pgd", dict(decay=0.5)), ("daa_dgf", dict(particles=3, c=-0.5))])
def test_other_attacks_load_in_process(tmp_path, small, attack, settings):
    settings = dict(eps=0.3, step_size=0.1, steps=2, **settings)
    export.save_attack(small, tmp_path / attack, attack, **settings)
    loaded = tf.saved_model.load(str(tmp_path / attack))
    x = np.random.default_rng(1).uniform(0.2, 0.8, (7, D)).astype(np.float32)
    y = np.arange(7) % CLASSES
    got = loaded.attack(tf.constant(x), tf.constant(y, tf.int64), tf.constant(4, tf.int64))
    expected = library_in_graph(attack, small, attack, x, y, 4, **settings)
    assert np.array_equal(got["x_adv"].numpy(), expected)
    assert export.load_settings(tmp_path / attack)["resolved"]["attack"] == attack
