"""Miniature copies of the real corpora, made of procedural speech.

Each writer reproduces the on-disk layout of a real corpus (folder names, file
naming, sample rates, WAV subtypes, metadata files, as the official generators write them) at a
tiny size, from the signals of :mod:`data_prep.synth`, deterministically from a
seed. The real preparation scripts and recipes then run end to end on them.

* :func:`make_mini_wham` -> ``<out>/WHAM/wav{8k,16k}/{min,max}/{tr,cv,tt}/
  {mix_clean,mix_single,mix_both,s1,s2,noise}/<utt1>_<snr>_<utt2>_<-snr>.wav``
  (float32 WAV).
* :func:`make_mini_librimix` -> ``<out>/LibriMix/Libri{2,3}Mix/wav{8k,16k}/{min,max}/
  {train-100,dev,test}/{mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<ID>.wav``
  (PCM_16) and ``.../{min,max}/metadata/mixture_{split}_{mix_type}.csv``; with
  ``enrollment=True`` also a partial ``LibriMix/LibriSpeech`` (FLAC) and the
  enrollment lists ``LibriMix/lists/libri{n}mix/{tr,cv,tt}_aux.lst``.
* :func:`make_mini_vox2mix` -> ``<out>/Vox2Mix/DIP/{audio_clean,audio_mixture,lists}``
  (VoxCeleb2 tree, mixtures and mixing lists of the DIP variant) and
  ``<out>/Vox2Mix/VoxCeleb2-2Mix/{tr,cv,tt}/{mix,s1,s2}/<name>.wav`` (16 kHz PCM_16).
* :func:`make_mini_lrs2mix` -> ``<out>/LRS2Mix/lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/
  {mix,s1,s2}/<name>.wav`` (16 kHz, 2 s, PCM_16) beside an empty ``lrs2_rebuild/mouths/``,
  as the LRS2-2Mix download unzips.
* :func:`make_mini_aishell2mix` -> the simulator's inputs:
  ``<out>/Aishell2Mix/data_aishell/wav/{train,dev,test}/SXXXX/BAC009SXXXXWXXXX.wav``
  (16 kHz, tonal speakers, a different room and channel) and
  ``<out>/Aishell2Mix/lst/{tr,cv,tt}_{cfg,aux}.lst``.
* :func:`make_mini_realm` -> ``<out>/REALM/{audio_files_converted_8000Hz/<session>,
  transcriptions,separations}`` (8 kHz; early sessions with mp3 names).

The corpora of SADDEL's conditions (:data:`SADDEL_CORPORA`, not among the six
datasets, so not in ``all``):

* :func:`make_mini_wsj0mix` -> ``<out>/wsj0-mix/{2speakers,3speakers}/wav{8k,16k}/{min,max}/
  {tr,cv,tt}/{mix,s1,s2[,s3]}/<utt1>_<l1>_<utt2>_<l2>[_<utt3>_<l3>].wav`` (PCM_16).
* :func:`make_mini_musan` -> ``<out>/musan/noise/{free-sound,sound-bible}/noise-<subset>-NNNN.wav``
  (16 kHz PCM_16) beside each folder's ``ANNOTATIONS`` and ``LICENSE``.
* :func:`make_mini_nonspeech` -> ``<out>/Nonspeech/n1.wav`` ... ``n<K>.wav`` (20 kHz PCM_16).
* :func:`make_mini_librispeech` -> ``<out>/LibriSpeech/{train-clean-100,dev-clean,test-clean}/
  <speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` (16 kHz FLAC) with the chapters'
  ``.trans.txt`` files; every fifth utterance shorter than 6 s (for SADDEL's Librispeech-mix).

:data:`DATASETS` maps a name to its writer; all writers take the same keyword
arguments (``seed, n_train, n_valid, n_test, sample_rates, modes``), and so
do those of :data:`SADDEL_CORPORA`. The
corpora that exist at one rate only (Vox2Mix, LRS2-2Mix 16 kHz; Aishell2Mix,
REAL-M 8 kHz; MUSAN, 100 Nonspeech, LibriSpeech) check but otherwise ignore ``sample_rates`` and ``modes``.
The noise corpora have no splits: their ``n_train + n_valid + n_test`` is the
number of files; those of the mini LibriSpeech are utterances per subset.

Command line::

    python -m data_prep.mini --out DIR
        --dataset {wham,librimix,vox2mix,lrs2mix,aishell2mix,realm,wsj0mix,musan,nonspeech,librispeech,all}
        [--seed 0] [--n_train 48] [--n_valid 8] [--n_test 8] [--sample_rates 8000 16000] [--modes min max]
        [--enrollment]

(``--enrollment`` adds the enrollment material of the mini LibriMix.)

Speakers of the train, validation and test splits are disjoint. A writer
replaces an earlier mini corpus at the same place (recognised by its marker
file ``.mini_corpus.json``) and refuses to touch any other existing folder.
"""

import argparse
import csv
import inspect
import json
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len

