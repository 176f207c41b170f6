"""Shared test fixtures.

The real data and checkpoints live in ``../shared`` beside the checkout (or where the environment
variable ``DAA_TF_SHARED`` points). They are read in place, never copied; tests that need them
skip with a clear reason when the folder is absent.
"""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("DAA_TF_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared`` fixture folder (data/, models/, docs/); skips the test when it is absent."""
    if not (SHARED_DIR / "models").is_dir() or not (SHARED_DIR / "data").is_dir():
        pytest.skip(
            f"shared fixtures not found at {SHARED_DIR} (expected ../shared beside the checkout, "
            "with data/ and models/); set DAA_TF_SHARED to their folder to run this test"
        )
    return SHARED_DIR
