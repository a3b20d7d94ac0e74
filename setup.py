"""Noise- and domain-robust speech separation recipes for SpeechBrain."""

from setuptools import find_packages, setup

setup(
    name="robust-sep-recipes",
    version="0.1.0",
    description="SpeechBrain recipes for noise-robust and domain-robust speech separation",
    packages=find_packages(include=["modules", "modules.*", "data_prep", "data_prep.*"]),
    python_requires=">=3.10",  # torch 2.11 needs it
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        # what modules/ and data_prep/ import
        "numpy>=1.26",
        "scipy>=1.11",
        "soundfile>=0.12",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "hyperpyyaml>=1.2",
        "ruamel.yaml>=0.17",
        "PyYAML>=6.0",
        "pyloudnorm>=0.1.1",
        "pesq>=0.0.4",
        "pystoi>=0.4.1",
        "jiwer==4.0.0",
        "pocketsphinx==5.1.1",
        "speechmos==0.0.1.1",  # imports librosa and requests without declaring them
        "onnxruntime==1.31.1",
        "librosa==0.11.0",
        "pyroomacoustics==0.10.1",  # image-method RIRs (data_prep/dpccn_reverb.py)
        "requests>=2.31",
        "transformers==4.57.6",  # SSL/ASR models via speechbrain.integrations.huggingface
        "huggingface_hub==0.36.2",
        "submitit==1.5.4",  # SLURM launcher of modules.reproduce
    ],
    package_data={"modules": ["paper_tables/*.yaml"]},
    entry_points={
        "console_scripts": [
            "separate=modules.inference:main",
            "export-model=modules.export:main",
            "realm-eval=modules.evaluation.realm:main",
            "sep-results=modules.results:main",
            "robust-sep-upstream=modules.upstream.__main__:main",
        ]
    },
)
