"""The attack catalogue, as one TF-free import for the command line and the report: the
entries and constants (:mod:`daa_tf.specs`), the settings and their checks
(:mod:`daa_tf.settings`), the cascade's stages (:mod:`daa_tf.stages`), the batch-size policy
(:mod:`daa_tf.batching`) and the log text (:mod:`daa_tf.describe`). It defines nothing itself.
"""
from daa_tf.batching import batch_size_error, default_batch_size, multiple_error
from daa_tf.describe import describe
from daa_tf.settings import (RULE_SETTINGS, SETTING_NAMES, AttackSettings, LossSpec,
                             MissingSetting, attack_settings, check_box, check_loss,
                             default_step_size, positive, unread_settings, whole_number)
from daa_tf.specs import (APGD_INITIAL_STEP, ATTACKS, AUTOATTACK_VERSIONS, CASCADES, DAA_ATTACKS, DEFAULT_BATCH,
                          DEFAULT_BUDGET, DEFAULT_DECAY, DEFAULT_ODI_STEPS, DEFAULT_PARTICLES,
                          DEFAULT_SEED, DEFAULT_STEPS_PER_ROUND, DEFAULT_TARGETS, DIRECTIONS,
                          JIT_CHOICES, LOSS_LABELS, LOSSES, PAPER_LOSSES, RUNNABLE, STRATEGIES,
                          AttackSpec, CascadeSpec, Direction, get_spec, label)
from daa_tf.stages import (DEFAULT_SEQUENCE, MIN_STAGE_STEPS, CascadeSettings, RunSettings, Stage,
                           autoattack_stages, cascade_settings, default_stages, is_cascade)

__all__ = [
    "APGD_INITIAL_STEP", "ATTACKS", "AUTOATTACK_VERSIONS", "AttackSettings", "AttackSpec", "CASCADES", "CascadeSettings",
    "CascadeSpec", "DAA_ATTACKS", "DEFAULT_BATCH", "DEFAULT_BUDGET", "DEFAULT_DECAY",
    "DEFAULT_ODI_STEPS", "DEFAULT_PARTICLES", "DEFAULT_SEED", "DEFAULT_SEQUENCE",
    "DEFAULT_STEPS_PER_ROUND", "DEFAULT_TARGETS", "DIRECTIONS", "Direction", "JIT_CHOICES",
    "LOSSES", "LOSS_LABELS", "LossSpec", "MissingSetting", "RULE_SETTINGS", "MIN_STAGE_STEPS", "PAPER_LOSSES", "RUNNABLE",
    "RunSettings", "SETTING_NAMES", "STRATEGIES", "Stage", "attack_settings", "autoattack_stages", "batch_size_error",
    "cascade_settings", "check_box", "check_loss", "default_batch_size", "default_step_size",
    "default_stages", "describe", "get_spec", "is_cascade", "label", "multiple_error",
    "positive", "unread_settings", "whole_number"]
