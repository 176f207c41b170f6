"""``daa_tf.run``: one entry for a whole data set, dispatching a cascade's settings to
:mod:`daa_tf.cascade` and an attack's to :mod:`daa_tf.driver`."""
from typing import TYPE_CHECKING, Any, Optional, Union

import tensorflow as tf

from daa_tf import cascade, driver, loop
from daa_tf.results import RunResult
from daa_tf.specs import DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND
from daa_tf.stages import RunSettings, cascade_settings, is_cascade

if TYPE_CHECKING:  # stream imports this module
    from daa_tf.stream import StreamResult


def run(model: loop.Model, x: Any, y: Any = None,
        attack: Union[str, RunSettings] = "daa_blob",
        restarts: int = 1, steps_per_round: int = DEFAULT_STEPS_PER_ROUND,
        batch_size: Optional[int] = None, seed: int = DEFAULT_SEED, verbose: int = 1,
        state_path: Optional[str] = None, resume: bool = False,
        strategy: Optional[tf.distribute.Strategy] = None,
        on_restart: Optional[driver.OnRestart] = None, early_stop: Optional[bool] = None,
        **attack_params: Any) -> Union[RunResult, "StreamResult"]:
    """Runs ``attack`` over the whole set ``x`` ``[N, ...]`` (pixel units in the box) with labels
    ``y`` ``[N]`` (targets when ``targeted``).

    ``attack``: a name of :data:`daa_tf.specs.RUNNABLE` with ``attack_params`` its settings (the
    attack functions' settings: ``eps``, ``step_size``, ``steps``, ``loss``, ``random_start``,
    ``clip_min``, ``clip_max``, ``targeted``, ``c``, ``particles``, ``decay``, ``init``,
    ``odi_steps``, ``odi_step_size``, ``targets``, ``best``, ``jit_compile``; a cascade's:
    ``eps``, ``budget``, ``stages``, the box), or validated settings
    (:class:`daa_tf.settings.AttackSettings`, :class:`daa_tf.stages.CascadeSettings`; then
    ``attack_params``, if any, replace some of them). ``batch_size`` is throughput only (for DAA
    a multiple of ``particles``). ``verbose`` 1 shows a progress bar, 0 none. With
    ``state_path`` the merged state is saved after every restart (a cascade's: every stage);
    ``resume=True`` continues from it (the result equals an uninterrupted run; a state with more
    restarts than asked for is refused). ``on_restart(index, accuracy, seconds)`` is called
    after each restart (a cascade's: each stage) with the running robust accuracy of the worst
    case so far and that restart's wall time. With a ``strategy`` (``tf.distribute``; create the
    model under its scope) each call runs one batch per replica (``batch_size`` is per replica;
    see :mod:`daa_tf.distribute`): the result is the same. ``early_stop`` (default: on for
    attacks whose examples do not interact, refused for DAA; a cascade always stops early):
    examples already fooled are not attacked again by later restarts or target runs; the merged
    result is the same (docs/algorithms.md#early-stop). The result reports the gradient budget
    per image and the gradients actually spent (:class:`daa_tf.results.RunResult`).
    A cascade's restarts repeat the cascade; its restart figures are per stage.

    ``x`` may instead be a ``tf.data.Dataset`` of ``(x, y)`` batches (``y`` left out): it is
    streamed by :func:`daa_tf.stream.run` (read once, attacked batch by batch; extra arguments
    ``output`` and ``on_batch``) and the result is a :class:`daa_tf.stream.StreamResult`.
    """
    from daa_tf import stream

    if stream.is_dataset(x):
        if y is not None:
            if not isinstance(y, str) and not hasattr(y, "attack"):
                raise ValueError("a dataset yields (x, y) batches: leave y out")
            attack = y  # run(model, dataset, "pgd", ...)
        return stream.run(model, x, attack, restarts=restarts, steps_per_round=steps_per_round,
                          batch_size=batch_size, seed=seed, verbose=verbose,
                          state_path=state_path, resume=resume, strategy=strategy,
                          on_restart=on_restart, early_stop=early_stop, **attack_params)
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
    return cascade.run(model, x, y, settings, **common)
