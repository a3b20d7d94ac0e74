"""Miniature copies of the real corpora, made of procedural speech.

Each writer reproduces the on-disk layout of a real corpus (folder names, file
naming, sample rates, WAV subtypes, metadata files; see ``DATASETS.md``) at a
tiny size, from the signals of :mod:`data_prep.synth`, deterministically from a
seed. The real preparation scripts and recipes then run end to end on them.

* :func:`make_mini_wham` -> ``<out>/WHAM/wav{8k,16k}/{min,max}/{tr,cv,tt}/
  {mix_clean,mix_single,mix_both,s1,s2,noise}/<utt1>_<snr>_<utt2>_<-snr>.wav``
  (float32 WAV).
* :func:`make_mini_librimix` -> ``<out>/LibriMix/Libri{2,3}Mix/wav{8k,16k}/{min,max}/
  {train-100,dev,test}/{mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<ID>.wav``
  (PCM_16) and ``.../{min,max}/metadata/mixture_{split}_{mix_type}.csv``.

:data:`DATASETS` maps a name to its writer; all writers take the same keyword
arguments (``seed, n_train, n_valid, n_test, sample_rates, modes``).

Command line::

    python -m data_prep.mini --dataset {wham,librimix,all} --out DIR [--seed 0]
        [--n_train 48] [--n_valid 8] [--n_test 8] [--sample_rates 8000 16000] [--modes min max]

Speakers of the train, validation and test splits are disjoint. A writer
replaces an earlier mini corpus at the same place (recognised by its marker
file ``.mini_corpus.json``) and refuses to touch any other existing folder.
"""

import argparse
import csv
import json
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.common import PrepError, run_cli
from data_prep.synth import (
    active_level,
    ambient_noise,
    coloured_noise,
    resample,
    rms,
    sample_speaker,
    slow_modulation,
    synth_utterance,
)

#: Rate at which every signal is generated; other rates are resampled from it.
GEN_SR = 16000
SAMPLE_RATES = (8000, 16000)
MODES = ("min", "max")
MARKER = ".mini_corpus.json"
#: Utterance durations (seconds) of the sources.
UTT_DURATION = (1.5, 3.0)
DEFAULT_SIZES = {"n_train": 48, "n_valid": 8, "n_test": 8}

WHAM_SPLITS = ("tr", "cv", "tt")
WHAM_FOLDERS = ("mix_clean", "mix_single", "mix_both", "s1", "s2", "noise")
#: wsj0-2mix / WHAM!: speaker-relative SNR range (dB) and noise SNR range (dB).
WHAM_SPK_SNR = (0.0, 2.5)
WHAM_NOISE_SNR = (-6.0, 3.0)
#: wsj0-2mix peak-normalises every mixture set to this amplitude.
WHAM_PEAK = 0.9

LIBRIMIX_MIX_TYPES = ("mix_clean", "mix_both", "mix_single")
LIBRIMIX_TRAIN_SETS = ("train-100", "train-360")
#: LibriMix draws speech loudness in [-33, -25] LUFS and noise in [-38, -30]
#: LUFS; we use plain RMS dB instead of LUFS (no K-weighting or gating).
LIBRIMIX_SPEECH_DB = (-33.0, -25.0)
LIBRIMIX_NOISE_DB = (-38.0, -30.0)
#: LibriMix renormalises a mixture whose peak exceeds this amplitude.
LIBRIMIX_MAX_AMP = 0.9


def _rng(seed, *keys):
    """Generator seeded by ``seed`` and a path of keys (stable across runs)."""
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _check_options(seed, sizes, sample_rates, modes):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PrepError(f"invalid seed={seed!r} (a non-negative integer)")
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise PrepError(f"invalid {name}={value!r} (a positive integer)")
    for rate in sample_rates:
        if rate not in SAMPLE_RATES:
            raise PrepError(f"invalid sample rate {rate!r} (choose from 8000, 16000)")
    for mode in modes:
        if mode not in MODES:
            raise PrepError(f"invalid mode {mode!r} (choose from 'min', 'max')")
    if not sample_rates or not modes:
        raise PrepError("at least one sample rate and one mode are needed")