from data_prep.common import PrepError, run_cli
from data_prep.librimix import LIBRISPEECH_SUBSETS
from data_prep.synth import (
    active_level,
    ambient_noise,
    coloured_noise,
    mains_hum,
    reverberate,
    rms,
    room_response,
    sample_speaker,
    sample_tonal_speaker,
    slow_modulation,
    synth_utterance,
)
from modules.audio import resample

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
            raise PrepError(f"refusing to overwrite {root}: it exists and is not a mini corpus (no {MARKER})")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / MARKER, "w", encoding="utf-8") as fh:
        json.dump(options, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return root


def _start(out_dir, folder, dataset, seed, sizes, sample_rates, modes):
    """Checks the options and returns a fresh ``<out_dir>/<folder>`` for a generator."""
    _check_options(seed, sizes, tuple(sample_rates), tuple(modes))
    return _fresh_root(Path(out_dir) / folder, {"dataset": dataset, "seed": int(seed), **sizes})


def _shaped(x, sample_rate, gain):
    """``x`` filtered by the real frequency response ``gain(f)`` (f in Hz), via one FFT."""
    n = len(x)
    m = next_fast_len(n, real=True)
    spec = np.fft.rfft(x, n=m)
    spec *= gain(np.fft.rfftfreq(m, 1.0 / sample_rate))
    return np.fft.irfft(spec, n=m)[:n]


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
    return {sr: {k: resample(v, GEN_SR, sr) for k, v in signals.items()} for sr in sample_rates}


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
                    (root / f"wav{sr // 1000}k" / mode / split / folder).mkdir(parents=True)
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
        peak = max(np.max(np.abs(x)) for x in (s1, s2, nz, s1 + s2, s1 + nz, s1 + s2 + nz))
        gain = WHAM_PEAK / peak
        for sr, at_rate in _at_rates({"s1": s1 * gain, "s2": s2 * gain, "noise": nz * gain}, sample_rates).items():
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
    enrollment=False,
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
    enrollment : bool
        Also write what target-speaker extraction needs: a partial LibriSpeech
        ``LibriMix/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/<utt>.flac``
        (16 kHz FLAC) holding two further utterances of every ``s1`` speaker,
        and the enrollment lists ``LibriMix/lists/libri{n}mix/{tr,cv,tt}_aux.lst``
        in the format of jyhan03/icassp22-dataset
        (``<mixture ID><TAB>../<subset>/<spk>/<chapter>/<utt>.flac``). The rest
        of the corpus is byte-identical to ``enrollment=False``.

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
        raise PrepError(f"invalid train_set={train_set!r} (choose from 'train-100', 'train-360')")
    if not mix_types or any(t not in LIBRIMIX_MIX_TYPES for t in mix_types):
        raise PrepError(f"invalid mix_types={mix_types!r} (a subset of {LIBRIMIX_MIX_TYPES})")
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
    if enrollment:
        options["enrollment"] = True
    root = _fresh_root(Path(out_dir) / "LibriMix", options)
    mix_ids = {}
    splits = (train_set, "dev", "test")
    counts = (n_train, n_valid, n_test)
    pool_sizes = [_n_speakers(n, max(n_spks)) for n in counts]
    rng = _rng(seed, "librimix", "speakers")
    ids = _libri_speakers(rng, sum(pool_sizes))
    pools, start = {}, 0
    for split, n_pool in zip(splits, pool_sizes):
        pools[split] = [(sample_speaker(rng, str(spk)), chapters) for spk, chapters in ids[start : start + n_pool]]
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
                meta_dir = root / f"Libri{n}Mix" / f"wav{sr // 1000}k" / mode / "metadata"
                meta_dir.mkdir(parents=True, exist_ok=True)
                with open(
                    meta_dir / f"mixture_{split}_{mix_type}.csv",
                    "w",
                    newline="",
                    encoding="utf-8",
                ) as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(rows)
            mix_ids[(n, split)] = [r["mixture_ID"] for r in next(iter(metadata.values()))]
    if enrollment:
        _write_librimix_enrollment(root, seed, splits, pools, mix_ids)
    return root


#: LibriMix split folder -> split name of the published aux lists.
AUX_SPLITS = {"train-100": "tr", "train-360": "tr", "dev": "cv", "test": "tt"}
#: Enrollment utterances written per target speaker.
ENROLL_PER_SPEAKER = 2


def _write_librimix_enrollment(root, seed, splits, pools, mix_ids):
    """Partial LibriSpeech (enrollment utterances) and the aux lists."""
    used = {u for ids in mix_ids.values() for mix in ids for u in mix.split("_")}
    for split in splits:
        subset = LIBRISPEECH_SUBSETS[split]
        speakers = {str(spk.name): (spk, chapters) for spk, chapters in pools[split]}
        targets = sorted(
            {mix.split("_")[0].split("-")[0] for (n, sp), ids in mix_ids.items() if sp == split for mix in ids}
        )
        enroll = {}
        for name in targets:
            spk, chapters = speakers[name]
            rng = _rng(seed, "librimix", "enroll", split, name)
            utts = []
            while len(utts) < ENROLL_PER_SPEAKER:
                chapter = chapters[rng.integers(2)]
                utt = f"{name}-{chapter}-{150 + rng.integers(150):04d}"
                if utt in used:
                    continue
                used.add(utt)
                x = synth_utterance(spk, rng.uniform(2.0, 4.0), GEN_SR, rng)
                x *= 10 ** (rng.uniform(*LIBRIMIX_SPEECH_DB) / 20) / rms(x)
                path = root / "LibriSpeech" / subset / name / str(chapter) / f"{utt}.flac"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, x, GEN_SR, subtype="PCM_16", format="FLAC")
                utts.append((chapter, utt))
            enroll[name] = utts
        for (n, sp), ids in mix_ids.items():
            if sp != split:
                continue
            lines = []
            for mix in sorted(ids):
                name = mix.split("_")[0].split("-")[0]
                chapter, utt = enroll[name][_rng(seed, "librimix", "aux", n, mix).integers(ENROLL_PER_SPEAKER)]
                lines.append(f"{mix}\t../{subset}/{name}/{chapter}/{utt}.flac\n")
            lst = root / "lists" / f"libri{n}mix" / f"{AUX_SPLITS[split]}_aux.lst"
            lst.parent.mkdir(parents=True, exist_ok=True)
            lst.write_text("".join(lines), encoding="utf-8")


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
    noise = coloured_noise(longest, GEN_SR, rng, exponent=rng.uniform(0.5, 2.0), f_min=30.0)
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
                    row[f"source_{key[1:]}_path"] = str((base / key / f"{mix_id}.wav").absolute())
                if mix_type != "mix_clean":
                    row["noise_path"] = str((base / "noise" / f"{mix_id}.wav").absolute())
                row["length"] = len(out[mix_type])
                metadata.setdefault((sr, mode, mix_type), []).append(row)


# --------------------------------------------------------------------------
# Shared by the corpora below


def _q16(x):
    """What a PCM_16 file holds for ``x`` (so mixtures can be made from it)."""
    return np.round(np.clip(x, -1.0, 1.0 - 1.0 / 32768) * 32768) / 32768


def _unique(rng, make, used):
    """Draw ``make(rng)`` until it is not in ``used``; add it and return it."""
    value = make(rng)
    while value in used:
        value = make(rng)
    used.add(value)
    return value


def _split_pools(rng, ids, counts):
    """Cut a shuffled id list into consecutive pools of the given sizes."""
    pools, start = [], 0
    for count in counts:
        pools.append(ids[start : start + count])
        start += count
    return pools


def _wsj_mix(u1, u2, gain_db, peak=WHAM_PEAK):
    """wsj0-2mix rule: equal RMS, s1 at +gain dB, s2 at -gain dB, shorter length, peak 0.9."""
    n = min(len(u1), len(u2))
    s1 = u1[:n] / rms(u1[:n]) * 10 ** (gain_db / 20)
    s2 = u2[:n] / rms(u2[:n]) * 10 ** (-gain_db / 20)
    mix = s1 + s2
    scale = peak / max(np.max(np.abs(mix)), np.max(np.abs(s1)), np.max(np.abs(s2)))
    return mix * scale, s1 * scale, s2 * scale


def _write_triplet(base, name, signals, sample_rate):
    """Write ``{mix,s1,s2}/<name>`` (PCM_16) from quantised sources, mix = s1 + s2."""
    s1, s2 = _q16(signals[1]), _q16(signals[2])
    for folder, x in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        write_wav(base / folder / name, x, sample_rate, "PCM_16")


# --------------------------------------------------------------------------
# Vox2Mix (both public variants)

VOX_SPLITS = (("tr", "train", "train"), ("cv", "val", "train"), ("tt", "test", "test"))
#: VoxCeleb2 utterances used by Vox2Mix are at least 4 s long.
VOX_UTT_DURATION = (4.0, 6.0)
#: DIP co-author variant: interferer gain relative to the target (dB).
VOX_GAIN_DB = (-10.0, 10.0)
#: VoxCeleb2-2Mix: wsj0-style per-source gain (dB).
VOX_WSJ_GAIN_DB = (0.0, 5.0)
_YT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def _yt_id(rng):
    return "".join(_YT_CHARS[i] for i in rng.integers(len(_YT_CHARS), size=11))


