"""Plain helpers shared by several test modules (fixtures are in tests/conftest.py; no test module
imports another): the repository root, the small models the attack tests run on, the command-line
helpers of the challenge runners' tests, and writers of fixture files (the ImageNet recipe
checkpoint, NIPS 2017 folders).

Nothing here touches ``../shared``: tests reach it through the ``shared`` fixture only. TensorFlow
and Keras are imported on use, so that importing this module stays cheap (a subprocess script of
the in-graph tests imports it after configuring its logical devices).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------- the attack tests' models

TOY_SHAPE, TOY_CLASSES = (4, 4, 2), 5


def toy_model(scale: float = 1.0) -> Any:
    """A small random net on ``[N, 4, 4, 2]`` images, ``TOY_CLASSES`` logits; ``scale`` divides
    its input (a ``[0, 255]`` twin of the same net). The same weights on every call."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(TOY_SHAPE)
    h = keras.layers.Rescaling(1.0 / scale)(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="tanh")(h)
    return keras.Model(inputs, keras.layers.Dense(TOY_CLASSES)(h))


DENSE_N, DENSE_SHAPE, DENSE_CLASSES = 12, (4, 4, 1), 6


def dense_model() -> Any:
    """z = tanh(x W1 + b1) W2 + b2 on ``[N, 4, 4, 1]`` images (its gradient is NumPy's too),
    ``DENSE_CLASSES`` logits. The same weights on every call."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(DENSE_SHAPE)
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(8, activation="tanh")(h)
    return keras.Model(inputs, keras.layers.Dense(DENSE_CLASSES)(h))


def dense_batch(model: Any, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``DENSE_N`` random images in [0.2, 0.8] and the model's own predictions as labels."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0.2, 0.8, (DENSE_N,) + DENSE_SHAPE).astype(np.float32)
    return x0, model(x0).numpy().argmax(axis=1)


def curved_model() -> Any:
    """A net on ``DENSE_SHAPE`` images curved enough at radius 0.04 that PGD's last iterate is not
    always its best (6 logits). The same weights on every call."""
    import keras

    keras.utils.set_random_seed(4)
    inputs = keras.Input(DENSE_SHAPE)
    h = keras.layers.Rescaling(25.0)(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="tanh")(h)
    h = keras.layers.Dense(16, activation="tanh")(h)
    return keras.Model(inputs, keras.layers.Dense(6)(h))


def curved_batch(model: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``DENSE_N`` random images in [0.2, 0.8] and ``model``'s own predictions as labels."""
    rng = np.random.default_rng(41)
    x0 = rng.uniform(0.2, 0.8, (DENSE_N,) + DENSE_SHAPE).astype(np.float32)
    return x0, model(x0).numpy().argmax(axis=1)


# The in-graph tests' MLP and attacks (also imported by their replica-context subprocess).
MLP_FEATURES, MLP_CLASSES = 12, 4
GRAPH_ATTACKS = {"pgd": dict(eps=0.3, step_size=0.05, steps=4),
                 "daa_blob": dict(eps=0.3, step_size=0.05, steps=4, particles=4, c=5.0)}


def graph_mlp() -> Any:
    """A tiny random MLP ``[N, 12] -> [N, 4]`` logits (the same weights on every call)."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((MLP_FEATURES,))
    h = keras.layers.Dense(16, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(MLP_CLASSES)(h))


def tiny_resnet() -> Any:
    """The smallest MadryLab CIFAR10 ResNet configuration the training and checkpoint tests
    build."""
    from daa_tf.models.madry_cifar10 import ResNetConfig

    return ResNetConfig(filters=(4, 4, 8, 16), units_per_stage=1)


# ------------------------------------------------------------------- command lines (subprocesses)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                   os.environ.get("PYTHONPATH")]))}
TIMEOUT = 300  # seconds for one command-line run


def command(module: str, options: Dict[str, object]) -> List[str]:
    """``python -m module --key=value ...``."""
    return [sys.executable, "-m", module] + [f"--{k}={v}" for k, v in options.items()]


def run_module(module: str, options: Dict[str, object], cwd: Path = REPO_ROOT,
               **kwargs: Any) -> subprocess.CompletedProcess:
    """Runs ``python -m module`` with ``options`` (from the repo root unless ``cwd``); output
    captured as text."""
    return subprocess.run(command(module, options), cwd=cwd, env=kwargs.pop("env", ENV),
                          capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def mnist_fixtures(shared: Path) -> Dict[str, object]:
    """The MNIST runner's ``--model_dir`` and ``--data_dir`` in the shared folder."""
    return {"model_dir": shared / "models/mnist/adv_trained", "data_dir": shared / "data/mnist"}


def final_accuracy(log: str) -> float:
    """The runner's ``final accuracy: 93.50%``."""
    import re

    found = re.findall(r"final accuracy: (\d+\.\d\d)%", log)
    assert len(found) == 1, log
    return float(found[0])


def evaluated_accuracy(stdout: str) -> float:
    """The evaluator's ``Accuracy: 93.50%`` line."""
    import re

    found = re.findall(r"^Accuracy: (\d+\.\d\d)%$", stdout, flags=re.M)
    assert len(found) == 1, stdout
    return float(found[0])


