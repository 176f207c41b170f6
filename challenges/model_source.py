"""``--model`` of ``python -m challenges.attack``: which model a spec names, and loading it as the
function the attacks take, ``x [N, ...] float32 -> logits [N, C]``.

Resolution of ``--model=SPEC`` (first rule that applies wins):

1. ``NAME:PATH`` with ``NAME`` a key of ``daa_tf.models.LOADERS``: that adapter (a Keras port of
   a published model) with its weights at ``PATH`` (e.g. ``madry_mnist:DIR``,
   ``wong_kolter_mnist:FILE.npz``). An adapter's name shadows a module of the same name.
2. ``SPEC`` an existing file or folder: a Keras file (``.keras``; legacy ``.h5``) loaded with
   :func:`daa_tf.models.load_keras_file` (Keras's safe mode, daa_tf's layers registered), or a
   SavedModel folder (holding ``saved_model.pb``). A SavedModel's logits are its
   ``serving_default`` signature when that has exactly one input and one output; otherwise its
   callable ``__call__`` (a ``tf.function`` with one tensor argument, e.g. a ``tf.Module`` saved
   with ``tf.saved_model.save``); otherwise it is refused. The input must be floating point with
   a free batch dimension.
3. ``module:function`` (``module`` a dotted Python name importable from the working directory,
   ``function`` a Python name): ``function()`` returns the model, a Keras model or any callable
   ``x -> logits``.

A model that declares a per-image input shape differing from the data's only by flattening (e.g.
a ``[N, 28, 28, 1]`` net on ``[N, 784]`` IDX images, or the reverse) is fed the data reshaped;
the adversarial images keep the data's shape. Parsing imports TensorFlow only for a spec with a
colon (to read the adapter table); loading always does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import math
import os
from typing import Any, List, Optional, Tuple

from challenges import registry
from challenges.resolve import SetupError

KERAS_SUFFIXES = (".keras", ".h5")
Shape = Tuple[Optional[int], ...]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model``: ``kind`` is ``adapter``, ``keras``, ``saved_model`` or ``function``;
    ``path`` the file or folder (adapters, files); ``name`` the adapter or ``module:function``."""

    spec: str
    kind: str
    path: Optional[str] = None
    name: Optional[str] = None


@dataclasses.dataclass
class LoadedModel:
    """``model``: what ``daa_tf.run`` takes; ``description`` for logs and the summary;
    ``input_shape``: the per-image shape the model declares (None: it declares none)."""

    model: Any
    description: str
    input_shape: Optional[Shape]


def adapter_names() -> List[str]:
    """The adapters' names, read from ``daa_tf.models.LOADERS`` (imports TensorFlow)."""
    from daa_tf.models import LOADERS

    return list(LOADERS)


def adapter_challenge(spec: ModelSpec) -> Optional[registry.Challenge]:
    """The challenge whose model the adapter ``spec`` loads (its loader is the challenge's), or
    None (not an adapter, or a model of no challenge)."""
    if spec.kind != "adapter":
        return None
    from daa_tf.models import LOADERS

    for challenge in registry.CHALLENGES.values():
        if registry.import_function(challenge.model_loader) is LOADERS[spec.name]:
            return challenge
    return None


def _is_module_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _path_kind(spec: str) -> ModelSpec:
    if os.path.isdir(spec):
        if os.path.isfile(os.path.join(spec, "saved_model.pb")):
            return ModelSpec(spec, "saved_model", path=spec)
        raise SetupError(f"--model={spec} is a folder without saved_model.pb, so not a SavedModel; "
                         "for the weights of a published model use NAME:DIR with NAME one of the "
                         f"adapters ({', '.join(adapter_names())})")
    if spec.endswith(KERAS_SUFFIXES):
        return ModelSpec(spec, "keras", path=spec)
    raise SetupError(f"--model={spec} is a file but not a Keras model file "
                     f"({' or '.join(KERAS_SUFFIXES)}); for weights read by an adapter use "
                     "NAME:PATH")