def _in_the_wild(x, rng, sample_rate=GEN_SR):
    """VoxCeleb-like channel: a room, background noise at 10-30 dB SNR, a level."""
    x = reverberate(x, room_response(sample_rate, rng, rt60=(0.15, 0.5)))
    noise = coloured_noise(len(x), sample_rate, rng, exponent=rng.uniform(0.3, 1.5), f_min=40.0)
    noise *= slow_modulation(len(x), sample_rate, rng, depth=rng.uniform(0.1, 0.5))
    x = x / rms(x) + noise / rms(noise) * 10 ** (-rng.uniform(10.0, 30.0) / 20)
    return x / rms(x) * 10 ** (rng.uniform(-30.0, -20.0) / 20)


def make_mini_vox2mix(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(16000,),
    modes=("min",),
):
    """Write a miniature Vox2Mix (both public variants) under ``<out_dir>/Vox2Mix``.

    * ``Vox2Mix/DIP``: the DIP co-author variant. A VoxCeleb2-shaped tree
      ``audio_clean/{train,test}/idXXXXX/<11-char video id>/<5-digit utt>.wav``
      (16 kHz PCM_16, utterances of 4-6 s with a room, background noise and a
      level of their own, like interview recordings), the mixing lists
      ``lists/vox2mix_{train,val,test}.csv`` (rows
      ``<set>,<subset>,<spk>,<video>/<utt>,0,<subset>,<spk>,<video>/<utt>,<gain>,<duration>``,
      gain in U(-10, 10) dB, no header) and the mixtures
      ``audio_mixture/2_mix_min_800/{train,val,test}/<row with , and / -> _>.wav``
      made by the official mixing rule (:func:`data_prep.vox2mix.mix_sources`,
      peak 1.0, int16 by :func:`data_prep.vox2mix.official_pcm16`), which the
      prep's simulator also applies. ``train`` and ``val`` draw from ``audio_clean/train``
      (disjoint speakers), ``test`` from ``audio_clean/test``.
    * ``Vox2Mix/VoxCeleb2-2Mix``: ``{tr,cv,tt}/{mix,s1,s2}/<name>.wav`` with
      wsj0-style names ``<spk>_<video>_<utt>_<g>_<spk>_<video>_<utt>_-<g>.wav``
      (same utterance pairs; s1 at +g dB, s2 at -g dB after RMS matching, g in
      [0, 5], shorter length, peak 0.9), 16 kHz PCM_16.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``Vox2Mix``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Mixtures of ``tr``/``train``, ``cv``/``val``, ``tt``/``test``.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked, but Vox2Mix exists at
        16 kHz only (and truncates to the shorter source): always written so.

    Returns
    -------
    Path
        ``<out_dir>/Vox2Mix``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_vox2mix(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1)
    >>> sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    ['DIP', 'VoxCeleb2-2Mix']
    >>> sorted(p.name for p in (root / "DIP").iterdir())
    ['audio_clean', 'audio_mixture', 'lists']
    """
    from data_prep.vox2mix import DIP_MIX_DIR, dip_mixture_name, mix_sources, official_pcm16, parse_mixing_row

    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "Vox2Mix", "vox2mix", seed, sizes, sample_rates, modes)
    dip, two = root / "DIP", root / "VoxCeleb2-2Mix"
    counts = (n_train, n_valid, n_test)
    rng = _rng(seed, "vox2mix", "speakers")
    pool_sizes = [_n_speakers(n, 2) for n in counts]
    ids = [f"id{i:05d}" for i in rng.choice(np.arange(12, 9273), size=sum(pool_sizes), replace=False)]
    used_utts = set()
    (dip / "lists").mkdir(parents=True)
    for (split, dip_set, subset), n_mix, spk_ids in zip(VOX_SPLITS, counts, _split_pools(rng, ids, pool_sizes)):
        pool = [(sample_speaker(rng, s), [_yt_id(rng) for _ in range(2)]) for s in spk_ids]
        lines = []
        for i in range(n_mix):
            mrng = _rng(seed, "vox2mix", split, i)
            picks = mrng.choice(len(pool), 2, replace=False)
            utts, audio = [], []
            for k in picks:
                spk, videos = pool[k]
                utt = _unique(mrng, lambda r, v=videos: f"{v[r.integers(2)]}/{r.integers(1, 600):05d}", used_utts)
                n = 16 * int(mrng.uniform(*VOX_UTT_DURATION) * GEN_SR / 16)  # whole milliseconds
                x = _q16(_in_the_wild(synth_utterance(spk, n / GEN_SR, GEN_SR, mrng), mrng))
                path = dip / "audio_clean" / subset / spk.name / f"{utt}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, x, GEN_SR, "PCM_16")
                utts.append((spk.name, utt))
                audio.append(x)
            n = min(len(x) for x in audio)
            gain = f"{mrng.uniform(*VOX_GAIN_DB):.4f}"
            fields = [dip_set, subset, *utts[0], "0", subset, *utts[1], gain, f"{n / GEN_SR:g}"]
            lines.append(",".join(fields) + "\n")
            row = parse_mixing_row(fields)
            mix, _, _ = mix_sources(audio[0], audio[1], row.gain2)
            path = dip / DIP_MIX_DIR / dip_set / dip_mixture_name(row)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, official_pcm16(mix), GEN_SR, "PCM_16")
            g = f"{max(mrng.uniform(*VOX_WSJ_GAIN_DB), 1e-3):.6g}"
            u1, u2 = (f"{s}_{u.replace('/', '_')}" for s, u in utts)
            _write_triplet(two / split, f"{u1}_{g}_{u2}_-{g}.wav", _wsj_mix(audio[0], audio[1], float(g)), GEN_SR)
        (dip / "lists" / f"vox2mix_{dip_set}.csv").write_text("".join(lines), encoding="utf-8")
    return root


# --------------------------------------------------------------------------
# LRS2-2Mix

LRS2_SPLITS = ("tr", "cv", "tt")
#: Where the LRS2-2Mix download keeps its split folders, below ``lrs2_rebuild``.
LRS2_AUDIO_DIR = "audio/wav16k/min"
#: LRS2-2Mix (as TDANet's README describes the download): 2 s mixtures at 16 kHz,
#: relative SNR in [-5, 5] dB. Its mixing script is not published; the mini
#: corpus mixes by the wsj0-2mix rule.
LRS2_SECONDS = 2.0
LRS2_GAIN_DB = (-2.5, 2.5)


def _broadcast(x, rng, sample_rate=GEN_SR):
    """BBC-like channel: a studio room, a band limit, a faint noise bed."""
    x = reverberate(x, room_response(sample_rate, rng, rt60=(0.1, 0.3), damping=(4000.0, 7000.0)))
    cut, low = rng.uniform(5500.0, 7500.0), rng.uniform(60.0, 120.0)  # band limits (Hz)
    x = _shaped(
        x, sample_rate, lambda f: 1 / (np.sqrt(1.0 + (f / cut) ** 8) * np.sqrt(1.0 + (low / np.maximum(f, 1.0)) ** 4))
    )
    bed = coloured_noise(len(x), sample_rate, rng, exponent=1.0, f_min=50.0)
    return x / rms(x) + bed * 10 ** (-rng.uniform(25.0, 40.0) / 20)


