"""One run over arrays held in memory: an attack's settings to :mod:`daa_tf.driver`, a cascade's
to :mod:`daa_tf.cascade`. :func:`daa_tf.run` calls it for arrays, :mod:`daa_tf.stream` for each
batch of a dataset."""
from typing import Any, Collection, Optional, Union

import tensorflow as tf

from daa_tf import cascade, driver, loop
from daa_tf.results import RunResult
from daa_tf.specs import DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND
from daa_tf.stages import RunSettings, cascade_settings, is_cascade


def run(model: loop.Model, x: Any, y: Any = None,
        attack: Union[str, RunSettings] = "daa_blob",
        restarts: int = 1, steps_per_round: int = DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[driver.OnRestart] = None, early_stop: Optional[bool] = None,
        checks_made: Collection[str] = cascade.CHECKS, **attack_params: Any) -> RunResult:
    """:func:`daa_tf.run` on arrays: ``x`` ``[N, ...]`` (pixel units in the box) and labels ``y``
    ``[N]``; the arguments and the result are :func:`daa_tf.dispatch.run`'s. ``checks_made``:
    a cascade's (:func:`daa_tf.cascade.run`)."""
    if y is None:
        raise ValueError("labels y are required with arrays x (a tf.data.Dataset carries its "
                         "own)")
    common = dict(restarts=restarts, steps_per_round=steps_per_round, batch_size=batch_size,
                  seed=seed, verbose=verbose, state_path=state_path, resume=resume,
                  strategy=strategy, on_restart=on_restart)
    if not is_cascade(attack):
        return driver.run(model, x, y, attack, early_stop=early_stop, **common, **attack_params)
    if isinstance(attack, str):
        settings = cascade_settings(attack, **attack_params)
    else:
        settings = attack.replace(**attack_params) if attack_params else attack
    if early_stop is False:
        raise ValueError(f"{settings.attack} always stops early: each stage attacks only the "
                         "examples the earlier ones did not fool")
    return cascade.run(model, x, y, settings, checks_made=checks_made, **common)
