"""Packaging for daa_tf: the Distributionally Adversarial Attack in TensorFlow 2 / Keras."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="daa_tf",
    version="0.1.0",
    description="Distributionally Adversarial Attack (DAA) and PGD-family attacks for TF2/Keras, "
    "with MadryLab MNIST/CIFAR10 challenge runners.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["daa_tf", "daa_tf.*", "challenges", "challenges.*"]),
    install_requires=REQUIREMENTS,
    extras_require={"report": ["matplotlib>=3.5"],
                    "benchmarks": ["adversarial-robustness-toolbox>=1.17"]},
)
