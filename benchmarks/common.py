"""What every benchmark section shares: the run context, the section registry, the fixtures'
model and data (or random stand-ins), timing by interleaved repeats, peak memory and the tables.

A section is a function of one :class:`Context` returning rows (dicts), registered with
:func:`section` together with its table's columns, the models it is measured on, its own
(prefixed) command-line arguments and whether it runs by default; ``benchmarks.run`` runs the
ones asked for (``--sections``; default: those registered with ``default=True``).
"""
import argparse
import dataclasses
import importlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # eps and step size of the paper, pixel box
    "mnist": dict(eps=0.3, step_size=0.01, clip_min=0.0, clip_max=1.0),
    "cifar10": dict(eps=8.0, step_size=2.0, clip_min=0.0, clip_max=255.0),
    # the ImageNet challenge's defaults (challenges.imagenet): eps 2/255, steps of eps/8
    "imagenet": dict(eps=2.0 / 255, step_size=0.25 / 255, clip_min=0.0, clip_max=1.0),
}
# Inception-ResNet-v2 on a CPU: a gradient of 16 images takes ~20 s and a few GB, so the ImageNet
# runs time small batches (pass e.g. --batch 4 --particles 4 --steps 1 --repeats 3).
IMAGENET_MAX_BATCH = 64
Row = Dict[str, Any]
Column = Tuple[str, str, str]  # (row key, header, format)


@dataclasses.dataclass
class Context:
    """One invocation's inputs: the parsed arguments, the model (``model_name``: ``mnist`` or
    ``cifar10``), the timed batch ``x``/``y`` (``--batch`` images), the whole loaded set
    ``x_all``/``y_all``, the paper's settings for the model and the compilation choice."""

    args: Any
    model: Any
    model_name: str
    x: Any
    y: Any
    x_all: Any
    y_all: Any
    settings: Dict[str, float]
    jit: bool

    @property
    def random(self) -> bool:
        """True when random weights and images stand in for the fixtures."""
        return bool(self.args.random)


@dataclasses.dataclass(frozen=True)
class Section:
    """A registered section: its table's title and columns, the function making its rows, how
    many images it needs (from the arguments), the models it is measured on, the hook adding its
    own arguments to ``benchmarks.run``'s parser (named ``--<section>-...``; None: it has none)
    and whether it runs when ``--sections`` is not given."""

    name: str
    title: str
    columns: Tuple[Column, ...]
    run: Callable[[Context], List[Row]]
    examples: Callable[[Any], int]
    models: Tuple[str, ...] = ("mnist", "cifar10")
    arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    default: bool = True


SECTIONS: Dict[str, Section] = {}


def section(name: str, title: str, columns: Sequence[Column],
            examples: Callable[[Any], int] = lambda args: args.batch,
            models: Tuple[str, ...] = ("mnist", "cifar10"),
            arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None,
            default: bool = True
            ) -> Callable[[Callable[[Context], List[Row]]], Callable[[Context], List[Row]]]:
    """Registers the decorated function as section ``name`` (in definition order); see
    :class:`Section` for ``arguments`` and ``default``."""
    def register(fn: Callable[[Context], List[Row]]) -> Callable[[Context], List[Row]]:
        SECTIONS[name] = Section(name, title, tuple(columns), fn, examples, models, arguments,
                                 default)
        return fn
    return register


def default_sections() -> List[str]:
    """The sections run when ``--sections`` is not given (registration order)."""
    return [name for name, s in SECTIONS.items() if s.default]


