"""Noise- and domain-robust speech separation recipes for SpeechBrain."""

from setuptools import find_packages, setup

setup(
    name="robust-sep-recipes",
    version="0.1.0",
    description="SpeechBrain recipes for noise-robust and domain-robust speech separation",
    packages=find_packages(include=["modules", "modules.*", "data_prep", "data_prep.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        "numpy",
        "scipy",
        "soundfile",
        "pandas",
        "tqdm",
    ],
)