def _fresh_root(root, options):
    """Create ``root`` (replacing an earlier mini corpus) and write its marker."""
    root = Path(root)
    if root.exists():
        if (root / MARKER).is_file():
            shutil.rmtree(root)
        elif not root.is_dir() or any(root.iterdir()):
            raise PrepError(
                f"refusing to overwrite {root}: it exists and is not a mini corpus (no {MARKER})"
            )
    root.mkdir(parents=True, exist_ok=True)
    with open(root / MARKER, "w", encoding="utf-8") as fh:
        json.dump(options, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return root


def write_wav(path, data, sample_rate, subtype):
    """``soundfile.write`` with reproducible bytes.

    libsndfile stores the write time in the ``PEAK`` chunk of float WAV files;
    it is zeroed so that the same seed gives byte-identical files.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> write_wav(path, np.zeros(80, dtype=np.float32), 8000, "FLOAT")
    >>> sf.info(path).subtype
    'FLOAT'
    """
    sf.write(path, data, sample_rate, subtype=subtype)
    if subtype in ("FLOAT", "DOUBLE"):
        with open(path, "r+b") as fh:
            head = fh.read(256)
            pos = head.find(b"PEAK")
            if pos >= 0:  # id, size, version, then the 4-byte timestamp
                fh.seek(pos + 12)
                fh.write(b"\0\0\0\0")


def _fit(x, length):
    """Truncate or zero-pad to ``length`` samples."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - len(x))])


def _n_speakers(n_mixtures, per_mixture):
    """Speakers in a split pool: enough variety, several utterances each."""
    return max(per_mixture + 2, int(np.ceil(n_mixtures * per_mixture / 6)))


def _at_rates(signals, sample_rates):
    """Resample a dict of 16 kHz signals to every requested rate."""
    return {
        sr: {k: resample(v, GEN_SR, sr) for k, v in signals.items()}
        for sr in sample_rates
    }


# --------------------------------------------------------------------------
# WHAM!

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _wsj_speaker_codes(rng, count):
    """Unique 3-character wsj0-like speaker codes, e.g. ``'01a'``."""
    codes = set()
    while len(codes) < count:
        codes.add(f"{rng.integers(5)}{rng.integers(10)}{_B36[rng.integers(36)]}")
    return sorted(codes)


def _wsj_utt_id(rng, speaker_code):
    """8-character wsj0-like utterance id, e.g. ``'011a0101'``."""
    return (
        f"{speaker_code}{'acop'[rng.integers(4)]}{rng.integers(100):02d}"
        f"{_B36[rng.integers(10)]}{_B36[rng.integers(36)]}"
    )


def make_mini_wham(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(8000, 16000),
    modes=("min", "max"),
):
    """Write a miniature WHAM! under ``<out_dir>/WHAM``.

    Each mixture takes two speakers of its split, scales them wsj0-2mix style
    (``s1`` at +snr dB, ``s2`` at -snr dB after level normalisation, snr in
    [0, 2.5] dB, written in the file name), adds ambient noise at an SNR in
    [-6, +3] dB relative to the louder speaker, and peak-normalises the set to
    0.9. ``min`` truncates to the shorter utterance, ``max`` zero-pads to the
    longer one. Everything is generated at 16 kHz; 8 kHz files are resampled.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``WHAM``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Mixtures in ``tr``, ``cv`` and ``tt``.
    sample_rates : sequence of int
        Subset of (8000, 16000).
    modes : sequence of str
        Subset of ("min", "max").

    Returns
    -------
    Path
        The WHAM! root (``<out_dir>/WHAM``), to pass as ``data_folder``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_wham(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1,
    ...                       sample_rates=(8000,), modes=("min",))
    >>> sorted(p.name for p in (root / "wav8k" / "min" / "tt").iterdir())
    ['mix_both', 'mix_clean', 'mix_single', 'noise', 's1', 's2']
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    sample_rates, modes = tuple(sample_rates), tuple(modes)
    _check_options(seed, sizes, sample_rates, modes)
    options = {
        "dataset": "wham",
        "seed": int(seed),
        **sizes,
        "sample_rates": list(sample_rates),
        "modes": list(modes),
    }
    root = _fresh_root(Path(out_dir) / "WHAM", options)
    counts = (n_train, n_valid, n_test)
    pool_sizes = [_n_speakers(n, 2) for n in counts]
    rng = _rng(seed, "wham", "speakers")
    codes = _wsj_speaker_codes(rng, sum(pool_sizes))
    rng.shuffle(codes)
    used_utts = set()
    start = 0
    for split, n_mix, n_pool in zip(WHAM_SPLITS, counts, pool_sizes):
        pool = [sample_speaker(rng, code) for code in codes[start : start + n_pool]]
        start += n_pool
        for sr in sample_rates:
            for mode in modes:
                for folder in WHAM_FOLDERS:
                    (root / f"wav{sr // 1000}k" / mode / split / folder).mkdir(
                        parents=True
                    )
        for i in range(n_mix):
            _write_wham_mixture(
                root,
                split,
                pool,
                _rng(seed, "wham", split, i),
                used_utts,
                sample_rates,
                modes,
            )
    return root


def _write_wham_mixture(root, split, pool, rng, used_utts, sample_rates, modes):
    a, b = rng.choice(len(pool), 2, replace=False)
    ids = []
    for spk in (pool[a], pool[b]):
        utt = _wsj_utt_id(rng, spk.name)
        while utt in used_utts:
            utt = _wsj_utt_id(rng, spk.name)
        used_utts.add(utt)
        ids.append(utt)
    u1 = synth_utterance(pool[a], rng.uniform(*UTT_DURATION), GEN_SR, rng)
    u2 = synth_utterance(pool[b], rng.uniform(*UTT_DURATION), GEN_SR, rng)
    snr_txt = f"{max(rng.uniform(*WHAM_SPK_SNR), 1e-3):.5g}"
    snr = float(snr_txt)
    noise_snr = rng.uniform(*WHAM_NOISE_SNR)
    noise = ambient_noise(max(len(u1), len(u2)), GEN_SR, rng)
    name = f"{ids[0]}_{snr_txt}_{ids[1]}_-{snr_txt}.wav"
    u1, u2 = u1 * 10 ** (snr / 20), u2 * 10 ** (-snr / 20)
    for mode in modes:
        length = min(len(u1), len(u2)) if mode == "min" else max(len(u1), len(u2))
        s1, s2 = _fit(u1, length), _fit(u2, length)
        nz = noise[:length]
        loudest = max(active_level(s1, GEN_SR), active_level(s2, GEN_SR))
        nz = nz * loudest / rms(nz) * 10 ** (-noise_snr / 20)
        peak = max(
            np.max(np.abs(x)) for x in (s1, s2, nz, s1 + s2, s1 + nz, s1 + s2 + nz)
        )
        gain = WHAM_PEAK / peak
        for sr, at_rate in _at_rates(
            {"s1": s1 * gain, "s2": s2 * gain, "noise": nz * gain}, sample_rates
        ).items():
            sig = {k: v.astype(np.float32) for k, v in at_rate.items()}
            sig["mix_clean"] = sig["s1"] + sig["s2"]
            sig["mix_single"] = sig["s1"] + sig["noise"]
            sig["mix_both"] = sig["s1"] + sig["s2"] + sig["noise"]
            base = root / f"wav{sr // 1000}k" / mode / split
            for folder in WHAM_FOLDERS:
                write_wav(base / folder / name, sig[folder], sr, "FLOAT")


# --------------------------------------------------------------------------
# LibriMix


def _libri_speakers(rng, count):
    """Unique LibriSpeech-like speaker ids with two chapter ids each."""
    spk_ids = rng.choice(np.arange(19, 9000), size=count, replace=False)
    return [(int(s), [int(c) for c in rng.integers(1000, 300000, 2)]) for s in spk_ids]


def make_mini_librimix(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(8000, 16000),
    modes=("min", "max"),
    n_spks=(2, 3),
    train_set="train-100",
    mix_types=LIBRIMIX_MIX_TYPES,
):
    """Write a miniature LibriMix under ``<out_dir>/LibriMix``.

    For each ``n`` in ``n_spks`` a ``Libri{n}Mix`` folder with the splits
    ``train_set``, ``dev`` and ``test``. Sources get a random level in
    [-33, -25] dB and the coloured noise one in [-38, -30] dB (RMS dB standing
    in for the generator's LUFS); a mixture set whose peak exceeds 0.9 is
    scaled down, as the generator does. Files are PCM_16; metadata CSVs hold
    absolute paths as the real generator writes them. Giving fewer
    ``mix_types`` mimics a partial generation (``noise`` is written only with
    ``mix_both`` or ``mix_single``).

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``LibriMix``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Mixtures per split (for each ``n_spks``).
    sample_rates : sequence of int
        Subset of (8000, 16000).
    modes : sequence of str
        Subset of ("min", "max").
    n_spks : sequence of int
        Subset of (2, 3).
    train_set : str
        Name of the training split folder, ``"train-100"`` or ``"train-360"``.
    mix_types : sequence of str
        Subset of ("mix_clean", "mix_both", "mix_single").

    Returns
    -------
    Path
        ``<out_dir>/LibriMix`` (the folder containing ``Libri2Mix``/``Libri3Mix``).

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_librimix(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1,
    ...                           sample_rates=(8000,), modes=("min",), n_spks=(2,))
    >>> sorted(p.name for p in (root / "Libri2Mix" / "wav8k" / "min").iterdir())
    ['dev', 'metadata', 'test', 'train-100']
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    sample_rates, modes = tuple(sample_rates), tuple(modes)
    n_spks, mix_types = tuple(n_spks), tuple(mix_types)
    _check_options(seed, sizes, sample_rates, modes)
    if not n_spks or any(n not in (2, 3) for n in n_spks):
        raise PrepError(f"invalid n_spks={n_spks!r} (a subset of 2, 3)")
    if train_set not in LIBRIMIX_TRAIN_SETS:
        raise PrepError(
            f"invalid train_set={train_set!r} (choose from 'train-100', 'train-360')"
        )
    if not mix_types or any(t not in LIBRIMIX_MIX_TYPES for t in mix_types):
        raise PrepError(
            f"invalid mix_types={mix_types!r} (a subset of {LIBRIMIX_MIX_TYPES})"
        )
    options = {
        "dataset": "librimix",
        "seed": int(seed),
        **sizes,
        "sample_rates": list(sample_rates),
        "modes": list(modes),
        "n_spks": list(n_spks),
        "train_set": train_set,
        "mix_types": list(mix_types),
    }
    root = _fresh_root(Path(out_dir) / "LibriMix", options)
    splits = (train_set, "dev", "test")
    counts = (n_train, n_valid, n_test)
    pool_sizes = [_n_speakers(n, max(n_spks)) for n in counts]
    rng = _rng(seed, "librimix", "speakers")
    ids = _libri_speakers(rng, sum(pool_sizes))
    pools, start = {}, 0
    for split, n_pool in zip(splits, pool_sizes):
        pools[split] = [
            (sample_speaker(rng, str(spk)), chapters)
            for spk, chapters in ids[start : start + n_pool]
        ]
        start += n_pool
    for n in n_spks:
        used_utts = set()
        for split, n_mix in zip(splits, counts):
            metadata = {}
            for i in range(n_mix):
                _write_librimix_mixture(
                    root / f"Libri{n}Mix",
                    n,
                    split,
                    pools[split],
                    _rng(seed, "librimix", n, split, i),
                    used_utts,
                    sample_rates,
                    modes,
                    mix_types,
                    metadata,
                )
            for (sr, mode, mix_type), rows in metadata.items():
                meta_dir = (
                    root / f"Libri{n}Mix" / f"wav{sr // 1000}k" / mode / "metadata"
                )
                meta_dir.mkdir(parents=True, exist_ok=True)
                with open(
                    meta_dir / f"mixture_{split}_{mix_type}.csv",
                    "w",
                    newline="",
                    encoding="utf-8",
                ) as fh:
                    writer = csv.DictWriter(
                        fh, fieldnames=list(rows[0]), lineterminator="\n"
                    )
                    writer.writeheader()
                    writer.writerows(rows)
    return root


def _librimix_folders(n_spks, mix_types):
    folders = list(mix_types) + [f"s{k}" for k in range(1, n_spks + 1)]
    if "mix_both" in mix_types or "mix_single" in mix_types:
        folders.append("noise")
    return folders


def _write_librimix_mixture(
    libri_root,
    n_spks,
    split,
    pool,
    rng,
    used_utts,
    sample_rates,
    modes,
    mix_types,
    metadata,
):
    picks = rng.choice(len(pool), n_spks, replace=False)
    utt_ids, sources = [], []
    for k in picks:
        spk, chapters = pool[k]
        utt = f"{spk.name}-{chapters[rng.integers(2)]}-{rng.integers(150):04d}"
        while utt in used_utts:
            utt = f"{spk.name}-{chapters[rng.integers(2)]}-{rng.integers(150):04d}"
        used_utts.add(utt)
        utt_ids.append(utt)
        u = synth_utterance(spk, rng.uniform(*UTT_DURATION), GEN_SR, rng)
        sources.append(u * 10 ** (rng.uniform(*LIBRIMIX_SPEECH_DB) / 20) / rms(u))
    longest = max(len(u) for u in sources)
    noise = coloured_noise(
        longest, GEN_SR, rng, exponent=rng.uniform(0.5, 2.0), f_min=30.0
    )
    noise *= slow_modulation(longest, GEN_SR, rng, depth=rng.uniform(0.1, 0.5))
    noise *= 10 ** (rng.uniform(*LIBRIMIX_NOISE_DB) / 20) / rms(noise)
    mix_id = "_".join(utt_ids)
    folders = _librimix_folders(n_spks, mix_types)
    src_keys = [f"s{k}" for k in range(1, n_spks + 1)]
    for mode in modes:
        length = min(len(u) for u in sources) if mode == "min" else longest
        sig = {key: _fit(u, length) for key, u in zip(src_keys, sources)}
        sig["noise"] = noise[:length]
        clean = sum(sig[key] for key in src_keys)
        mixes = {
            "mix_clean": clean,
            "mix_both": clean + sig["noise"],
            "mix_single": sig["s1"] + sig["noise"],
        }
        peak = max(np.max(np.abs(mixes[t])) for t in mix_types)
        if peak > LIBRIMIX_MAX_AMP:
            sig = {k: v * (LIBRIMIX_MAX_AMP / peak) for k, v in sig.items()}
        for sr, out in _at_rates(sig, sample_rates).items():
            clean = sum(out[key] for key in src_keys)
            out["mix_clean"] = clean
            out["mix_both"] = clean + out["noise"]
            out["mix_single"] = out["s1"] + out["noise"]
            base = libri_root / f"wav{sr // 1000}k" / mode / split
            for folder in folders:
                path = base / folder / f"{mix_id}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, out[folder], sr, "PCM_16")
            for mix_type in mix_types:
                row = {
                    "mixture_ID": mix_id,
                    "mixture_path": str((base / mix_type / f"{mix_id}.wav").absolute()),
                }
                keys = ["s1"] if mix_type == "mix_single" else src_keys
                for key in keys:
                    row[f"source_{key[1:]}_path"] = str(
                        (base / key / f"{mix_id}.wav").absolute()
                    )
                if mix_type != "mix_clean":
                    row["noise_path"] = str(
                        (base / "noise" / f"{mix_id}.wav").absolute()
                    )
                row["length"] = len(out[mix_type])
                metadata.setdefault((sr, mode, mix_type), []).append(row)


#: Mini corpus writers by name; each takes ``(out_dir, seed=..., n_train=...,
#: n_valid=..., n_test=..., sample_rates=..., modes=...)`` and returns its root.
DATASETS = {
    "wham": make_mini_wham,
    "librimix": make_mini_librimix,
}


def make_mini(dataset, out_dir, **kwargs):
    """Write one mini corpus (a :data:`DATASETS` key) or all of them (``"all"``).

    Arguments
    ---------
    dataset : str
        A key of :data:`DATASETS` or ``"all"``.
    out_dir : str or Path
        Parent folder of the corpora.
    **kwargs
        Passed to the writers (``seed``, ``n_train``, ...).

    Returns
    -------
    dict
        ``{name: root}`` of the corpora written.

    Example
    -------
    >>> import tempfile
    >>> out = make_mini("wham", tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1,
    ...                 sample_rates=(8000,), modes=("max",))
    >>> out["wham"].name
    'WHAM'
    """
    if dataset != "all" and dataset not in DATASETS:
        raise PrepError(
            f"invalid dataset={dataset!r} (choose from {', '.join(DATASETS)}, all)"
        )
    names = list(DATASETS) if dataset == "all" else [dataset]
    return {name: DATASETS[name](out_dir, **kwargs) for name in names}


def build_parser():
    """Command-line parser of ``python -m data_prep.mini``.

    Example
    -------
    >>> build_parser().parse_args(["--dataset", "wham", "--out", "d"]).sample_rates
    [8000, 16000]
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.mini",
        description="Write miniature corpora with the real on-disk layouts.",
    )
    parser.add_argument("--dataset", required=True, choices=[*DATASETS, "all"])
    parser.add_argument("--out", required=True, help="parent folder of the corpora")
    parser.add_argument("--seed", type=int, default=0)
    for name, value in DEFAULT_SIZES.items():
        parser.add_argument(
            f"--{name}", type=int, default=value, help=f"default {value}"
        )
    parser.add_argument(
        "--sample_rates",
        type=int,
        nargs="+",
        default=list(SAMPLE_RATES),
        choices=SAMPLE_RATES,
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    return parser


def _cli(dataset, out, **kwargs):
    start = time.perf_counter()
    roots = make_mini(dataset, out, **kwargs)
    elapsed = time.perf_counter() - start
    sizes = "/".join(str(kwargs[k]) for k in DEFAULT_SIZES)
    for name, root in roots.items():
        print(
            f"{name}: mini corpus at {Path(root).absolute()} "
            f"({sizes} train/valid/test mixtures)"
        )
    print(f"done in {elapsed:.1f} s")


def main(argv=None):
    """Entry point of ``python -m data_prep.mini``; returns the exit status."""
    return run_cli(build_parser(), _cli, argv)


if __name__ == "__main__":
    sys.exit(main())