def format_table(name: str, rows: List[Row]) -> str:
    """Section ``name``'s rows as an aligned text table under a ``## name: title`` heading."""
    cols = SECTIONS[name].columns
    cells = [[h for _, h, _ in cols]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else fmt.format(row[k]) for k, _, fmt in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"## {name}: {SECTIONS[name].title}\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------ helpers

def contender_list(known: Sequence[str]) -> Callable[[str], List[str]]:
    """An ``argparse`` type: a comma-separated list of names of ``known`` (blanks dropped; empty
    text: none), ``ArgumentTypeError`` naming the unknown ones."""
    def parse(text: str) -> List[str]:
        wanted = [c.strip() for c in text.split(",") if c.strip()]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown contenders {unknown}; known: {list(known)}")
        return wanted
    return parse


def import_art(path: str) -> Optional[Any]:
    """The ``art`` (Adversarial Robustness Toolbox, an optional peer) object at the dotted
    ``path``, with ART's progress bars off (``TQDM_DISABLE``, set before tqdm loads); None when
    ``art`` is not importable."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return None


def art_classifier(model: Any, nb_classes: int, input_shape: Sequence[int],
                   clip_values: Tuple[float, float], **options: Any) -> Any:
    """ART's ``TensorFlowV2Classifier`` of ``model`` (logits ``[N, nb_classes]``; from-logits
    sparse cross-entropy), images of ``input_shape`` in the box ``clip_values``; ``options``: its
    other arguments (``optimizer``). Call it once :func:`import_art` has found ``art``."""
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model, nb_classes=nb_classes, input_shape=tuple(input_shape),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=tuple(clip_values), **options)


def shared_dir() -> Optional[Path]:
    """The shared fixtures folder, or None when absent."""
    folder = Path(os.environ.get("DAA_TF_SHARED", REPO.parent / "shared"))
    return folder if (folder / "models").is_dir() and (folder / "data").is_dir() else None


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> None:
    """Resets the peak resident set (Linux: ``echo 5 > /proc/self/clear_refs``); silently does
    nothing where that is not allowed (the peak then covers the whole process so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb() -> Optional[float]:
    """Peak resident set since the last reset, in MB (None where /proc is unavailable)."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def resident_mb() -> Optional[float]:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def interleaved(runs: Dict[str, Callable[[], Any]], repeats: int, rotate: bool = False,
                cpu_times: Optional[Dict[str, List[float]]] = None
                ) -> Tuple[Dict[str, float], Dict[str, List[float]], Dict[str, Optional[float]]]:
    """First-call seconds, the timed repeats (A B A B ...) and the peak memory of each run.

    ``rotate``: the order rotates every round (A B C, B C A, ...). ``cpu_times``: when given,
    filled with each timed call's process CPU seconds (all threads) by run name."""
    first, times, peaks = {}, {name: [] for name in runs}, {name: None for name in runs}
    names = list(runs)
    if cpu_times is not None:
        cpu_times.update({name: [] for name in names})
    for name, fn in runs.items():
        started = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - started
    for r in range(repeats):
        shift = r % len(names) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            fn = runs[name]
            reset_peak_memory()
            started, cpu_started = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - started)
            if cpu_times is not None:
                cpu_times[name].append(time.process_time() - cpu_started)
            peak = peak_memory_mb()
            if peak is not None:
                peaks[name] = max(peaks[name] or 0.0, peak)
    return first, times, peaks


# ------------------------------------------------------------------------------ model and data

def build_model(name: str, random_weights: bool) -> Tuple[Any, str]:
    """``(model, description)``: the fixture's trained net, else a random one of its
    architecture (timings do not depend on the weights). ImageNet's Inception-ResNet-v2 always
    has random weights: its fixture holds the checkpoint's layout, not weights."""
    from daa_tf.models import madry_cifar10, madry_mnist

    if name == "imagenet":
        from daa_tf.models import inception_resnet_v2
        return (inception_resnet_v2.build_inception_resnet_v2(),
                "Inception-ResNet-v2 (1001 classes), random weights")
    shared = None if random_weights else shared_dir()
    if name == "mnist":
        folder = shared / "models" / "mnist" / "adv_trained" if shared else None
        if folder is not None and folder.is_dir():
            return madry_mnist.load_madry_mnist(folder), "MadryLab MNIST net, adv_trained fixture"
        return madry_mnist.build_madry_mnist(), "MadryLab MNIST net, random weights"
    folder = shared / "models" / "cifar10" / "adv_trained_narrow" if shared else None
    if folder is not None and folder.is_dir():
        return (madry_cifar10.load_madry_cifar10(folder),
                "MadryLab CIFAR10 ResNet [16, 16, 32, 64], adv_trained_narrow fixture")
    return (madry_cifar10.build_madry_cifar10(madry_cifar10.ResNetConfig(filters=(16, 16, 32, 64))),
            "MadryLab CIFAR10 ResNet [16, 16, 32, 64], random weights")