def interrupt_once_saved(args: List[str], state: Path, sig: int) -> Tuple[int, str]:
    """Starts ``args``, sends ``sig`` once the resumable ``state`` exists (after the first
    restart); returns the exit status and stderr. When this process ignores SIGINT (started in
    the background of a shell without job control, or left so by something earlier in it: seen
    in full suite runs), the child would inherit it ignored and raise no KeyboardInterrupt; it is
    started with SIGINT handled instead."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.exists(), "no state file after the first restart"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


# The generic runner's (``python -m challenges.attack``) files and its small DAA-BLOB run, with
# restarts enough that a signal lands between two of them.
GENERIC_IMAGES = 64
GENERIC_DAA = {"attack": "daa_blob", "particles": 16, "steps": 4, "steps_per_round": 2,
               "restarts": 40, "batch_size": 32, "seed": 5, "epsilon": 0.1, "clip_min": 0,
               "clip_max": 1, "verbose": 0}


def generic_net(outputs: int = 10, activation: Optional[str] = None, shape=(28, 28, 1)) -> Any:
    """A small Keras classifier of ``shape`` images (fixed weights)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape)
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(hidden))


def write_generic_files(folder: Path) -> Dict[str, Path]:
    """uint8 images ``[64, 28, 28, 1]`` with labels in an .npz; .keras models (logits,
    probabilities, 5 classes); a SavedModel exported by Keras. Returns their paths by kind."""
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz",
             x=rng.integers(0, 256, (GENERIC_IMAGES, 28, 28, 1), np.uint8),
             y=rng.integers(0, 10, GENERIC_IMAGES))
    paths = {"data": folder / "data.npz", "logits": folder / "logits.keras",
             "probabilities": folder / "probabilities.keras", "five": folder / "five.keras",
             "saved_model": folder / "saved_model"}
    generic_net().save(paths["logits"])
    generic_net(activation="softmax").save(paths["probabilities"])
    generic_net(outputs=5).save(paths["five"])
    generic_net().export(str(paths["saved_model"]), verbose=False)
    return paths


# ----------------------------------------------------------------- ImageNet and NIPS 2017 files

CKPT_NAME = "ens_adv_inception_resnet_v2.ckpt"


def layout_dir(shared: Path) -> Path:
    """The shared Inception-ResNet-v2 layout fixture (variables.json, inputs, slim's logits)."""
    return shared / "models" / "imagenet" / "ens_adv_inception_resnet_v2_layout"


def recipe_value(k: int, shape, kind: str) -> np.ndarray:
    """The shared README's recipe for the k-th variable of variables.json."""
    u = np.random.default_rng(k).random(shape)
    if kind == "weights":
        return ((2 * u - 1) * np.sqrt(6 / np.prod(shape[:-1]))).astype(np.float32)
    if kind in ("biases", "beta", "moving_mean"):
        return ((2 * u - 1) * 0.1).astype(np.float32)
    if kind == "moving_variance":
        return (0.5 + u).astype(np.float32)
    raise ValueError(f"unknown kind {kind!r}")


def save_v2(prefix: Path, tensors: dict, full_shapes: Optional[dict] = None) -> None:
    """Write a TF1 name-based (V2 format) checkpoint, keys = the given names, no state file.

    ``full_shapes[name]``: store only the ``[0:1, ..]`` slice of a variable of that full shape
    (the index records the full shape; such a checkpoint is for layout checks only).
    """
    import tensorflow as tf

    full_shapes = full_shapes or {}
    names = sorted(tensors)
    specs = [" ".join(map(str, full_shapes[n])) + " " + ":".join(["0,1"] * len(full_shapes[n]))
             if n in full_shapes else "" for n in names]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=specs,
                      tensors=[tensors[n] for n in names])


NIPS17_HEADER = ["ImageId", "URL", "x1", "y1", "x2", "y2", "y3", "x3", "y4", "x4", "TrueLabel",
                 "TargetClass", "OriginalLandingURL", "License", "Author", "AuthorProfileURL"]
NIPS17_IDS = ["0c7ac4a8c9dfa802", "2c1c1ee4a0c3a4f2", "36b1e4f5c3a8dc11", "8a4ba97ee1bd1f2c"]
NIPS17_LABELS = [1, 306, 1000, 43]
NIPS17_TARGETS = [1000, 2, 512, 43]


def write_png(path: Path, image: np.ndarray) -> None:
    """``image`` ``[H, W, C]`` uint8 as a PNG file."""
    import tensorflow as tf

    path.write_bytes(tf.io.encode_png(image).numpy())


def nips17_csv_line(image_id: str, label, target) -> str:
    """One data row of a NIPS 2017 images.csv."""
    return ",".join([image_id, "https://example.org/x.jpg", "0", "0", "1", "1", "1", "0", "0",
                     "1", str(label), str(target), "", "CC BY 2.0", "someone", ""])


def make_nips17(folder: Path, images: np.ndarray, lines=None, header=NIPS17_HEADER) -> Path:
    """A development-set folder: images.csv (``lines``: data rows) and images/<id>.png."""
    (folder / "images").mkdir(parents=True)
    for image_id, image in zip(NIPS17_IDS, images):
        write_png(folder / "images" / f"{image_id}.png", image)
    if lines is None:
        lines = [nips17_csv_line(i, y, t)
                 for i, y, t in zip(NIPS17_IDS, NIPS17_LABELS, NIPS17_TARGETS)]
    (folder / "images.csv").write_text("\n".join([",".join(header), *lines]) + "\n")
    return folder
