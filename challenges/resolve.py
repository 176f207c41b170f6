"""From flags to inputs: checking paths, loading the test data and the model (downloading a
MadryLab model once into the cache), the ``tf.distribute`` strategy, and the leaderboard's score.
Shared by the runners, the evaluator and the report; TensorFlow is imported only on use.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
from absl import flags

from challenges.registry import Challenge


class SetupError(Exception):
    """The model or data cannot be had as the flags say; the message tells the user what to do."""


def _no_download(challenge: Challenge) -> SetupError:
    return SetupError(f"--model_dir is required for {challenge.title}: MadryLab publish no "
                      f"{challenge.title} model, so there is nothing to download; pass the folder "
                      "of the checkpoint to attack")


def check_paths(challenge: Challenge, model_dir: Optional[str], data_dir: Optional[str]) -> None:
    """Refuses a ``--model_dir`` / ``--data_dir`` that does not exist, or a missing
    ``--model_dir`` where nothing can be downloaded (before importing TensorFlow)."""
    if model_dir is None and not challenge.downloadable and challenge.model_fetcher is None:
        raise _no_download(challenge)
    for flag, path in (("--model_dir", model_dir), ("--data_dir", data_dir)):
        if path is not None and not os.path.exists(path):
            raise SetupError(f"{flag}={path} does not exist")


def check_output(output: str) -> None:
    """Refuses an ``--output`` that could not be written (before the attack runs, not after).
    Creates nothing: its folder is made when the file is written, so a failed run leaves no empty
    folder behind; here the nearest existing folder on its path must be writable."""
    if os.path.isdir(output):
        raise SetupError(f"--output={output} is a folder; name the file to write")
    folder = os.path.dirname(os.path.abspath(output))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SetupError(f"--output={output}: {existing} is a file, so the folder {folder} cannot "
                         "be created; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SetupError(f"--output={output}: the folder {existing} is not writable; choose "
                         "another path")


def load_data(challenge: Challenge, data_dir: Optional[str], num_examples: Optional[int]
              ) -> Tuple[np.ndarray, np.ndarray, str]:
    """The first ``num_examples`` (default: all) test images, labels, and where they came from."""
    from daa_tf.data import DataNotFoundError

    source = data_dir or "tensorflow-datasets"
    try:
        x, y = challenge.load_data("test", data_dir, num_examples)
    except DataNotFoundError as err:
        raise SetupError(f"no {challenge.title} test data: {err}") from None
    except ValueError as err:
        raise SetupError(f"cannot use the {challenge.title} test data from {source}: {err}"
                         ) from None
    return x, y, source


def model_path(challenge: Challenge, model_dir: Optional[str], model: str) -> Path:
    """``model_dir``, or the challenge's model fetched into the cache once: its own fetcher
    (``Challenge.model_fetcher``), else MadryLab's ``model``."""
    if model_dir is not None:
        return Path(model_dir)
    if challenge.model_fetcher is not None:
        try:
            return challenge.fetch_model()
        except Exception as err:  # noqa: BLE001 - a FetchError, or an unexpected failure
            raise SetupError(f"could not download the {challenge.title} model: {err} Or pass "
                             "--model_dir=<checkpoint folder>.") from None
    if not challenge.downloadable:
        raise _no_download(challenge)
    from daa_tf.models.fetch import FetchError, fetch_model

    try:
        return fetch_model(challenge.name, model)
    except FetchError as err:
        raise SetupError(f"could not download the {challenge.title} {model} model: {err} "
                         "Or pass --model_dir=<checkpoint folder>.") from None


def load_model(challenge: Challenge, path: Path) -> Any:
    """The Keras port of ``challenge``'s model with the weights of the checkpoint at ``path``."""
    try:
        return challenge.load_model(path)
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot load the {challenge.title} model from {path}: {err}") from None


def load_inputs(challenge: Challenge, model_dir: Optional[str], model: str,
                data_dir: Optional[str], num_examples: Optional[int],
                scope: Any = None) -> Tuple[Any, Path, np.ndarray, np.ndarray, str]:
    """``(model, model_path, x, y, data_source)``. The data is read first: when it cannot be,
    no model is downloaded (bad data costs no download), and without ``model_dir`` the message
    names both flags. The model is built under ``scope`` if given."""
    try:
        x, y, source = load_data(challenge, data_dir, num_examples)
    except SetupError as err:
        if model_dir is None and data_dir is None:
            raise SetupError("could not get the test data, so the model was not downloaded "
                             "either (offline?): pass --model_dir=<checkpoint folder> and "
                             f"--data_dir=<data folder>.\n  {err}") from None
        raise
    path = model_path(challenge, model_dir, model)
    with scope or contextlib.nullcontext():
        net = load_model(challenge, path)
    return net, path, x, y, source


def score(challenge: Challenge, model: Any, x: np.ndarray, y: np.ndarray,
          jit_compile: Optional[bool] = None) -> Tuple[np.ndarray, float]:
    """Predictions and accuracy of ``model`` on ``x``: the leaderboard's number (runner and
    evaluator compute it the same way)."""
    import daa_tf

    pred, _, _ = daa_tf.evaluate(model, x, y, batch_size=challenge.eval_batch_size,
                                 jit_compile=jit_compile)
    return pred, float(np.mean(pred == y))


def distribution_strategy() -> Any:
    """The ``tf.distribute`` strategy of ``--distribute``, or None (one device; also when the
    program defines no ``--distribute``). Call it before TensorFlow runs anything (multi-worker
    collectives are set up at start); build the model under its scope, pass it to ``daa_tf.run``.
    """
    if "distribute" not in flags.FLAGS:
        return None
    from daa_tf.distribute import make_strategy

    return make_strategy(flags.FLAGS.distribute)


def inputs_from_flags(challenge: Challenge, f: flags.FlagValues, strategy: Any = None
                      ) -> Tuple[Any, Path, np.ndarray, np.ndarray, str]:
    """:func:`load_inputs` for the model and data flags (the model built under ``strategy``'s
    scope if given), after :func:`check_paths`; warns that ``--model`` is ignored beside
    ``--model_dir``."""
    from absl import logging

    check_paths(challenge, f.model_dir, f.data_dir)
    inputs = load_inputs(challenge, f.model_dir, f.model, f.data_dir, f.num_examples,
                         strategy.scope() if strategy is not None else None)
    if f.model_dir is not None and f["model"].present:
        logging.warning("--model is ignored: --model_dir is given")
    return inputs
