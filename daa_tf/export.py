"""Attacks as SavedModels: run DAA or PGD from a pipeline that has TensorFlow but not daa_tf.

:func:`save_attack` traces one of the public attack functions (``daa_tf.pgd``, ``daa_tf.daa_blob``,
...) with the model and fixed settings into a SavedModel whose ``serving_default`` signature is

    inputs:  x     float32 [None, *input_shape]   clean batch in [clip_min, clip_max]
             y     int64   [None]                 labels (targets when ``targeted``)
             seed  int64   []                     random-start seed
    outputs: x_adv float32 [None, *input_shape]   adversarial batch

Before the loop the graph checks what the library checks in Python (:func:`check_inputs`): ``x``'s
shape, at least one image, finite values within the box, one label per image, labels in
``[0, num_classes)``; a bad input fails with InvalidArgumentError naming the input and the rule,
and nothing leaves the eps-ball or the box.

The whole compiled step loop (a ``tf.while_loop``) is in the graph, so TF Serving, a C++ or Java
evaluator or ``tf.saved_model.load`` runs it without daa_tf (or Keras) installed. For the same
``x``, ``y`` and ``seed`` it returns, bit for bit on the same machine and TensorFlow build, what
``daa_tf.<attack>(model, x, y, seed=seed, **settings)`` returns inside a ``tf.function``; eagerly
called, the library gives the same bits without a random start, and with one only once its random
start rounds as in a graph (tests/test_export.py's xfail names the fix). The batch size is free;
DAA groups consecutive rows by ``particles`` and pads the last, partial group inside the graph.

For provenance the settings are stored as JSON three times over: the asset
``assets/attack_settings.json`` (readable without TensorFlow), the signature ``attack_settings`` (no
inputs; output ``attack_settings``, a string) and the string variable ``attack_settings`` of the
loaded object. ``loaded.attack(x, y, seed=0)`` is the serving function as a plain callable (the
signature itself requires ``seed``: SavedModel signatures have no optional inputs).

XLA: the graph is saved for the plain TensorFlow executor (``jit_compile=False``) unless the caller
passes ``jit_compile=True``; then the loop is marked for XLA and the loading runtime compiles it
(per input shape) with its own XLA build, which must support every op of the loop. Functions the
model itself marks for XLA stay so (the MNIST nets' ``InputConv2D`` folds its input gradient in
one), so such a model needs a runtime with XLA on CPU (standard TensorFlow builds have it).

The model must be tracked by the saved object (a ``keras.Model`` or ``tf.Module``; not a lambda
around one): its variables are saved with the attack.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

import daa_tf
from daa_tf import catalogue

PathLike = Any  # str or os.PathLike
SETTINGS_FILE = "attack_settings.json"
SIGNATURE = "serving_default"
SETTINGS_SIGNATURE = "attack_settings"  # no inputs -> {"attack_settings": JSON string}
FORMAT_VERSION = 1

def attack_function(attack: str) -> Callable[..., tf.Tensor]:
    """The public function of catalogue attack ``attack`` (``daa_tf.<attack>``); ValueError
    naming the choices for an unknown name."""
    catalogue.get_spec(attack)
    from daa_tf.attacks import ATTACK_FUNCTIONS  # TensorFlow is imported anyway
    return ATTACK_FUNCTIONS[attack]


def resolve_settings(attack: str, settings: Dict[str, Any]
                     ) -> Tuple[Dict[str, Any], catalogue.AttackSettings]:
    """``(kwargs, validated)``: the keyword arguments ``daa_tf.<attack>`` is traced with (the
    user's ``settings``, ``jit_compile`` False unless given) and the complete settings they mean
    (the attack's catalogue defaults filled in by :func:`daa_tf.settings.attack_settings`).
    TypeError for unknown or missing settings, ValueError for invalid values; nothing is
    traced."""
    catalogue.get_spec(attack)
    for name in ("seed", "x_init"):
        if name in settings:
            raise TypeError(f"{name} is not a setting of an exported attack: the signature takes "
                            "the seed as an input, and the attack starts from x (random_start) "
                            "or at x")
    unknown = sorted(set(settings) - set(catalogue.SETTING_NAMES)) + \
        catalogue.unread_settings(attack, settings)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown} for {attack}: it takes "
                        f"{sorted(catalogue.SETTING_NAMES)}")
    kwargs = dict(settings)
    if kwargs.get("jit_compile") is None:
        kwargs["jit_compile"] = False
    validated = catalogue.attack_settings(attack, **kwargs)
    if validated.targets:
        raise ValueError(f"{attack} with targets (MultiTargeted) chooses its target classes on "
                         "the host and cannot be exported; export the base attack instead")
    return kwargs, validated


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (a callable loss by its name)."""
    if callable(value):
        return "custom:" + getattr(value, "__qualname__", type(value).__name__)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _json_settings(attack: str, kwargs: Dict[str, Any], validated: catalogue.AttackSettings,
                   input_shape: Sequence[Optional[int]]) -> str:
    record = {"attack": attack, "settings": {k: _plain(v) for k, v in sorted(kwargs.items())},
              "resolved": {f.name: _plain(getattr(validated, f.name))
                           for f in dataclasses.fields(validated)},
              "input_shape": list(input_shape),
              "signature": {"name": SIGNATURE, "inputs": {"x": "float32 [None, *input_shape]",
                                                          "y": "int64 [None]",
                                                          "seed": "int64 []"},
                            "outputs": {"x_adv": "float32 [None, *input_shape]"}},
              "daa_tf_version": getattr(daa_tf, "__version__", None),
              "tensorflow_version": tf.__version__, "format_version": FORMAT_VERSION}
    return json.dumps(record, indent=2, sort_keys=True)


def model_input_shape(model: Any, input_shape: Optional[Sequence[Optional[int]]] = None
                      ) -> tuple:
    """One example's shape (no batch axis): ``input_shape`` if given, else the Keras model's
    single input's shape; ValueError when neither is known."""
    if input_shape is not None:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    else:
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs or len(inputs) != 1:
            raise ValueError("cannot read the model's input shape (not a built one-input Keras "
                             "model): pass input_shape, one example's shape without the batch "
                             "axis, e.g. (784,) or (32, 32, 3)")
        shape = tuple(inputs[0].shape[1:])
    if not shape:
        raise ValueError(f"input_shape must have at least one axis, got {shape}")
    if any(d is not None and d < 1 for d in shape):
        raise ValueError(f"input_shape must have positive sizes, got {shape}")
    return shape


def _num_classes(model: Any, x: tf.Tensor, input_shape: Sequence[Optional[int]]) -> Any:
    """The number of logits of ``model``: static (an int) from one traced call on one example (of
    zeros when ``input_shape`` is fully known, else ``x[:1]``), else a tensor computed at run
    time."""
    from daa_tf import loop

    if None in input_shape:
        probe = tf.ensure_shape(x, [None, *input_shape])[:1]
    else:
        probe = tf.zeros([1, *input_shape], tf.float32)
    logits = loop.call_model(model, probe)
    return logits.shape[-1] if logits.shape[-1] is not None else tf.shape(logits)[-1]


def check_inputs(x: tf.Tensor, y: tf.Tensor, input_shape: Sequence[Optional[int]],
                 clip_min: float, clip_max: float, num_classes: Any
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(x, y)`` checked in the graph before the attack runs (the signature's own checks, for
    runtimes with no Python: TF Serving, C++, Java), each failing with InvalidArgumentError whose
    message names the input and the rule, in this order: ``x`` of shape ``[N, *input_shape]``
    (EnsureShape: "Shape of tensor x ... is not compatible with expected shape ..."), ``x``
    holding at least one image, finite, within ``[clip_min, clip_max]`` (the library's tolerance
    :data:`daa_tf.validation.RANGE_TOLERANCE` of the box), ``y`` of shape ``[N]`` and ``y`` in
    ``[0, num_classes)``. The seed is a required input of the serving signature (signatures have
    no optional inputs: a call without it fails in the runtime's argument binding, naming
    ``seed``, before the graph runs); ``loaded.attack(x, y)`` takes seed 0 by default."""
    from daa_tf.validation import RANGE_TOLERANCE

    box = f"[{clip_min:g}, {clip_max:g}]"
    shown = "[N, " + ", ".join("?" if d is None else str(d) for d in input_shape) + "]"
    x = tf.ensure_shape(x, [None, *input_shape], name="x")
    y = tf.ensure_shape(y, [None], name="y")
    tol = RANGE_TOLERANCE * (clip_max - clip_min)
    n = tf.shape(x)[0]
    rules = [
        (lambda: n > 0, [f"x must hold at least one image (shape {shown}); got shape",
                         tf.shape(x)]),
        (lambda: tf.reduce_all(tf.math.is_finite(x)),
         ["x must be finite: it holds NaN or inf values; pass finite pixels in " + box]),
        (lambda: tf.logical_and(tf.reduce_min(x) >= clip_min - tol,
                                tf.reduce_max(x) <= clip_max + tol),
         [f"x must lie in the pixel box {box} of the saved attack (clip_min, clip_max): rescale "
          "the images; got values from", tf.reduce_min(x), "to", tf.reduce_max(x)]),
        (lambda: tf.equal(tf.shape(y)[0], n),
         ["y must hold one label per image of x: shape [N] with N =", n, "; got",
          tf.shape(y)[0], "labels"]),
        (lambda: tf.reduce_all(tf.logical_and(y >= 0, y < tf.cast(num_classes, y.dtype))),
         ["y must hold class indices in [0, num_classes) with num_classes =", num_classes,
          "(the model's outputs); got labels from", tf.reduce_min(y), "to", tf.reduce_max(y)]),
    ]
    done: list = []
    for condition, message in rules:  # in order: each rule runs after the previous one held
        with tf.control_dependencies(done):
            done = [tf.debugging.Assert(condition(), message, summarize=8)]
    with tf.control_dependencies(done):
        return tf.identity(x), tf.identity(y)


class AttackModule(tf.Module):
    """The saved object: the model (its variables), ``attack(x, y, seed)`` and the provenance.
    ``box`` is the attack's ``(clip_min, clip_max)``: the signature refuses inputs outside it
    (:func:`check_inputs`)."""

    def __init__(self, model: Any, fn: Callable[..., tf.Tensor], settings: Dict[str, Any],
                 input_shape: tuple, settings_json: str, settings_file: str,
                 box: Tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(name="daa_tf_attack")
        self.model = model
        self.attack_settings = tf.Variable(settings_json, trainable=False,
                                           name="attack_settings")
        self.settings_asset = tf.saved_model.Asset(settings_file)
        clip_min, clip_max = (float(v) for v in box)

        @tf.function(input_signature=[
            tf.TensorSpec([None, *input_shape], tf.float32, name="x"),
            tf.TensorSpec([None], tf.int64, name="y"),
            tf.TensorSpec([], tf.int64, name="seed")])
        def attack(x: tf.Tensor, y: tf.Tensor, seed: Any = 0) -> Dict[str, tf.Tensor]:
            num_classes = _num_classes(model, x, input_shape)
            x, y = check_inputs(x, y, input_shape, clip_min, clip_max, num_classes)
            x_adv = fn(model, x, y, seed=seed, **settings)
            return {"x_adv": tf.identity(tf.cast(x_adv, tf.float32), name="x_adv")}

        self.attack = attack
        self.settings = tf.function(lambda: {"attack_settings": tf.constant(settings_json)},
                                    input_signature=[])


def save_attack(model: Any, path: PathLike, attack: str = "daa_blob", *,
                input_shape: Optional[Sequence[Optional[int]]] = None, overwrite: bool = False,
                **settings: Any) -> None:
    """Writes ``daa_tf.<attack>`` on ``model`` with ``settings`` as a SavedModel at ``path``.

    ``model``: a Keras model (or a trackable callable, e.g. a ``tf.Module``, whose variables the
    SavedModel must hold) returning logits ``[N, C]``. ``input_shape``: one example's shape
    without the batch axis (default: the Keras model's input shape). ``settings``: the keyword
    arguments of ``daa_tf.<attack>`` (``eps``, ``step_size``, ``steps``, ``loss``, ``clip_min``,
    ``clip_max``, ``particles``, ``c``, ...) except ``seed`` (an input of the signature) and
    ``x_init``; validated before anything is traced. ``jit_compile`` defaults to False.

    The folder is written beside ``path`` under a temporary name and renamed into place: ``path``
    never holds a partial SavedModel. An existing non-empty ``path`` is refused (FileExistsError)
    unless ``overwrite=True``. Signature: see the module docstring.
    """
    fn = attack_function(attack)
    kwargs, validated = resolve_settings(attack, settings)
    shape = model_input_shape(model, input_shape)
    target = os.path.abspath(os.fspath(path))
    if os.path.lexists(target) and not overwrite:
        if not os.path.isdir(target) or os.listdir(target):
            raise FileExistsError(f"{path} exists and is not an empty folder: pass "
                                  "overwrite=True to replace it")
    settings_json = _json_settings(attack, kwargs, validated, shape)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.",
                               suffix=".tmp")
    try:
        tmp = os.path.join(staging, "saved_model")
        settings_file = os.path.join(staging, SETTINGS_FILE)
        with open(settings_file, "w", encoding="utf-8") as f:
            f.write(settings_json + "\n")
        module = AttackModule(model, fn, kwargs, shape, settings_json, settings_file,
                              box=(validated.clip_min, validated.clip_max))
        concrete = module.attack.get_concrete_function()
        try:
            tf.saved_model.save(module, tmp, signatures={
                SIGNATURE: concrete, SETTINGS_SIGNATURE: module.settings.get_concrete_function()})
        except AssertionError as err:
            if "untracked" not in str(err):
                raise
            raise ValueError("the model's variables are not tracked by any saved object (a plain "
                             "function or lambda around a model?): pass the keras.Model or "
                             f"tf.Module itself. TensorFlow said: {err}") from None
        previous = None
        if os.path.lexists(target):  # overwrite (or an empty folder): moved aside, then deleted
            previous = os.path.join(staging, "previous")
            os.rename(target, previous)
        try:
            os.rename(tmp, target)
        except BaseException:
            if previous is not None:
                os.rename(previous, target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_settings(path: PathLike) -> Dict[str, Any]:
    """The provenance record of a saved attack (``assets/attack_settings.json``), no TF needed."""
    with open(os.path.join(os.fspath(path), "assets", SETTINGS_FILE), encoding="utf-8") as f:
        return json.load(f)


__all__ = ["save_attack", "load_settings", "resolve_settings", "attack_function",
           "model_input_shape", "check_inputs",
           "AttackModule", "SETTINGS_FILE", "SIGNATURE", "SETTINGS_SIGNATURE"]
