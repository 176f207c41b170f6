"""One run over arrays held in memory: an attack's settings to :mod:`daa_tf.driver`, a cascade's
to :mod:`daa_tf.cascade`. :func:`daa_tf.run` calls it for arrays, :mod:`daa_tf.stream` for each
batch of a dataset."""
from typing import Any, Collection, Optional, Union

from daa_tf import cascade, driver, loop
from daa_tf.results import RunResult
from daa_tf.stages import RunSettings, cascade_settings, is_cascade

# The arguments of a run (the rest of a call's keywords are the attack's or cascade's settings).
RUN_ARGUMENTS = ("restarts", "steps_per_round", "batch_size", "seed", "verbose", "state_path",
                 "resume", "strategy", "on_restart")



def run(model: loop.Model, x: Any, y: Any, attack: Union[str, RunSettings],
        early_stop: Optional[bool] = None, checks_made: Collection[str] = cascade.CHECKS,
        **kwargs: Any) -> RunResult:
    """:func:`daa_tf.run` on arrays: ``x`` ``[N, ...]`` (pixel units in the box) and labels ``y``
    ``[N]``; ``kwargs`` are the run's arguments (:data:`RUN_ARGUMENTS`) and the attack's
    settings; all as :func:`daa_tf.dispatch.run` documents them, with its result.
    ``checks_made``: a cascade's (:func:`daa_tf.cascade.run`)."""
    if y is None:
        raise ValueError("labels y are required with arrays x (a tf.data.Dataset carries its "
                         "own)")
    common = {name: kwargs.pop(name) for name in RUN_ARGUMENTS if name in kwargs}
    if not is_cascade(attack):
        return driver.run(model, x, y, attack, early_stop=early_stop, **common, **kwargs)
    if isinstance(attack, str):
        settings = cascade_settings(attack, **kwargs)
    else:
        settings = attack.replace(**kwargs) if kwargs else attack
    if early_stop is False:
        raise ValueError(f"{settings.attack} always stops early: each stage attacks only the "
                         "examples the earlier ones did not fool")
    return cascade.run(model, x, y, settings, checks_made=checks_made, **common)