def make_mini_lrs2mix(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(16000,),
    modes=("min",),
):
    """Write a miniature LRS2-2Mix under ``<out_dir>/LRS2Mix``.

    ``lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/<vid>_<utt>_<g>_<vid>_<utt>_<-g>.wav``
    beside an empty ``lrs2_rebuild/mouths/`` (the layout of the LRS2-2Mix
    download, without its lip videos; wsj0-style names with 19-digit video ids
    and 5-digit utterance numbers), 16 kHz PCM_16, 2 s each: random 2 s
    segments of two broadcast-like utterances, s1 at +g dB and s2 at -g dB
    after RMS matching (g in [-2.5, 2.5], i.e. a relative SNR in [-5, 5] dB),
    peak 0.9. The download's own mixing rule is not published (TDANet ships no
    mixing script); the wsj0-2mix rule stands in for it.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``LRS2Mix``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Mixtures of ``tr``, ``cv``, ``tt``.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; LRS2-2Mix is 16 kHz only.

    Returns
    -------
    Path
        ``<out_dir>/LRS2Mix`` (the folder holding ``lrs2_rebuild``).

    Example
    -------
    >>> import tempfile, soundfile
    >>> root = make_mini_lrs2mix(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1)
    >>> sorted(p.name for p in (root / "lrs2_rebuild").iterdir())
    ['audio', 'mouths']
    >>> wav = next((root / "lrs2_rebuild" / LRS2_AUDIO_DIR / "tt" / "mix").iterdir())
    >>> soundfile.info(wav).frames, soundfile.info(wav).samplerate
    (32000, 16000)
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "LRS2Mix", "lrs2mix", seed, sizes, sample_rates, modes)
    counts = (n_train, n_valid, n_test)
    rng = _rng(seed, "lrs2mix", "speakers")
    pool_sizes = [_n_speakers(n, 2) for n in counts]
    n_seg = int(LRS2_SECONDS * GEN_SR)
    used = set()
    audio = root / "lrs2_rebuild" / LRS2_AUDIO_DIR
    (root / "lrs2_rebuild" / "mouths").mkdir(parents=True)
    for split, n_mix, n_pool in zip(LRS2_SPLITS, counts, pool_sizes):
        pool = [
            (sample_speaker(rng, f"v{k}"), f"{rng.integers(1, 10):d}{rng.integers(10**17, 10**18):018d}")
            for k in range(n_pool)
        ]
        for i in range(n_mix):
            mrng = _rng(seed, "lrs2mix", split, i)
            names, segs = [], []
            for k in mrng.choice(n_pool, 2, replace=False):
                spk, video = pool[k]
                names.append(_unique(mrng, lambda r, v=video: f"{v}_{r.integers(1, 100):05d}", used))
                x = _broadcast(synth_utterance(spk, mrng.uniform(2.5, 4.0), GEN_SR, mrng), mrng)
                start = int(mrng.integers(0, len(x) - n_seg + 1))
                segs.append(x[start : start + n_seg])
            g = float(f"{mrng.uniform(*LRS2_GAIN_DB):.5f}")
            name = f"{names[0]}_{g:.5f}_{names[1]}_{-g:.5f}.wav".replace("-0.00000", "0.00000")
            _write_triplet(audio / split, name, _wsj_mix(segs[0], segs[1], g), GEN_SR)
    return root


# --------------------------------------------------------------------------
# Aishell2Mix (simulator inputs: Aishell-1 tree, cfg and aux lists)

#: Aishell2Mix split -> Aishell-1 set, and the Aishell-1 speaker ids of each set.
AISHELL_SETS = (("tr", "train", (2, 723)), ("cv", "dev", (724, 763)), ("tt", "test", (764, 916)))
AISHELL_RATE = 16000
#: Aishell2Mix: 4 s segments at 8 kHz, spk2 at 0-5 dB below spk1.
AISHELL_SEGMENT = 32000
AISHELL_SNR = (0.0, 5.0)
AISHELL_UTT_DURATION = (4.3, 6.5)


def _quiet_room(x, rng, sample_rate=AISHELL_RATE):
    """Aishell-1-like channel: a small reverberant room, a bright microphone, mains hum."""
    x = reverberate(x, room_response(sample_rate, rng, rt60=(0.25, 0.5), damping=(3000.0, 6000.0)))
    shelf = rng.uniform(0.4, 1.0)
    x = _shaped(x, sample_rate, lambda f: 1.0 + shelf * (f / (f + 2500.0)))  # high shelf: brighter than LibriMix
    x = x / rms(x) + mains_hum(len(x), sample_rate, rng) * 10 ** (-rng.uniform(35.0, 45.0) / 20)
    return x / rms(x) * 10 ** (rng.uniform(-28.0, -20.0) / 20)


def make_mini_aishell2mix(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(8000,),
    modes=("min",),
):
    """Write the inputs of the Aishell2Mix simulator, in miniature, under ``<out_dir>/Aishell2Mix``.

    * ``data_aishell/wav/{train,dev,test}/SXXXX/BAC009SXXXXWXXXX.wav``: an
      Aishell-1-shaped tree (16 kHz PCM_16, 4.3-6.5 s) of tonal, Mandarin-like
      speakers (:func:`data_prep.synth.sample_tonal_speaker`: lexical pitch
      contours, higher and wider pitch, faster syllables) recorded in a small
      reverberant room with a bright microphone and mains hum, unlike the dry
      mini LibriMix with its coloured noise. Speaker ids follow Aishell-1
      (train S0002-S0723, dev S0724-S0763, test S0764-S0916).
    * ``lst/{tr,cv,tt}_cfg.lst``: one line per mixture,
      ``/data_aishell/wav/<set>/<spk>/<utt>.wav <start> <end> <path2> <start> <end> <snr>``
      with 8 kHz sample indices (``end - start = 32000``; the start drawn in
      ``[0, len % 32000]`` as the published generator does) and an SNR in [0, 5].
    * ``lst/{tr,cv,tt}_aux.lst``: ``<utt1>_<utt2>_<snr>.wav<TAB>../<set>/<spk>/<utt>.wav``,
      another utterance of the first speaker.

    Run :func:`data_prep.aishell2mix.prepare_aishell2mix` with
    ``cfg_folder=<root>/lst`` to simulate the mixtures and write manifests.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``Aishell2Mix``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Lines of ``tr_cfg.lst``, ``cv_cfg.lst``, ``tt_cfg.lst``.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; Aishell2Mix is 8 kHz
        (from 16 kHz sources) and has 4 s segments whatever they say.

    Returns
    -------
    Path
        ``<out_dir>/Aishell2Mix``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_aishell2mix(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1)
    >>> sorted(p.name for p in (root / "lst").iterdir())
    ['cv_aux.lst', 'cv_cfg.lst', 'tr_aux.lst', 'tr_cfg.lst', 'tt_aux.lst', 'tt_cfg.lst']
    >>> (root / "lst" / "tt_cfg.lst").read_text().split()[0]  # doctest: +ELLIPSIS
    '/data_aishell/wav/test/S0.../BAC009S0...W0....wav'
    """
    from data_prep.aishell2mix import mixture_name

    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "Aishell2Mix", "aishell2mix", seed, sizes, sample_rates, modes)
    (root / "lst").mkdir()
    for (split, aset, (lo, hi)), n_mix in zip(AISHELL_SETS, (n_train, n_valid, n_test)):
        rng = _rng(seed, "aishell2mix", "speakers", split)
        n_pool = min(max(4, int(np.ceil(2 * n_mix / 5))), hi - lo + 1)
        per_spk = max(3, int(np.ceil(2 * n_mix / n_pool)) + 1)
        utts = {}
        for num in sorted(rng.choice(np.arange(lo, hi + 1), size=n_pool, replace=False)):
            spk = f"S{num:04d}"
            speaker = sample_tonal_speaker(rng, spk)
            folder = root / "data_aishell" / "wav" / aset / spk
            folder.mkdir(parents=True)
            utts[spk] = []
            for w in sorted(rng.choice(np.arange(121, 500), size=per_spk, replace=False)):
                utt = f"BAC009{spk}W{w:04d}"
                x = _quiet_room(synth_utterance(speaker, rng.uniform(*AISHELL_UTT_DURATION), AISHELL_RATE, rng), rng)
                write_wav(folder / f"{utt}.wav", x, AISHELL_RATE, "PCM_16")
                utts[spk].append((utt, -(-len(x) // 2)))  # length at 8 kHz
        speakers = sorted(utts)
        cfg, aux, pairs = [], [], set()
        for i in range(n_mix):
            mrng = _rng(seed, "aishell2mix", split, i)
            while True:
                a, b = mrng.choice(len(speakers), 2, replace=False)
                (u1, n1), (u2, n2) = (utts[speakers[k]][mrng.integers(per_spk)] for k in (a, b))
                if (u1, u2) not in pairs:
                    break
            pairs |= {(u1, u2), (u2, u1)}
            st1, st2 = (int(mrng.integers(0, n % AISHELL_SEGMENT + 1)) for n in (n1, n2))
            snr = float(mrng.uniform(*AISHELL_SNR))
            p1, p2 = (f"/data_aishell/wav/{aset}/{u[6:11]}/{u}.wav" for u in (u1, u2))
            cfg.append(f"{p1} {st1} {st1 + AISHELL_SEGMENT} {p2} {st2} {st2 + AISHELL_SEGMENT} {snr!r}\n")
            others = [u for u, _ in utts[u1[6:11]] if u != u1]
            enroll = others[mrng.integers(len(others))]
            aux.append(f"{mixture_name(p1, p2, snr)}\t../{aset}/{enroll[6:11]}/{enroll}.wav\n")
        (root / "lst" / f"{split}_cfg.lst").write_text("".join(cfg), encoding="utf-8")
        (root / "lst" / f"{split}_aux.lst").write_text("".join(sorted(aux)), encoding="utf-8")
    return root


# --------------------------------------------------------------------------
# REAL-M

REALM_RATE = 8000
REALM_EARLY = ("early_collection1", "early_collection2", "early_collection3")
_SYLLABLES = ("ba", "di", "ko", "lu", "me", "na", "po", "ri", "sa", "te", "vo", "ze", "than", "ing", "er", "al")


def _sentence(rng):
    words = ["".join(rng.choice(_SYLLABLES, size=rng.integers(1, 4))) for _ in range(rng.integers(4, 10))]
    if rng.random() < 0.3:
        words[rng.integers(1, len(words))] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", "?", "!"])


def _worker_id(rng):
    return "A" + "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), size=13))


def make_mini_realm(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(8000,),
    modes=("min",),
):
    """Write a miniature REAL-M v0.1.0 under ``<out_dir>/REALM``.

    * ``audio_files_converted_8000Hz/<session>/<id>.wav``: 8 kHz PCM_16
      recordings of two people reading at once in a room (two procedural
      talkers, each through its own room response, offset in time, with
      background noise and hum), 3-7 s.
    * ``transcriptions/<session>.csv``: the early sessions
      ``early_collection{1,2,3}`` have the columns
      ``sentence1,sentence2,WorkerId,filename`` and ``.mp3`` file names (the
      recordings were collected as mp3 and converted); the newer sessions have
      ``index,sentence1,sentence2,filename`` and ``.wav`` names.
    * ``separations/<id>source{1,2}hat.wav``: stand-ins for the reference
      SepFormer separations (each talker with some leakage of the other).

    ``n_train`` mixtures go to the early sessions (the DIP pretraining part of
    REAL-M), ``n_valid + n_test`` to the newer sessions (the test part);
    sessions without any mixture are not written.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``REALM``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        See above.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; REAL-M is 8 kHz only.

    Returns
    -------
    Path
        ``<out_dir>/REALM``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_realm(tempfile.mkdtemp(), n_train=2, n_valid=1, n_test=1)
    >>> sorted(p.name for p in (root / "transcriptions").iterdir())
    ['early_collection1.csv', 'early_collection2.csv', 'session01.csv', 'session02.csv']
    >>> (root / "transcriptions" / "early_collection1.csv").read_text().splitlines()[0]
    'sentence1,sentence2,WorkerId,filename'
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "REALM", "realm", seed, sizes, sample_rates, modes)
    n_new = n_valid + n_test
    newer = tuple(f"session{k:02d}" for k in range(1, 4))
    plan = [(REALM_EARLY[i % 3], i) for i in range(n_train)]
    plan += [(newer[i % 3], n_train + i) for i in range(n_new)]
    rows, used = {}, set()
    for folder in ("audio_files_converted_8000Hz", "transcriptions", "separations"):
        (root / folder).mkdir()
    for session, i in plan:
        rng = _rng(seed, "realm", i)
        stem = _unique(rng, lambda r: f"{r.integers(16**10):010x}", used)
        n = int(rng.uniform(3.0, 7.0) * GEN_SR)
        t60 = rng.uniform(0.3, 0.8)
        images = []
        for _ in range(2):
            talker = synth_utterance(sample_speaker(rng), rng.uniform(2.5, n / GEN_SR - 0.3), GEN_SR, rng)
            start = int(rng.integers(0, n - len(talker) + 1))
            x = np.zeros(n)
            x[start : start + len(talker)] = talker * 10 ** (rng.uniform(-4.0, 4.0) / 20)
            images.append(reverberate(x, room_response(GEN_SR, rng, rt60=(t60, t60))))
        noise = coloured_noise(n, GEN_SR, rng, exponent=rng.uniform(0.5, 2.0), f_min=40.0)
        noise = noise + mains_hum(n, GEN_SR, rng, base=rng.choice([50.0, 60.0])) * 0.3
        level = rms(images[0] + images[1])
        noise *= level / rms(noise) * 10 ** (-rng.uniform(10.0, 30.0) / 20)
        mix = images[0] + images[1] + noise
        scale = rng.uniform(0.3, 0.9) / np.max(np.abs(mix))
        at8k = {k: resample(v * scale, GEN_SR, REALM_RATE) for k, v in (("mix", mix), *enumerate(images))}
        wav_dir = root / "audio_files_converted_8000Hz" / session
        wav_dir.mkdir(exist_ok=True)
        write_wav(wav_dir / f"{stem}.wav", at8k["mix"], REALM_RATE, "PCM_16")
        for k in (0, 1):
            est = at8k[k] + 0.1 * at8k[1 - k]
            write_wav(root / "separations" / f"{stem}source{k + 1}hat.wav", est, REALM_RATE, "PCM_16")
        early = session.startswith("early_collection")
        rows.setdefault(session, []).append(
            {
                "sentence1": _sentence(rng),
                "sentence2": _sentence(rng),
                "WorkerId": _worker_id(rng),
                "filename": f"{stem}.mp3" if early else f"{stem}.wav",
            }
        )
    for session, items in rows.items():
        early = session.startswith("early_collection")
        columns = ["sentence1", "sentence2"] + (["WorkerId", "filename"] if early else ["filename"])
        columns = columns if early else ["index", *columns]
        with open(root / "transcriptions" / f"{session}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            for index, item in enumerate(items):
                values = dict(item, index=index)
                writer.writerow([values[c] for c in columns])
    return root


# --------------------------------------------------------------------------
# Corpora of SADDEL's conditions: WSJ0-2mix / WSJ0-3mix, MUSAN noise, 100 Nonspeech Sounds

WSJ0MIX_SPLITS = ("tr", "cv", "tt")
#: wsj0-mix: relative levels of the sources, drawn in this range (dB).
WSJ0MIX_LEVEL_DB = (-2.5, 2.5)
#: Utterance durations (seconds) of the mini WSJ0-mix sources.
WSJ0MIX_UTT_DURATION = (1.0, 2.0)


def _level_text(level):
    """A wsj0-mix level as its file name writes it (4 decimals, never ``-0.0000``)."""
    text = f"{level:.4f}"
    return "0.0000" if text == "-0.0000" else text


def make_mini_wsj0mix(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(8000, 16000),
    modes=("min", "max"),
    n_spks=(2, 3),
):
    """Write a miniature WSJ0-2mix / WSJ0-3mix under ``<out_dir>/wsj0-mix``.

    ``{2speakers,3speakers}/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/<name>.wav``
    as the MERL scripts write it (16-bit PCM), names joining wsj0-like
    utterance ids and their levels, ``<utt1>_<l1>_<utt2>_<l2>[_<utt3>_<l3>].wav``:
    two speakers at +g and -g dB (g in (0, 2.5]), a third at a level drawn in
    [-2.5, 2.5] dB. Each source is its utterance normalised to unit active
    level and scaled by its level, written at every rate (resampled from
    16 kHz) and mode (``min`` truncates to the shortest utterance, ``max``
    zero-pads to the longest), the set then scaled to a peak of 0.9; the
    mixture is the sum of the written (quantised) sources, exactly. Speakers
    of ``tr``, ``cv`` and ``tt`` are disjoint; 2- and 3-speaker mixtures
    draw from the same speaker pools.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``wsj0-mix``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Mixtures in ``tr``, ``cv`` and ``tt`` (for each ``n_spks``).
    sample_rates : sequence of int
        Subset of (8000, 16000).
    modes : sequence of str
        Subset of ("min", "max").
    n_spks : sequence of int
        Subset of (2, 3).

    Returns
    -------
    Path
        ``<out_dir>/wsj0-mix`` (the folder holding ``2speakers``/``3speakers``).

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_wsj0mix(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1,
    ...                          sample_rates=(8000,), modes=("min",))
    >>> sorted(p.name for p in (root / "3speakers" / "wav8k" / "min" / "tt").iterdir())
    ['mix', 's1', 's2', 's3']
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    sample_rates, modes, n_spks = tuple(sample_rates), tuple(modes), tuple(n_spks)
    _check_options(seed, sizes, sample_rates, modes)
    if not n_spks or any(n not in (2, 3) for n in n_spks) or len(set(n_spks)) != len(n_spks):
        raise PrepError(f"invalid n_spks={n_spks!r} (a subset of 2, 3)")
    options = {
        "dataset": "wsj0mix",
        "seed": int(seed),
        **sizes,
        "sample_rates": list(sample_rates),
        "modes": list(modes),
        "n_spks": list(n_spks),
    }
    root = _fresh_root(Path(out_dir) / "wsj0-mix", options)
    counts = (n_train, n_valid, n_test)
    pool_sizes = [_n_speakers(n, max(n_spks)) for n in counts]
    rng = _rng(seed, "wsj0mix", "speakers")
    codes = _wsj_speaker_codes(rng, sum(pool_sizes))
    rng.shuffle(codes)
    pools = [[sample_speaker(rng, code) for code in pool] for pool in _split_pools(rng, codes, pool_sizes)]
    for n in n_spks:
        used_utts = set()
        for split, n_mix, pool in zip(WSJ0MIX_SPLITS, counts, pools):
            for i in range(n_mix):
                mrng = _rng(seed, "wsj0mix", n, split, i)
                _write_wsj0mix_mixture(root / f"{n}speakers", split, n, pool, mrng, used_utts, sample_rates, modes)
    return root


def _write_wsj0mix_mixture(top, split, n_spks, pool, rng, used_utts, sample_rates, modes):
    """One mixture of the mini WSJ0-mix at every rate and mode."""
    gain = rng.uniform(1e-4, WSJ0MIX_LEVEL_DB[1])
    levels = [_level_text(gain), _level_text(-gain)]
    levels += [_level_text(rng.uniform(*WSJ0MIX_LEVEL_DB)) for _ in range(n_spks - 2)]
    parts, sources = [], []
    for k, level in zip(rng.choice(len(pool), n_spks, replace=False), levels):
        spk = pool[k]
        parts += [_unique(rng, lambda r, s=spk: _wsj_utt_id(r, s.name), used_utts), level]
        u = synth_utterance(spk, rng.uniform(*WSJ0MIX_UTT_DURATION), GEN_SR, rng)
        sources.append(u / active_level(u, GEN_SR) * 10 ** (float(level) / 20))
    name = "_".join(parts) + ".wav"
    keys = [f"s{k}" for k in range(1, n_spks + 1)]
    for sr in sample_rates:
        at_rate = [resample(u, GEN_SR, sr) for u in sources]
        for mode in modes:
            length = (min if mode == "min" else max)(len(u) for u in at_rate)
            sig = [_fit(u, length) for u in at_rate]
            peak = max(np.max(np.abs(sum(sig))), *(np.max(np.abs(x)) for x in sig))
            sig = [_q16(x * WHAM_PEAK / peak) for x in sig]
            base = top / f"wav{sr // 1000}k" / mode / split
            for folder, x in (*zip(keys, sig), ("mix", sum(sig))):
                (base / folder).mkdir(parents=True, exist_ok=True)
                write_wav(base / folder / name, x, sr, "PCM_16")


#: MUSAN's noise subsets; about 9 in 10 of its 930 noise files are in free-sound.
MUSAN_SUBSETS = ("free-sound", "sound-bible")
MUSAN_RATE = 16000
#: Durations (seconds) of the mini MUSAN and 100 Nonspeech files.
NOISE_DURATION = (1.0, 2.0)
#: Rate of the mini 100 Nonspeech Sounds: a rate the recipes do not run at, so
#: that readers must take it from the files.
NONSPEECH_RATE = 20000
#: Kinds of procedural noise clips (:func:`_noise_clip`).
NOISE_KINDS = ("coloured", "ambient", "hum", "tones", "clicks")


def _noise_clip(rng, n, sample_rate, kind):
    """A procedural noise clip of one kind, RMS drawn in [-30, -15] dBFS, peak below 0.9."""
    t = np.arange(n) / sample_rate
    if kind == "coloured":
        x = coloured_noise(n, sample_rate, rng, exponent=rng.uniform(0.0, 2.0), f_min=30.0)
        x *= slow_modulation(n, sample_rate, rng, depth=rng.uniform(0.1, 0.8))
    elif kind == "ambient":
        x = ambient_noise(n, sample_rate, rng)
    elif kind == "hum":
        x = mains_hum(n, sample_rate, rng, base=rng.choice([50.0, 60.0]))
        x += coloured_noise(n, sample_rate, rng, exponent=1.0) * rng.uniform(0.1, 0.5)
    elif kind == "tones":  # bells, alarms, beeps: tone bursts with decaying envelopes
        x = np.zeros(n)
        for _ in range(int(rng.integers(2, 6))):
            start, f0 = int(rng.integers(0, n)), rng.uniform(300.0, min(3000.0, sample_rate / 4))
            env = np.exp(-(t[: n - start]) / rng.uniform(0.05, 0.4))
            x[start:] += np.sin(2 * np.pi * f0 * t[: n - start]) * env
        x += coloured_noise(n, sample_rate, rng, exponent=0.5) * 0.05
    else:  # clicks: a clock, a machine: periodic decaying bursts
        period = int(sample_rate * rng.uniform(0.05, 0.3))
        impulses = np.zeros(n)
        impulses[int(rng.integers(0, period)) :: period] = 1.0
        k = max(int(0.01 * sample_rate), 1)
        burst = rng.standard_normal(k) * np.exp(-np.arange(k) / (0.002 * sample_rate))
        x = np.convolve(impulses, burst)[:n] + coloured_noise(n, sample_rate, rng, exponent=1.5) * 0.05
    x = x / rms(x) * 10 ** (rng.uniform(-30.0, -15.0) / 20)
    return x * min(1.0, 0.9 / np.max(np.abs(x)))


def make_mini_musan(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(16000,),
    modes=("min",),
):
    """Write a miniature MUSAN noise corpus under ``<out_dir>/musan``.

    ``musan/noise/{free-sound,sound-bible}/noise-<subset>-NNNN.wav`` (16 kHz
    PCM_16, 1-2 s of procedural noise: coloured noise, ambient babble and
    clatter, hum, tone bursts, clicks), each folder with the ``ANNOTATIONS``
    and ``LICENSE`` text files MUSAN keeps beside its audio, and a ``README``
    at the top. The corpus has no split: ``n_train + n_valid + n_test`` files
    in all, 9 in 10 in ``free-sound`` (as in MUSAN) and at least one in
    ``sound-bible``; :func:`data_prep.noise_corpora.prepare_noise_corpus`
    splits them.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``musan``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Their sum is the number of noise files.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; MUSAN is 16 kHz only.

    Returns
    -------
    Path
        ``<out_dir>/musan``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_musan(tempfile.mkdtemp(), n_train=3, n_valid=1, n_test=1)
    >>> sorted(p.name for p in (root / "noise" / "sound-bible").iterdir())
    ['ANNOTATIONS', 'LICENSE', 'noise-sound-bible-0000.wav']
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "musan", "musan", seed, sizes, sample_rates, modes)
    total = n_train + n_valid + n_test
    n_bible = max(1, total // 10) if total > 1 else 0
    (root / "README").write_text(
        "MUSAN (miniature): procedural stand-ins in the layout of the real corpus; only noise/ is written.\n",
        encoding="utf-8",
    )
    for subset, count in zip(MUSAN_SUBSETS, (total - n_bible, n_bible)):
        folder = root / "noise" / subset
        folder.mkdir(parents=True)
        lines = []
        for i in range(count):
            rng = _rng(seed, "musan", subset, i)
            stem = f"noise-{subset}-{i:04d}"
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            x = _noise_clip(rng, int(rng.uniform(*NOISE_DURATION) * MUSAN_RATE), MUSAN_RATE, kind)
            write_wav(folder / f"{stem}.wav", x, MUSAN_RATE, "PCM_16")
            lines.append(f"{stem} procedural-{kind}\n")
        (folder / "ANNOTATIONS").write_text("".join(lines), encoding="utf-8")
        licence = f"Mini {subset} noise: procedural signals, no licence needed.\n"
        (folder / "LICENSE").write_text(licence, encoding="utf-8")
    return root


def make_mini_nonspeech(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(16000,),
    modes=("min",),
):
    """Write a miniature 100 Nonspeech Sounds corpus under ``<out_dir>/Nonspeech``.

    ``Nonspeech/n1.wav`` ... ``n<K>.wav`` with ``K = n_train + n_valid + n_test``,
    one folder, 1-2 s of procedural noise each (the kinds of
    :func:`make_mini_musan`, in turn), PCM_16 at 20 kHz: a rate no recipe
    runs at, so that the readers must take it from the files and resample.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``Nonspeech``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Their sum is the number of files (the corpus is test-only in SADDEL's
        paper; :mod:`data_prep.noise_corpora` puts them all in ``test`` by default).
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; ignored.

    Returns
    -------
    Path
        ``<out_dir>/Nonspeech``.

    Example
    -------
    >>> import tempfile, soundfile
    >>> root = make_mini_nonspeech(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=1)
    >>> sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    ['n1.wav', 'n2.wav', 'n3.wav']
    >>> soundfile.info(root / "n1.wav").samplerate
    20000
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "Nonspeech", "nonspeech", seed, sizes, sample_rates, modes)
    for i in range(1, n_train + n_valid + n_test + 1):
        rng = _rng(seed, "nonspeech", i)
        kind = NOISE_KINDS[(i - 1) % len(NOISE_KINDS)]
        x = _noise_clip(rng, int(rng.uniform(*NOISE_DURATION) * NONSPEECH_RATE), NONSPEECH_RATE, kind)
        write_wav(root / f"n{i}.wav", x, NONSPEECH_RATE, "PCM_16")
    return root


#: The subsets of the mini LibriSpeech: train, valid, test (as ``n_train``, ``n_valid``, ``n_test``).
MINI_LIBRISPEECH_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")
LIBRISPEECH_RATE = 16000
#: Durations (seconds) of the mini LibriSpeech utterances: most at least 6 s (what SADDEL's
#: Librispeech-mix keeps), every fifth shorter (what it leaves out).
LIBRISPEECH_LONG = (6.2, 8.0)
LIBRISPEECH_SHORT = (2.0, 5.5)


def make_mini_librispeech(
    out_dir,
    seed=0,
    n_train=48,
    n_valid=8,
    n_test=8,
    sample_rates=(16000,),
    modes=("min",),
):
    """Write a miniature LibriSpeech under ``<out_dir>/LibriSpeech``.

    ``LibriSpeech/{train-clean-100,dev-clean,test-clean}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
    (16 kHz FLAC, PCM_16) with one ``<speaker>-<chapter>.trans.txt`` per
    chapter (``<utt id> WORDS IN UPPER CASE``), and ``SPEAKERS.TXT`` at the
    top, as the OpenSLR 12 archives unpack. ``n_train``, ``n_valid`` and
    ``n_test`` utterances in the three subsets, spread over at least three
    speakers per subset (disjoint across subsets), two chapters each; every
    fifth utterance is shorter than 6 s, the others 6.2-8 s.

    Arguments
    ---------
    out_dir : str or Path
        Parent folder of ``LibriSpeech``.
    seed : int
        Random seed; the same seed gives identical files.
    n_train, n_valid, n_test : int
        Utterances in ``train-clean-100``, ``dev-clean`` and ``test-clean``.
    sample_rates, modes : sequence
        Accepted for a uniform interface and checked; LibriSpeech is 16 kHz only.

    Returns
    -------
    Path
        ``<out_dir>/LibriSpeech``.

    Example
    -------
    >>> import tempfile
    >>> root = make_mini_librispeech(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=3)
    >>> sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    ['SPEAKERS.TXT', 'dev-clean', 'test-clean', 'train-clean-100']
    >>> len(list((root / "test-clean").rglob("*.flac"))), len(list((root / "test-clean").rglob("*.trans.txt")))
    (3, 3)
    """
    sizes = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}
    root = _start(out_dir, "LibriSpeech", "librispeech", seed, sizes, sample_rates, modes)
    counts = (n_train, n_valid, n_test)
    pool_sizes = [max(3, -(-n // 3)) for n in counts]
    rng = _rng(seed, "librispeech", "speakers")
    ids = _libri_speakers(rng, sum(pool_sizes))
    speakers_txt = [";ID  |SEX| SUBSET           |MINUTES| NAME\n"]
    start = 0
    for subset, n_utts, n_pool in zip(MINI_LIBRISPEECH_SUBSETS, counts, pool_sizes):
        pool = [(sample_speaker(rng, str(spk)), chapters) for spk, chapters in ids[start : start + n_pool]]
        start += n_pool
        lines = {}
        for i in range(n_utts):
            urng = _rng(seed, "librispeech", subset, i)
            spk, chapters = pool[i % n_pool]
            chapter = chapters[(i // n_pool) % 2]
            utt = f"{spk.name}-{chapter}-{i:04d}"
            duration = urng.uniform(*(LIBRISPEECH_SHORT if i % 5 == 4 else LIBRISPEECH_LONG))
            x = synth_utterance(spk, duration, LIBRISPEECH_RATE, urng)
            x *= 10 ** (urng.uniform(*LIBRIMIX_SPEECH_DB) / 20) / rms(x)
            folder = root / subset / spk.name / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{utt}.flac", _q16(x), LIBRISPEECH_RATE, subtype="PCM_16", format="FLAC")
            words = _sentence(urng).upper().replace(",", "").rstrip(".?!")
            lines.setdefault(folder / f"{spk.name}-{chapter}.trans.txt", []).append(f"{utt} {words}\n")
        for path, text in lines.items():
            path.write_text("".join(text), encoding="utf-8")
        for spk, _ in pool:
            speakers_txt.append(f"{spk.name:<5}| {spk.gender.upper()} | {subset:<17}| 25.00 | Mini Reader {spk.name}\n")
    (root / "SPEAKERS.TXT").write_text("".join(speakers_txt), encoding="utf-8")
    return root


#: Mini corpus writers by name; each takes ``(out_dir, seed=..., n_train=...,
#: n_valid=..., n_test=..., sample_rates=..., modes=...)`` and returns its root.
DATASETS = {
    "wham": make_mini_wham,
    "librimix": make_mini_librimix,
    "vox2mix": make_mini_vox2mix,
    "lrs2mix": make_mini_lrs2mix,
    "aishell2mix": make_mini_aishell2mix,
    "realm": make_mini_realm,
}

#: Writers of the corpora of SADDEL's conditions (not among the six datasets of
#: the collection, so not in ``"all"``); same keyword arguments as :data:`DATASETS`.
SADDEL_CORPORA = {
    "wsj0mix": make_mini_wsj0mix,
    "musan": make_mini_musan,
    "nonspeech": make_mini_nonspeech,
    "librispeech": make_mini_librispeech,
}

#: The noise corpora among them: their sizes add up to a number of files, split by the prep.
NOISE_CORPORA = ("musan", "nonspeech")

#: Every writer by name: :data:`DATASETS` and :data:`SADDEL_CORPORA`.
WRITERS = {**DATASETS, **SADDEL_CORPORA}


def make_mini(dataset, out_dir, **kwargs):
    """Write one mini corpus (a :data:`WRITERS` key) or the six datasets (``"all"``).

    Arguments
    ---------
    dataset : str
        A key of :data:`WRITERS` (:data:`DATASETS` or :data:`SADDEL_CORPORA`),
        or ``"all"``: every :data:`DATASETS` corpus.
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
    if dataset != "all" and dataset not in WRITERS:
        raise PrepError(f"invalid dataset={dataset!r} (choose from {', '.join(WRITERS)}, all)")
    names = list(DATASETS) if dataset == "all" else [dataset]
    out = {}
    for name in names:
        writer = WRITERS[name]
        kw = dict(kwargs)
        if "enrollment" in kw and "enrollment" not in inspect.signature(writer).parameters:
            del kw["enrollment"]  # only the LibriMix writer has enrollment material to add
        out[name] = writer(out_dir, **kw)
    return out


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
    parser.add_argument(
        "--dataset",
        required=True,
        choices=[*WRITERS, "all"],
        help="all: the six datasets (not the SADDEL corpora wsj0mix, musan, nonspeech, librispeech)",
    )
    parser.add_argument("--out", required=True, help="parent folder of the corpora")
    parser.add_argument("--seed", type=int, default=0)
    for name, value in DEFAULT_SIZES.items():
        parser.add_argument(f"--{name}", type=int, default=value, help=f"default {value}")
    parser.add_argument(
        "--sample_rates",
        type=int,
        nargs="+",
        default=list(SAMPLE_RATES),
        choices=SAMPLE_RATES,
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--enrollment",
        action="store_true",
        help="LibriMix: also write a partial LibriSpeech and the enrollment (aux) lists",
    )
    return parser


def _cli(dataset, out, **kwargs):
    start = time.perf_counter()
    roots = make_mini(dataset, out, **kwargs)
    elapsed = time.perf_counter() - start
    sizes = "/".join(str(kwargs[k]) for k in DEFAULT_SIZES)
    for name, root in roots.items():
        if name in NOISE_CORPORA:
            what = f"{sum(kwargs[k] for k in DEFAULT_SIZES)} noise files"
        elif name == "librispeech":
            what = f"{sizes} train/dev/test utterances"
        else:
            what = f"{sizes} train/valid/test mixtures"
        print(f"{name}: mini corpus at {Path(root).absolute()} ({what})")
    print(f"done in {elapsed:.1f} s")


def main(argv=None):
    """Entry point of ``python -m data_prep.mini``; returns the exit status."""
    return run_cli(build_parser(), _cli, argv)


if __name__ == "__main__":
    sys.exit(main())
