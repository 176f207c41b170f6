"""daa_tf: the Distributionally Adversarial Attack (Zheng, Chen, Ren, AAAI 2019) and the attacks it
is measured against, for TensorFlow 2 / Keras models."""
from daa_tf import attacks, losses
from daa_tf.attacks import daa_blob, daa_dgf, fgsm, momentum_pgd, pgd
from daa_tf.driver import RunResult, evaluate, run

__all__ = ["attacks", "losses", "fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf", "run",
           "RunResult", "evaluate"]
__version__ = "0.1.0"
