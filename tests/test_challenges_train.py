"""The training command line ``python -m challenges.train`` (challenges.train) end to end: a run
interrupted by SIGTERM saves a checkpoint, a rerun without --resume refuses the folder, --resume
continues, and the adapter loads what it wrote."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from daa_tf.models import checkpoint_writer as cw
from tests.helpers import REPO_ROOT


def test_cli_trains_checkpoints_is_interrupted_and_resumes(shared, tmp_path):
    """``python -m challenges.train``: SIGTERM saves a checkpoint and exits 130; a rerun without
    --resume refuses the folder; --resume continues to --train_steps; the adapter loads it."""
    from daa_tf.models import load_madry_mnist

    model_dir = tmp_path / "run"
    base = [sys.executable, "-m", "challenges.train", "--challenge=mnist",
            f"--model_dir={model_dir}", f"--data_dir={shared / 'data' / 'mnist'}",
            "--num_examples=200", "--batch_size=10", "--steps=2", "--output_steps=1",
            "--checkpoint_steps=2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.Popen(base + ["--train_steps=100000"], cwd=REPO_ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (model_dir / "checkpoint-2.index").exists() and run.poll() is None:
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-3000:]
    assert "Resume with" in err and "--resume" in err and "step 2/100000" in err
    interrupted = cw.checkpoint_steps(model_dir)[-1]
    assert interrupted >= 2 and (model_dir / "train_config.json").exists()

    refused = subprocess.run(base + ["--train_steps=100000"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=240)
    assert refused.returncode == 1 and "pass --resume" in refused.stderr

    resumed = subprocess.run(base + [f"--train_steps={interrupted + 1}", "--resume"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"steps {interrupted}..{interrupted + 1}" in resumed.stderr
    assert cw.checkpoint_steps(model_dir)[-1] == interrupted + 1
    model = load_madry_mnist(model_dir)
    assert model(np.zeros((1, 784), np.float32)).shape == (1, 10)