def load_data(name: str, n: int, random_data: bool) -> Tuple[Any, Any, str]:
    """``(x float32, y int32, description)``: ``n`` test images (repeated if the fixture holds
    fewer), else random images and labels. ImageNet: the layout fixture's four images in [0, 1]
    ``[n, 299, 299, 3]`` with random labels in 1..1000 (at most :data:`IMAGENET_MAX_BATCH`)."""
    import numpy as np

    from daa_tf import data

    if name == "imagenet":
        return _imagenet_data(n, random_data)
    shared = None if random_data else shared_dir()
    x = y = None
    if shared is not None and name == "mnist" and (shared / "data" / "mnist").is_dir():
        x, y = data.load_mnist("test", data_dir=shared / "data" / "mnist")
        source = "MNIST test set (fixture)"
    elif shared is not None and name == "cifar10":
        path = shared / "data" / "cifar10" / "test_first1000.npz"
        if path.is_file():
            x, y = data.load_cifar10("test", data_dir=path)
            source = "CIFAR-10 test_first1000 (fixture)"
    if x is None:
        rng = np.random.default_rng(0)
        shape = (n, 784) if name == "mnist" else (n, 32, 32, 3)
        top = SETTINGS[name]["clip_max"]
        return (rng.uniform(0, top, shape).astype(np.float32),
                rng.integers(0, 10, n).astype(np.int32), "random images")
    reps = -(-n // len(x))
    x = np.concatenate([x] * reps)[:n]
    y = np.concatenate([y] * reps)[:n]
    return x.astype(np.float32), y.astype(np.int32), source + (" (repeated)" if reps > 1 else "")


def _imagenet_data(n: int, random_data: bool) -> Tuple[Any, Any, str]:
    """The ImageNet stand-in batch: the layout fixture's ``inputs.npy`` (uint8 ``[4, 299, 299,
    3]``) scaled to [0, 1] and repeated, else uniform random images; labels uniform in 1..1000."""
    import numpy as np

    if n > IMAGENET_MAX_BATCH:
        raise ValueError(f"the ImageNet benchmark times at most {IMAGENET_MAX_BATCH} images per "
                         f"batch (asked for {n}): pass e.g. --batch 4 --particles 4 --steps 1 "
                         "--repeats 3")
    rng = np.random.default_rng(0)
    y = rng.integers(1, 1001, n).astype(np.int32)
    shared = None if random_data else shared_dir()
    path = (shared / "models" / "imagenet" / "ens_adv_inception_resnet_v2_layout" / "inputs.npy"
            if shared else None)
    if path is None or not path.is_file():
        return rng.uniform(0, 1, (n, 299, 299, 3)).astype(np.float32), y, "random images"
    x = np.load(path).astype(np.float32) / 255.0
    reps = -(-n // len(x))
    x = np.concatenate([x] * reps)[:n]
    return x, y, "the layout fixture's 4 images" + (" (repeated)" if reps > 1 else "")


def set_fast_input_gradient(model: Any, choice: str) -> Optional[bool]:
    """Applies ``--fast-input-gradient`` to the model's :class:`InputConv2D` layers (before any
    tracing); returns whether the fast path is used (None: the model has no such layer)."""
    from daa_tf.models.layers import InputConv2D, default_fast_input_gradient

    layers = [layer for layer in model.layers if isinstance(layer, InputConv2D)]
    setting = {"auto": None, "on": True, "off": False}[choice]
    for layer in layers:
        layer.fast_input_gradient = setting
    if not layers:
        return None
    return default_fast_input_gradient() if setting is None else setting
