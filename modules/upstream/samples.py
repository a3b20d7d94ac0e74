"""Small data in the layout of SpeechBrain's ``tests/samples``, for the recipe test of an export.

Upstream's recipe tests run every recipe on the few files under
``tests/samples`` (``--debug``, two epochs). The separation recipes read
``tests/samples/annotation/separation_{train,dev}.csv``: one row each,
written with a space after every comma (``ID, duration, mix_wav, ...``),
columns ``mix``, ``s1``, ``s2``, ``s3`` and ``noise`` (each with ``_wav``,
``_wav_format``, ``_wav_opts``), audio under ``$data_root`` =
``tests/samples/separation`` (``mixture_<i>.wav``, ``source1_<i>.wav``,
``source2_<i>.wav``: 16 kHz, 64-bit float) and the noise in
``$data_root/../noise/noise<i>.wav`` (16-bit). Two properties of those files
matter to a recipe: the ``s3`` column repeats ``s2`` (two-speaker recipes are
expected to read ``s1`` and ``s2`` only), and the noise files have their own
lengths, longer than the mixtures (and are not part of the mixture).

:func:`make_samples` writes synthetic signals (no file of upstream's is
copied) in that layout. ``strict=True`` reproduces the two properties above;
``strict=False`` writes what our own manifests hold (``s1``, ``s2`` and a
noise of the mixture's length, inside the mixture), to test a recipe's data
flow apart from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

__all__ = ["SAMPLE_RATE", "make_samples", "sample_flags"]

SAMPLE_RATE = 16000
_COLUMNS = ("mix", "s1", "s2", "s3", "noise")


def _voice(rng, n, sample_rate):
    """A harmonic, syllable-modulated signal (a stand-in for speech)."""
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(90, 260) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    return 0.3 * harmonics * envelope


def _noise(rng, n):
    white = rng.standard_normal(n)
    return 0.05 * np.convolve(white, np.ones(8) / 8, mode="same")


def make_samples(root, strict=True, seed=0, seconds=1.0):
    """Writes ``<root>/tests/samples/{separation,noise,annotation}``.

    Arguments
    ---------
    root : str or Path
        The folder that plays the upstream repository's root (the recipe
        test runs from there).
    strict : bool
        Reproduce the properties of upstream's files (see the module docstring).
    seed : int
    seconds : float
        Length of the mixtures (upstream's are about 7 s; 1 s keeps a CPU
        debug run short).

    Returns
    -------
    dict
        ``{"data_folder", "train_csv", "dev_csv"}`` relative to ``root``.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> paths = make_samples(root)
    >>> print(open(Path(root) / paths["train_csv"]).readline().strip()[:40])
    ID, duration, mix_wav, mix_wav_format, m
    >>> soundfile.info(str(Path(root) / paths["data_folder"] / "mixture_0.wav")).subtype
    'DOUBLE'
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "tests" / "samples"
    sep, noise_dir, ann = base / "separation", base / "noise", base / "annotation"
    for folder in (sep, noise_dir, ann):
        folder.mkdir(parents=True, exist_ok=True)
    longest = int(SAMPLE_RATE * seconds) + 400 * 3
    n_noise = {i: int(longest * (1.2 + 0.1 * i)) if strict else None for i in range(1, 6)}  # longer than any mixture
    for i in range(4):
        n = int(SAMPLE_RATE * seconds) + 400 * i
        s1, s2 = _voice(rng, n, SAMPLE_RATE), _voice(rng, n, SAMPLE_RATE)
        mix = s1 + s2
        if not strict and i + 1 in n_noise:
            noise = _noise(rng, n)
            soundfile.write(noise_dir / f"noise{i + 1}.wav", noise, SAMPLE_RATE, subtype="PCM_16")
            mix = mix + soundfile.read(noise_dir / f"noise{i + 1}.wav")[0]
        for name, signal in (("mixture", mix), ("source1", s1), ("source2", s2)):
            soundfile.write(sep / f"{name}_{i}.wav", signal, SAMPLE_RATE, subtype="DOUBLE")
    if strict:
        for i, length in n_noise.items():
            soundfile.write(noise_dir / f"noise{i}.wav", _noise(rng, length), SAMPLE_RATE, subtype="PCM_16")
    for split, index in (("train", 3), ("dev", 2)):
        files = {
            "mix": f"$data_root/mixture_{index}.wav",
            "s1": f"$data_root/source1_{index}.wav",
            "s2": f"$data_root/source2_{index}.wav",
            "s3": f"$data_root/source2_{index}.wav",
            "noise": f"$data_root/../noise/noise{index + 1 if not strict else index}.wav",
        }
        columns = [c for c in _COLUMNS if strict or c != "s3"]
        header = ["ID", "duration"] + [f"{c}_wav{suffix}" for c in columns for suffix in ("", "_format", "_opts")]
        row = ["0", "1.0"] + [value for c in columns for value in (files[c], "wav", "")]
        (ann / f"separation_{split}.csv").write_text(", ".join(header) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    return {
        "data_folder": "tests/samples/separation",
        "train_csv": "tests/samples/annotation/separation_train.csv",
        "dev_csv": "tests/samples/annotation/separation_dev.csv",
    }


def sample_flags(keys):
    """``test_debug_flags`` for a separation recipe on the ``tests/samples`` data.

    Arguments
    ---------
    keys : collection of str
        Top-level keys of the recipe's yaml: a flag is given only for a key
        the yaml has (an override of a missing key is an error).

    Returns
    -------
    str

    Example
    -------
    >>> sample_flags({"data_folder", "train_data", "valid_data", "test_data", "skip_prep", "N_epochs"})
    '--data_folder=tests/samples/separation --train_data=tests/samples/annotation/separation_train.csv \
--valid_data=tests/samples/annotation/separation_dev.csv --test_data=tests/samples/annotation/separation_dev.csv \
--skip_prep=True --N_epochs=2'
    """
    wanted = (
        ("data_folder", "tests/samples/separation"),
        ("train_data", "tests/samples/annotation/separation_train.csv"),
        ("valid_data", "tests/samples/annotation/separation_dev.csv"),
        ("test_data", "tests/samples/annotation/separation_dev.csv"),
        ("skip_prep", "True"),
        ("N_epochs", "2"),
        ("sample_rate", str(SAMPLE_RATE)),
    )
    return " ".join(f"--{key}={value}" for key, value in wanted if key in keys)
