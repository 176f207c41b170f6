r"""Attack the CIFAR10 challenge model and write a leaderboard file (``attack.npy``).

    python -m challenges.cifar10 --attack=daa_blob --output=attack.npy \
        [--model_dir=...] [--data_dir=...]

Defaults reproduce the paper's settings; ``--helpfull`` lists every flag. Ctrl-C leaves a state
beside the output that ``--resume`` continues from.
"""
from challenges import runner

if __name__ == "__main__":
    runner.main("cifar10")