def parse(spec: str) -> ModelSpec:
    """The model ``spec`` names, by the rules of this module's docstring; SetupError otherwise."""
    head, colon, tail = spec.partition(":")
    if colon and head.isidentifier() and head in adapter_names():
        if not tail or not (os.path.exists(tail) or glob.glob(glob.escape(tail) + ".*")):
            raise SetupError(f"--model={spec}: no file or folder {tail!r} to load the {head} "
                             "adapter's weights from")
        return ModelSpec(spec, "adapter", path=tail, name=head)
    if os.path.exists(spec):
        return _path_kind(spec)
    if colon and _is_module_name(head) and tail.isidentifier():
        return ModelSpec(spec, "function", name=spec)
    if colon and head.isidentifier():
        raise SetupError(f"--model={spec}: unknown adapter {head!r} (adapters: "
                         f"{', '.join(adapter_names())}), and no file or folder {spec!r}")
    raise SetupError(f"--model={spec}: no such file or folder (expected a .keras file, a "
                     "SavedModel folder, module:function or NAME:PATH with NAME an adapter)")


# ----------------------------------------------------------------------------------- loading


def _keras_input_shape(model: Any) -> Optional[Shape]:
    """The per-image input shape a Keras model declares, None when it declares none."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise SetupError(f"the model takes {len(inputs)} inputs; the attacks need one (images)")
    return tuple(inputs[0].shape[1:])


class SavedModelLogits:
    """Logits of a restored SavedModel function: ``x`` cast to the input's dtype, the output (the
    one tensor, or ``output`` of a dict) cast to float32. Keeps the restored object alive."""

    def __init__(self, loaded: Any, fn: Any, input_name: Optional[str], output: Optional[str],
                 dtype: Any) -> None:
        self.loaded, self.fn = loaded, fn
        self.input_name, self.output, self.dtype = input_name, output, dtype

    def __call__(self, x: Any) -> Any:
        import tensorflow as tf

        x = tf.cast(x, self.dtype)
        out = self.fn(**{self.input_name: x}) if self.input_name else self.fn(x)
        return tf.cast(out[self.output] if self.output else out, tf.float32)


def _check_input_spec(spec: Any, where: str) -> Shape:
    if not spec.dtype.is_floating:
        raise SetupError(f"{where} takes {spec.dtype.name} input: the attacks need a floating "
                         "point (differentiable) input")
    shape = tuple(spec.shape)
    if not shape or shape[0] is not None:
        raise SetupError(f"{where} takes input of shape {list(shape)}: export it with a free batch "
                         "dimension (None)")
    return shape[1:]


def saved_model_logits(loaded: Any, path: str) -> Tuple[SavedModelLogits, str, Shape]:
    """``(logits function, how it was found, per-image input shape)`` of a restored SavedModel:
    ``serving_default`` with one input and one output, else ``__call__`` with one tensor input."""
    signature = getattr(loaded, "signatures", {}).get("serving_default")
    found = "no serving_default signature"
    if signature is not None:
        args, kwargs = signature.structured_input_signature
        outputs = signature.structured_outputs
        if not args and len(kwargs) == 1 and isinstance(outputs, dict) and len(outputs) == 1:
            (name, spec), = kwargs.items()
            shape = _check_input_spec(spec, f"{path}: serving_default")
            (out,) = outputs
            return (SavedModelLogits(loaded, signature, name, out, spec.dtype),
                    f"serving_default ({name} -> {out})", shape)
        found = (f"serving_default takes {sorted(kwargs)} and returns "
                 f"{sorted(outputs) if isinstance(outputs, dict) else outputs}")
    call = getattr(loaded, "__call__", None)
    concrete = getattr(call, "concrete_functions", None)
    if concrete:
        args, kwargs = concrete[0].structured_input_signature
        if len(args) == 1 and not kwargs and hasattr(args[0], "dtype"):
            shape = _check_input_spec(args[0], f"{path}: __call__")
            return SavedModelLogits(loaded, call, None, None, args[0].dtype), "__call__", shape
    raise SetupError(f"--model={path}: found no logits function in the SavedModel ({found}, and "
                     "no __call__ of one tensor): export it with Keras's model.export(path), or "
                     "tf.saved_model.save with a serving_default signature of one input (images) "
                     "and one output (logits)")


def _from_function(spec: ModelSpec) -> Any:
    module_name, function_name = spec.name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise SetupError(f"--model={spec.spec}: no module {err.name!r} importable from the "
                             f"working directory {os.getcwd()}, and {module_name!r} is not an "
                             f"adapter ({', '.join(adapter_names())})") from None
        raise SetupError(f"--model={spec.spec}: importing {module_name} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's code: report whatever it raises
        raise SetupError(f"--model={spec.spec}: importing {module_name} failed: "
                         f"{type(err).__name__}: {err}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SetupError(f"--model={spec.spec}: module {module_name} has no function "
                         f"{function_name!r}")
    try:
        model = function()
    except Exception as err:  # noqa: BLE001
        raise SetupError(f"--model={spec.spec}: {function_name}() raised {type(err).__name__}: "
                         f"{err}") from None
    if not callable(model):
        raise SetupError(f"--model={spec.spec}: {function_name}() returned a "
                         f"{type(model).__name__}, not a model (a callable x -> logits)")
    return model


def _load(spec: ModelSpec) -> LoadedModel:
    if spec.kind == "adapter":
        from daa_tf.models import LOADERS

        try:
            model = LOADERS[spec.name](spec.path)
        except (OSError, ValueError, KeyError) as err:
            raise SetupError(f"cannot load the {spec.name} adapter's weights from {spec.path}: "
                             f"{err}") from None
        return LoadedModel(model, f"adapter {spec.name} ({spec.path})", _keras_input_shape(model))
    if spec.kind == "keras":
        from daa_tf.models import load_keras_file

        try:  # daa_tf's layers (InputConv2D) are registered first; Keras's safe mode
            model = load_keras_file(spec.path)
        except (OSError, ValueError) as err:
            raise SetupError(f"--model={spec.spec}: {err}") from None
        return LoadedModel(model, f"Keras file {spec.path}", _keras_input_shape(model))
    if spec.kind == "saved_model":
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(spec.path)
        except Exception as err:  # noqa: BLE001
            raise SetupError(f"cannot load the SavedModel {spec.path}: {type(err).__name__}: "
                             f"{err}") from None
        fn, how, shape = saved_model_logits(loaded, spec.path)
        return LoadedModel(fn, f"SavedModel {spec.path}, {how}", shape)
    model = _from_function(spec)
    return LoadedModel(model, f"{spec.name}()", _keras_input_shape(model))


class Reshaped:
    """``x [N, *data_shape] -> model(x reshaped to [N, *input_shape])`` (Keras in inference
    mode)."""

    def __init__(self, model: Any, input_shape: Shape) -> None:
        self.model, self.input_shape = model, tuple(input_shape)

    def __call__(self, x: Any) -> Any:
        import tensorflow as tf

        from daa_tf.loop import call_model

        return call_model(self.model, tf.reshape(x, (-1,) + self.input_shape))


def fit_input(loaded: LoadedModel, image_shape: Shape) -> Tuple[Any, str]:
    """The model fed images of ``image_shape``, reshaped when the model declares a shape that only
    flattening separates from it; SetupError for any other mismatch. Also says what was done."""
    shape = loaded.input_shape
    if shape is None or None in shape or tuple(shape) == tuple(image_shape):
        return loaded.model, ""
    if (math.prod(shape) == math.prod(image_shape)
            and (len(shape) == 1 or len(image_shape) == 1)):
        return (Reshaped(loaded.model, shape),
                f"images {list(image_shape)} reshaped to the model's input {list(shape)}")
    raise SetupError(f"the model takes images of shape {list(shape)} but the data holds "
                     f"{list(image_shape)}")


def load(spec: ModelSpec, scope: Any = None) -> LoadedModel:
    """Loads the model of ``spec`` (under ``scope``, a ``tf.distribute`` scope, if given)."""
    with scope or contextlib.nullcontext():
        return _load(spec)
