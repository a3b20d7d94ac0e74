"""On-the-fly mixing (dynamic mixing) as a shared data pipeline.

Each training item is a new mixture drawn from a pool of single-speaker
utterances and a pool of noise files: ``num_spks`` utterances of distinct
speakers and one noise file are picked, each gets its own random window of
the mixture's length inside its own real length, a named *gain rule* scales
them, and the mixture is their sum. An item has the keys of the manifest
datasets (``id``, ``mix_sig``, ``s1_sig`` ... ``sK_sig``, ``noise_sig`` and
``scenario``, e.g. ``"2sp+n"``), so :func:`modules.data.collate` makes the
usual :class:`modules.data.SeparationBatch`.

Pools
    :func:`manifest_pools` takes the sources (``s<k>_wav``) and the noise
    (``noise_wav``) of a training manifest; the speaker of each source comes
    from the mixture ID by a named speaker rule (:data:`SPEAKER_RULES`), an
    utterance used by several mixtures is kept once, and frame counts come
    from the ``duration`` column (a source of a ``min`` manifest has the
    mixture's length; prefer ``min`` manifests, the sources of a ``max`` one
    end in zeros). :func:`folder_pool` reads a folder of utterances (speaker
    = a parent folder's name or a regex) or of noise files, with one
    ``soundfile.info`` per file.

Gain rules (:data:`GAIN_RULES`, extended with :func:`register_gain_rule`)
    ``wham`` and ``librimix``, documented with their sources and departures
    at :func:`wham_gains` and :func:`librimix_gains`.

Determinism, resume, DDP
    The draw of item ``i`` in epoch ``e`` depends only on ``(seed, e, i)``;
    :class:`MixingSampler` yields ``e * epoch_size + position`` in an order
    seeded by ``(seed, e)`` and the dataset decodes it. Worker processes, the
    global RNGs and earlier items play no part, so SpeechBrain's
    ``SaveableDataLoader`` resumes mid-epoch (it skips the first batches of
    the same sampler order), and ``DistributedSamplerWrapper`` gives every
    rank a disjoint share of the epoch's positions, hence different mixtures.

What differs from upstream SpeechBrain (``recipes/WHAMandWHAMR/separation/dynamic_mixing.py``
and ``recipes/LibriMix/separation/dynamic_mixing.py``)
    * The returned noise is the noise inside the mixture, after every scaling:
      ``mix == sum(sources) + noise`` to float precision. Upstream WHAM!
      rescales the returned noise to the sources' mean level after mixing, and
      upstream LibriMix returns the whole noise file while the mixture holds
      only its first samples.
    * Every signal is cut to the mixture's length (upstream leaves the
      sources uncut when the noise is the shortest signal) and gets its own
      random window (upstream: the noise always starts at sample 0, and a
      window never starts at the last possible sample).
    * Audio is read with ``soundfile``, only the window's frames; headers are
      read once when the pool is built (upstream reads them for every item
      with ``torchaudio.info``, which torchaudio no longer has).
    * Draws come from ``numpy.random.default_rng`` seeded by
      ``(seed, epoch, index)`` instead of the global ``random`` / ``numpy``
      generators reseeded from ``os.urandom`` in each worker, and a sampler
      instead of a plain ``DataLoader``: runs are reproducible, resumable
      mid-epoch, and DDP ranks share an epoch instead of each running a full one.
    * Speakers are weighted by their number of utterances, as both upstream
      scripts do (``speaker_weighting="uniform"`` gives every speaker the same
      chance).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

__all__ = [
    "GAIN_RULES",
    "SPEAKER_RULES",
    "AudioPool",
    "DynamicMixingDataset",
    "EpochSampler",
    "MixingSampler",
    "build_dynamic_mixing",
    "folder_pool",
    "librimix_gains",
    "librimix_speakers",
    "manifest_pools",
    "manifest_rows",
    "register_gain_rule",
    "wham_gains",
    "wham_speakers",
]

logger = logging.getLogger(__name__)

# Stream tags of the random generators: an item's draws use (seed, epoch, index, _ITEM_STREAM),
# the sampler's order (seed, epoch, _ORDER_STREAM). SeedSequence ignores trailing zeros, so the
# tags are non-zero and the two keys have different lengths: the streams never coincide.
_ITEM_STREAM = 1
_ORDER_STREAM = 2

AUDIO_EXTENSIONS = (".wav", ".flac")


# --------------------------------------------------------------------------------------------
# Speaker rules: mixture ID of a manifest -> (utterance id, speaker id) of each source
# --------------------------------------------------------------------------------------------


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def wham_speakers(mixture_id, n_sources):
    """Utterances and speakers of a wsj0-2mix / WHAM! mixture ID.

    The ID is ``utt1_snr1_utt2_snr2[_utt3_snr3]`` (e.g.
    ``011a0101_0.061105_401c020r_-0.061105``): source ``k`` (0-based) is field
    ``2k``, its speaker the first 3 characters of the wsj0 utterance id, as in
    upstream SpeechBrain's WHAM! dynamic mixing.

    Arguments
    ---------
    mixture_id : str
    n_sources : int
        Number of source columns of the manifest (1 for ``enh_single``).

    Returns
    -------
    list of (str, str)
        ``(utterance id, speaker id)`` of each source.

    Example
    -------
    >>> wham_speakers("011a0101_0.061105_401c020r_-0.061105", 2)
    [('011a0101', '011'), ('401c020r', '401')]
    >>> wham_speakers("011a0101_0.061105_401c020r_-0.061105", 1)
    [('011a0101', '011')]
    """
    fields = mixture_id.split("_")
    if len(fields) % 2 or len(fields) < 2 * n_sources or not all(_is_float(f) for f in fields[1::2]):
        raise ValueError(
            f"mixture ID {mixture_id!r} is not a wsj0-style name utt1_snr1_utt2_snr2... with "
            f"{n_sources} utterance(s) (speaker rule 'wham')"
        )
    return [(u, u[:3]) for u in fields[0 : 2 * n_sources : 2]]


_LIBRI_UTT = re.compile(r"^([^-_]+)-[^-_]+-[^-_]+$")


def librimix_speakers(mixture_id, n_sources):
    """Utterances and speakers of a LibriMix mixture ID.

    The ID is the LibriSpeech utterance ids joined by ``_`` (e.g.
    ``3536-8226-0026_1673-143397-0009``): source ``k`` is part ``k``, its
    speaker the part of the utterance id before the first ``-``.

    Arguments
    ---------
    mixture_id : str
    n_sources : int
        Number of source columns of the manifest.

    Returns
    -------
    list of (str, str)
        ``(utterance id, speaker id)`` of each source.

    Example
    -------
    >>> librimix_speakers("3536-8226-0026_1673-143397-0009", 2)
    [('3536-8226-0026', '3536'), ('1673-143397-0009', '1673')]
    """
    parts = mixture_id.split("_")[:n_sources]
    matches = [_LIBRI_UTT.match(p) for p in parts]
    if len(parts) < n_sources or not all(matches):
        raise ValueError(
            f"mixture ID {mixture_id!r} is not {n_sources} LibriSpeech utterance ids "
            "spk-chapter-utt joined by '_' (speaker rule 'librimix')"
        )
    return [(p, m.group(1)) for p, m in zip(parts, matches)]


#: Speaker rules by name: ``rule(mixture_id, n_sources) -> [(utterance id, speaker id), ...]``.
SPEAKER_RULES = {"wham": wham_speakers, "librimix": librimix_speakers}


def _lookup(table, name, what):
    if name not in table:
        raise ValueError(f"unknown {what} {name!r} (known: {', '.join(sorted(table))})")
    return table[name]


# --------------------------------------------------------------------------------------------
# Pools
# --------------------------------------------------------------------------------------------


@dataclass
class AudioPool:
    """Audio files to draw from: paths, frame counts and optional speaker labels.

    Arguments
    ---------
    paths : list of str
    frames : list of int
        Real length of each file, in samples.
    speakers : list of str, optional
        Speaker of each file (source pools); ``None`` for noise pools.
    names : list of str, optional
        A short name of each file (utterance id), used in item ids.

    Example
    -------
    >>> pool = AudioPool(["a.wav", "b.wav", "c.wav"], [100, 200, 300], speakers=["x", "y", "x"])
    >>> len(pool), pool.speaker_names, pool.by_speaker
    (3, ['x', 'y'], [[0, 2], [1]])
    """

    paths: list
    frames: list
    speakers: list | None = None
    names: list | None = None

    def __post_init__(self):
        self.paths = [str(p) for p in self.paths]
        self.frames = np.asarray(self.frames, dtype=np.int64)
        if len(self.frames) != len(self.paths):
            raise ValueError("paths and frames differ in length")
        if (self.frames <= 0).any():
            bad = self.paths[int(np.argmax(self.frames <= 0))]
            raise ValueError(f"empty audio file in the pool: {bad}")
        if self.names is None:
            self.names = [Path(p).stem for p in self.paths]
        if self.speakers is not None:
            if len(self.speakers) != len(self.paths):
                raise ValueError("paths and speakers differ in length")
            self.speaker_names = sorted(set(self.speakers))
            index = {s: i for i, s in enumerate(self.speaker_names)}
            self.by_speaker = [[] for _ in self.speaker_names]
            for i, s in enumerate(self.speakers):
                self.by_speaker[index[s]].append(i)

    def __len__(self):
        return len(self.paths)


def manifest_rows(train, data_folder=None):
    """``(ids, rows)`` of a manifest path or of a ``DynamicItemDataset`` (paths resolved)."""
    if isinstance(train, (str, os.PathLike)):
        from speechbrain.dataio.dataio import load_data_csv

        if not os.path.isfile(train):
            raise FileNotFoundError(f"Manifest not found: {train} (did data preparation run?)")
        replacements = {"data_root": str(data_folder)} if data_folder is not None else {}
        data = load_data_csv(str(train), replacements=replacements)
        return list(data), data
    if hasattr(train, "data") and hasattr(train, "data_ids"):
        return list(train.data_ids), train.data
    raise TypeError(f"expected a manifest path or a DynamicItemDataset, got {type(train).__name__}")


def _source_columns(row):
    columns = []
    while f"s{len(columns) + 1}_wav" in row:
        columns.append(f"s{len(columns) + 1}_wav")
    return columns


def manifest_pools(train, sample_rate, speaker_rule, data_folder=None, with_noise=True):
    """Source and noise pools from a training manifest.

    Every ``s<k>_wav`` cell is a single-speaker utterance; its speaker comes
    from the mixture ID by ``speaker_rule``. An utterance that several
    mixtures use is kept once (its longest copy). The noise pool holds the
    ``noise_wav`` files. Frame counts are ``duration * sample_rate`` (the
    sources and the noise of a mixture have its length; ``data_prep`` checks
    durations and sample rates).

    Arguments
    ---------
    train : str or DynamicItemDataset
        The manifest path, or the training dataset made from it.
    sample_rate : int
    speaker_rule : str
        A key of :data:`SPEAKER_RULES` (``"wham"`` or ``"librimix"``).
    data_folder : str, optional
        What ``$data_root`` stands for (manifest paths only).
    with_noise : bool
        Also return the noise pool (the manifest must have ``noise_wav``).

    Returns
    -------
    sources : AudioPool
    noise : AudioPool or None
    n_rows : int
        Number of mixtures in the manifest.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tr.csv")
    >>> row = "{},{},$data_root/s1/{m}.wav,$data_root/s2/{m}.wav,$data_root/n/{m}.wav\\n"
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,s1_wav,s2_wav,noise_wav\\n")
    ...     _ = f.write(row.format("a1_0.5_b1_-0.5", 1.0, m="m1") + row.format("a1_0.2_c1_-0.2", 0.5, m="m2"))
    >>> sources, noise, n = manifest_pools(path, 8000, "wham", data_folder="/data")
    >>> sources.names, sources.speakers, sources.frames.tolist(), n
    (['a1', 'b1', 'c1'], ['a1', 'b1', 'c1'], [8000, 8000, 4000], 2)
    >>> noise.paths[1], noise.frames.tolist()
    ('/data/n/m2.wav', [8000, 4000])
    """
    rule = _lookup(SPEAKER_RULES, speaker_rule, "speaker rule")
    ids, rows = manifest_rows(train, data_folder)
    if not ids:
        raise ValueError(f"the training manifest {train} has no rows: the source pool is empty")
    columns = _source_columns(rows[ids[0]])
    if not columns:
        raise ValueError(f"the training manifest {train} has no source columns s1_wav ...: nothing to mix")
    best = {}  # utterance id -> (frames, path, speaker); first-seen order kept by the dict
    for mix_id in ids:
        row = rows[mix_id]
        frames = round(float(row["duration"]) * sample_rate)
        for (utt, spk), column in zip(rule(mix_id, len(columns)), columns):
            if utt not in best or frames > best[utt][0]:
                best[utt] = (frames, row[column], spk)
    names = list(best)
    sources = AudioPool(
        [best[u][1] for u in names], [best[u][0] for u in names], speakers=[best[u][2] for u in names], names=names
    )
    noise = _manifest_noise(ids, rows, sample_rate, train) if with_noise else None
    return sources, noise, len(ids)


def folder_pool(folder, sample_rate, speaker_level=None, speaker_regex=None, extensions=AUDIO_EXTENSIONS):
    """A pool of the audio files under a folder (recursively), headers read once.

    For a source pool give ``speaker_level`` (the speaker is the name of the
    file's ``speaker_level``-th parent folder: 1 for ``<spk>/<utt>.wav`` as in
    wsj0, 2 for LibriSpeech's ``<spk>/<chapter>/<utt>.flac``) or
    ``speaker_regex`` (searched in the path relative to ``folder``, with
    ``/`` separators; the first group, or the whole match, is the speaker;
    files that do not match are left out with a warning). Without either it
    is a noise pool (e.g. MUSAN's ``noise/``).

    Arguments
    ---------
    folder : str or Path
    sample_rate : int
        Every file must have this rate (resample the corpus beforehand).
    speaker_level : int, optional
    speaker_regex : str, optional
    extensions : sequence of str
        File name endings to take (case-insensitive).

    Returns
    -------
    AudioPool

    Example
    -------
    >>> import tempfile, soundfile
    >>> root = tempfile.mkdtemp()
    >>> for spk, utt, n in (("19", "19-198-0001", 800), ("19", "19-198-0002", 900), ("26", "26-495-0000", 700)):
    ...     os.makedirs(os.path.join(root, spk, utt.split("-")[1]), exist_ok=True)
    ...     soundfile.write(os.path.join(root, spk, utt.split("-")[1], utt + ".wav"), np.zeros(n), 8000)
    >>> pool = folder_pool(root, 8000, speaker_level=2)
    >>> pool.names, pool.speakers, pool.frames.tolist()
    (['19-198-0001', '19-198-0002', '26-495-0000'], ['19', '19', '26'], [800, 900, 700])
    >>> folder_pool(root, 8000, speaker_regex=r"/(\\d+)-\\d+-\\d+\\.wav$").speakers
    ['19', '19', '26']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dynamic mixing folder not found: {folder}")
    if speaker_level is not None and speaker_regex is not None:
        raise ValueError("give speaker_level or speaker_regex, not both")
    ends = tuple(e.lower() for e in extensions)
    files = sorted(p for p in folder.rglob("*") if p.name.lower().endswith(ends) and p.is_file())
    if not files:
        raise ValueError(f"the pool is empty: no {'/'.join(ends)} file under {folder}")
    speakers = None
    if speaker_level is not None:
        if int(speaker_level) < 1:
            raise ValueError(f"speaker_level must be >= 1 (1 = the file's folder), got {speaker_level}")
        parts = [p.relative_to(folder).parts for p in files]
        if any(len(q) <= speaker_level for q in parts):
            short = files[next(i for i, q in enumerate(parts) if len(q) <= speaker_level)]
            raise ValueError(f"{short} has no parent folder at level {speaker_level} below {folder}")
        speakers = [q[-1 - speaker_level] for q in parts]
    elif speaker_regex is not None:
        pattern = re.compile(speaker_regex)
        kept, speakers = [], []
        for p in files:
            m = pattern.search("/" + p.relative_to(folder).as_posix())
            if m:
                kept.append(p)
                speakers.append(m.group(1) if pattern.groups else m.group(0))
        if not kept:
            raise ValueError(f"the pool is empty: no file under {folder} matches {speaker_regex!r}")
        if len(kept) < len(files):
            logger.warning(
                "%d of %d files under %s do not match %r: left out",
                len(files) - len(kept),
                len(files),
                folder,
                speaker_regex,
            )
        files = kept
    frames = []
    for p in tqdm(files, desc=f"Reading headers under {folder.name}", unit="file", disable=None):
        info = soundfile.info(str(p))
        if info.samplerate != sample_rate:
            raise ValueError(
                f"{p} is at {info.samplerate} Hz, the recipe at {sample_rate} Hz: resample the folder first"
            )
        frames.append(info.frames)
    return AudioPool([str(p) for p in files], frames, speakers=speakers)


# --------------------------------------------------------------------------------------------
# Gain rules
# --------------------------------------------------------------------------------------------

#: Gain rules by name: ``rule(sources, noise, rng, sample_rate) -> (source_gains, noise_gain)``.
#: ``sources`` is ``[K, T]`` float32, ``noise`` ``[T]`` float32 or ``None``, ``rng`` the item's
#: ``numpy.random.Generator``; the gains are linear factors (``noise_gain`` ignored without noise).
#: The dataset applies them and sums, so the returned signals are exactly what is in the mixture.
GAIN_RULES: dict[str, Callable] = {}


def register_gain_rule(name, rule=None):
    """Adds a gain rule to :data:`GAIN_RULES` (usable as a decorator).

    Arguments
    ---------
    name : str
    rule : callable, optional
        ``rule(sources, noise, rng, sample_rate) -> (source_gains, noise_gain)``.

    Returns
    -------
    callable
        The rule (or a decorator when ``rule`` is not given).

    Example
    -------
    >>> @register_gain_rule("unit_example")
    ... def unit(sources, noise, rng, sample_rate):
    ...     return np.ones(len(sources)), 1.0
    >>> GAIN_RULES["unit_example"] is unit
    True
    >>> _ = GAIN_RULES.pop("unit_example")
    """
    if rule is None:
        return functools.partial(register_gain_rule, name)
    if name in GAIN_RULES:
        raise ValueError(f"gain rule {name!r} is already registered")
    GAIN_RULES[name] = rule
    return rule


WHAM_FIRST_DB = (-27.43, 2.57)  # mean, std of the first source's level (dB)
WHAM_RELATIVE_DB = (-2.51, 2.66)  # mean, std of the other sources' level relative to the first
WHAM_DB_RANGE = (-45.0, 0.0)
PEAK = 0.9


@register_gain_rule("wham")
def wham_gains(sources, noise, rng, sample_rate=None):
    """Upstream SpeechBrain's WHAM! dynamic-mixing levels.

    Source: ``recipes/WHAMandWHAMR/separation/dynamic_mixing.py``. The first
    source's level is ``N(-27.43, 2.57)`` dB clipped to [-45, 0], each other
    source's is the first's plus ``N(-2.51, 2.66)`` dB, clipped likewise; a
    level is the mean absolute amplitude (``speechbrain.processing.signal_processing.rescale``,
    ``amp_type="avg"``). The noise keeps its file level. Everything is then
    scaled by one factor so that the largest peak is 0.9 (up or down).

    Departures: upstream takes the largest peak over the mixture and the
    sources; the noise's peak counts here too, so no returned signal exceeds
    0.9. Upstream then rescales the returned noise to the sources' mean level,
    so it is not the noise in the mixture; here it is. Draws come from ``rng``.

    Arguments
    ---------
    sources : numpy.ndarray
        ``[K, T]``.
    noise : numpy.ndarray or None
        ``[T]``.
    rng : numpy.random.Generator
    sample_rate : int
        Unused.

    Returns
    -------
    source_gains : numpy.ndarray
        ``[K]`` float64.
    noise_gain : float

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> sources = rng.standard_normal((2, 8000)).astype(np.float32)
    >>> gains, noise_gain = wham_gains(sources, 0.1 * sources[0], rng)
    >>> mix = (gains[:, None] * sources).sum(0) + noise_gain * 0.1 * sources[0]
    >>> round(float(max(np.abs(mix).max(), np.abs(gains[:, None] * sources).max())), 6)
    0.9
    """
    first = np.clip(rng.normal(*WHAM_FIRST_DB), *WHAM_DB_RANGE)
    levels = np.concatenate(
        [[first], np.clip(first + rng.normal(*WHAM_RELATIVE_DB, size=len(sources) - 1), *WHAM_DB_RANGE)]
    )
    x = sources.astype(np.float64)
    mean_abs = np.abs(x).mean(axis=1)
    gains = np.where(mean_abs > 0, 10.0 ** (levels / 20.0) / np.where(mean_abs > 0, mean_abs, 1.0), 1.0)
    scaled = gains[:, None] * x
    mix = scaled.sum(axis=0)
    peaks = [np.abs(mix).max(), np.abs(scaled).max()]
    if noise is not None:
        mix = mix + noise
        peaks = [np.abs(mix).max(), np.abs(scaled).max(), np.abs(noise).max()]
    peak = max(peaks)
    common = PEAK / peak if peak > 0 else 1.0
    return gains * common, float(common)


LIBRIMIX_SPEECH_LUFS = (-33.0, -25.0)
LIBRIMIX_NOISE_LUFS = (-38.0, -30.0)


@functools.lru_cache(maxsize=8)
def _meter(sample_rate):
    try:
        import pyloudnorm
    except ImportError as err:  # pragma: no cover - pyloudnorm is in requirements.txt
        raise ImportError("the 'librimix' gain rule needs pyloudnorm (pip install pyloudnorm)") from err
    return pyloudnorm.Meter(sample_rate)


def _loudness(x, sample_rate):
    """BS.1770 integrated loudness (LUFS) by pyloudnorm; a window shorter than a 400 ms block is tiled."""
    meter = _meter(sample_rate)
    need = int(np.ceil(meter.block_size * sample_rate)) + 1
    x = np.asarray(x, dtype=np.float64)
    if len(x) < need:
        x = np.resize(x, need)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(meter.integrated_loudness(x))


@register_gain_rule("librimix")
def librimix_gains(sources, noise, rng, sample_rate):
    """The LibriMix generator's loudness rule.

    Source: JorisCos/LibriMix ``scripts/create_librimix_metadata.py``
    (``set_loudness``, ``check_for_cliping``), as upstream SpeechBrain's
    ``recipes/LibriMix/separation/dynamic_mixing.py`` applies it on the fly.
    Each source is brought to a loudness drawn from U(-33, -25) LUFS and the
    noise to U(-38, -30) LUFS (ITU-R BS.1770 integrated loudness measured by
    ``pyloudnorm``); a signal that would then reach 1.0 is instead scaled to a
    peak of 0.9. If the mixture's peak exceeds 0.9, every signal is scaled by
    ``0.9 / peak``.

    Departures: the generator measures loudness at 16 kHz on the whole
    utterances (zero-padded to the longest) and upstream dynamic mixing on the
    source crops and on the whole noise file; here every signal is measured on
    the window that enters the mixture, at the training sample rate. A window
    shorter than pyloudnorm's 400 ms block is measured tiled to one block
    (pyloudnorm refuses shorter input); a silent one keeps gain 1. Draws come
    from ``rng`` (sources first, then the noise).

    Arguments
    ---------
    sources : numpy.ndarray
        ``[K, T]``.
    noise : numpy.ndarray or None
        ``[T]``.
    rng : numpy.random.Generator
    sample_rate : int

    Returns
    -------
    source_gains : numpy.ndarray
        ``[K]`` float64.
    noise_gain : float

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> sources = 0.1 * rng.standard_normal((2, 16000))
    >>> gains, noise_gain = librimix_gains(sources, sources[1, ::-1].copy(), rng, 8000)
    >>> [-33 <= round(_loudness(g * s, 8000), 6) <= -25 for g, s in zip(gains, sources)]
    [True, True]
    """
    targets = list(rng.uniform(*LIBRIMIX_SPEECH_LUFS, size=len(sources)))
    signals = [np.asarray(s, dtype=np.float64) for s in sources]
    if noise is not None:
        targets.append(rng.uniform(*LIBRIMIX_NOISE_LUFS))
        signals.append(np.asarray(noise, dtype=np.float64))
    gains = np.ones(len(signals))
    for j, (x, target) in enumerate(zip(signals, targets)):
        loudness = _loudness(x, sample_rate)
        if np.isfinite(loudness):
            gains[j] = 10.0 ** ((target - loudness) / 20.0)
        peak = np.abs(x).max()
        if gains[j] * peak >= 1.0:
            gains[j] = PEAK / peak
    mix = sum(g * x for g, x in zip(gains, signals))
    peak = np.abs(mix).max()
    if peak > PEAK:
        gains *= PEAK / peak
    return gains[: len(sources)], float(gains[-1]) if noise is not None else 1.0


# --------------------------------------------------------------------------------------------
# Dataset and sampler
# --------------------------------------------------------------------------------------------


@dataclass
class MixturePlan:
    """What item ``(epoch, index)`` is made of (before any gain).

    Attributes
    ----------
    utterances : list of int
        Indices into the source pool, one per source (distinct speakers).
    starts : list of int
        First frame of each source's window.
    noise : int or None
        Index into the noise pool.
    noise_start : int or None
    length : int
        Frames of every window (the mixture's length).
    """

    utterances: list
    starts: list
    noise: int | None
    noise_start: int | None
    length: int


class DynamicMixingDataset(torch.utils.data.Dataset):
    """Mixtures made on the fly, deterministic by ``(seed, epoch, index)``.

    Index ``epoch * epoch_size + i`` (as :class:`MixingSampler` yields) is item
    ``i`` of ``epoch``; an index below ``epoch_size`` is epoch 0. Item ``i``
    picks ``num_spks`` distinct speakers (weighted by their number of
    utterances, or uniformly), one utterance of each and one noise file;
    the mixture's length is ``min(segment, shortest utterance, noise)``, and
    every signal gets a random window of that length inside its own length.
    The gain rule scales them and the mixture is their sum, so the returned
    ``noise_sig`` is exactly the noise in ``mix_sig``.

    Arguments
    ---------
    sources : AudioPool
        Single-speaker utterances with speaker labels.
    noise : AudioPool, optional
        Noise files; ``None`` mixes without noise.
    num_spks : int
    gain_rule : str
        A key of :data:`GAIN_RULES`.
    sample_rate : int
    segment : int, optional
        Largest mixture length in samples (``None``: the shortest signal's).
    epoch_size : int, optional
        Items per epoch (default: ``len(sources) // num_spks``).
    seed : int
        Non-negative.
    speaker_weighting : str
        ``"count"`` (a speaker's chance is proportional to its number of
        utterances, as in both upstream recipes) or ``"uniform"``.

    Example
    -------
    >>> import tempfile, soundfile
    >>> from modules.data.batch import collate
    >>> root, rng = tempfile.mkdtemp(), np.random.default_rng(0)
    >>> paths = [os.path.join(root, f"{i}.wav") for i in range(5)]
    >>> for p in paths:
    ...     soundfile.write(p, 0.1 * rng.standard_normal(16000), 8000, subtype="FLOAT")
    >>> sources = AudioPool(paths[:4], [16000] * 4, speakers=["a", "b", "c", "d"])
    >>> data = DynamicMixingDataset(sources, AudioPool(paths[4:], [16000]), num_spks=2, segment=8000, seed=1)
    >>> item = data[3]
    >>> sorted(item), item["scenario"], item["mix_sig"].shape
    (['id', 'mix_sig', 'noise_sig', 's1_sig', 's2_sig', 'scenario'], '2sp+n', torch.Size([8000]))
    >>> bool(torch.allclose(item["mix_sig"], item["s1_sig"] + item["s2_sig"] + item["noise_sig"], atol=1e-6))
    True
    >>> batch = collate([data[0], data[1]])
    >>> batch.sources.shape, batch.noise_mask.tolist()
    (torch.Size([2, 8000, 2]), [True, True])
    """

    def __init__(
        self,
        sources,
        noise=None,
        num_spks=2,
        gain_rule="wham",
        sample_rate=8000,
        segment=None,
        epoch_size=None,
        seed=0,
        speaker_weighting="count",
    ):
        self.gain_rule_name = gain_rule
        self.gain_rule = _lookup(GAIN_RULES, gain_rule, "gain rule")
        if sources is None or len(sources) == 0:
            raise ValueError("the source pool is empty")
        if sources.speakers is None:
            raise ValueError("the source pool has no speaker labels")
        if noise is not None and len(noise) == 0:
            raise ValueError("the noise pool is empty")
        self.num_spks = int(num_spks)
        if self.num_spks < 1:
            raise ValueError(f"num_spks must be >= 1, got {num_spks}")
        n_speakers = len(sources.speaker_names)
        if n_speakers < self.num_spks:
            raise ValueError(
                f"the source pool has {n_speakers} speaker(s), fewer than the {self.num_spks} "
                "sources of a mixture (speakers must be distinct)"
            )
        if segment is not None and int(segment) < 1:
            raise ValueError(f"segment must be a positive number of samples or None, got {segment}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if speaker_weighting == "count":
            counts = np.array([len(u) for u in sources.by_speaker], dtype=np.float64)
            self.speaker_p = counts / counts.sum()
        elif speaker_weighting == "uniform":
            self.speaker_p = None
        else:
            raise ValueError(f"speaker_weighting must be 'count' or 'uniform', got {speaker_weighting!r}")
        self.sources, self.noise = sources, noise
        self.sample_rate = int(sample_rate)
        self.segment = None if segment is None else int(segment)
        self.epoch_size = int(epoch_size) if epoch_size is not None else max(1, len(sources) // self.num_spks)
        if self.epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1, got {epoch_size}")
        self.seed = int(seed)
        self.speaker_weighting = speaker_weighting
        self.scenario = f"{self.num_spks}sp" + ("+n" if noise is not None else "")

    def __len__(self):
        return self.epoch_size

    def rng(self, epoch, index):
        """The item's random generator: a function of ``(seed, epoch, index)`` only."""
        return np.random.default_rng([self.seed, int(epoch), int(index), _ITEM_STREAM])

    def draw(self, epoch, index, rng=None):
        """The :class:`MixturePlan` of item ``index`` of ``epoch`` (no audio read).

        Arguments
        ---------
        epoch, index : int
        rng : numpy.random.Generator, optional
            Defaults to :meth:`rng`; :meth:`make` passes it on to the gain rule.

        Returns
        -------
        MixturePlan
        """
        rng = self.rng(epoch, index) if rng is None else rng
        pool = self.sources
        speakers = rng.choice(len(pool.by_speaker), size=self.num_spks, replace=False, p=self.speaker_p)
        utterances = [pool.by_speaker[s][rng.integers(len(pool.by_speaker[s]))] for s in speakers]
        lengths = [int(pool.frames[u]) for u in utterances]
        noise = None
        if self.noise is not None:
            noise = int(rng.integers(len(self.noise)))
            lengths.append(int(self.noise.frames[noise]))
        length = min(lengths) if self.segment is None else min(*lengths, self.segment)
        starts = [int(rng.integers(n - length + 1)) for n in lengths]
        noise_start = starts.pop() if noise is not None else None
        return MixturePlan(utterances, starts, noise, noise_start, length)

    @staticmethod
    def _read(path, start, length):
        x, _ = soundfile.read(path, frames=length, start=start, dtype="float32", always_2d=True)
        if x.shape[0] != length:
            raise RuntimeError(
                f"{path}: read {x.shape[0]} frames from {start}, expected {length} (shorter than its pool length?)"
            )
        return x[:, 0]

    def make(self, epoch, index):
        """Item ``index`` of ``epoch`` (see the class docstring for its keys)."""
        rng = self.rng(epoch, index)
        plan = self.draw(epoch, index, rng)
        pool = self.sources
        sources = np.stack([self._read(pool.paths[u], s, plan.length) for u, s in zip(plan.utterances, plan.starts)])
        noise = None
        if plan.noise is not None:
            noise = self._read(self.noise.paths[plan.noise], plan.noise_start, plan.length)
        gains, noise_gain = self.gain_rule(sources, noise, rng, self.sample_rate)
        sources = (np.asarray(gains, dtype=np.float32)[:, None] * sources).astype(np.float32, copy=False)
        mix = sources.sum(axis=0, dtype=np.float32)
        names = "_".join(pool.names[u] for u in plan.utterances)
        item = {"id": f"dm_e{epoch}_{index}_{names}", "scenario": self.scenario}
        if noise is not None:
            noise = (np.float32(noise_gain) * noise).astype(np.float32, copy=False)
            mix = mix + noise
            item["noise_sig"] = torch.from_numpy(noise)
        item["mix_sig"] = torch.from_numpy(mix)
        for k in range(self.num_spks):
            item[f"s{k + 1}_sig"] = torch.from_numpy(sources[k].copy())
        return item

    def decode(self, index):
        """``(epoch, position)`` of a sampler index."""
        return divmod(int(index), self.epoch_size)

    def __getitem__(self, index):
        return self.make(*self.decode(index))


class EpochSampler(torch.utils.data.Sampler):
    """A sampler whose order depends on the epoch: set by ``set_epoch`` (as SpeechBrain's
    loader does for a sampler that has it), else read from the ``epoch_counter``, else 0.

    Subclasses set ``self.epoch_counter`` and ``self.epoch = None`` and read
    :attr:`current_epoch` in ``__iter__``.
    """

    epoch = None
    epoch_counter = None

    def set_epoch(self, epoch):
        """Sets the epoch of the next iteration."""
        self.epoch = int(epoch)

    @property
    def current_epoch(self):
        """The epoch the next ``__iter__`` uses."""
        if self.epoch is not None:
            return self.epoch
        if self.epoch_counter is not None:
            return int(self.epoch_counter.current)
        return 0


class MixingSampler(EpochSampler):
    """Yields the indices of one epoch of a :class:`DynamicMixingDataset`.

    The indices are ``epoch * epoch_size + position``, the positions in an
    order seeded by ``(seed, epoch)``. The epoch is the last
    :meth:`set_epoch` value (SpeechBrain's ``Brain`` calls it on its
    ``train_sampler``; ``DistributedSamplerWrapper`` passes it through), else
    ``epoch_counter.current`` when an ``EpochCounter`` is given, else 0.

    Arguments
    ---------
    dataset : DynamicMixingDataset
    shuffle : bool
        Permute the positions (the items are independent draws either way).
    epoch_counter : speechbrain.utils.epoch_loop.EpochCounter, optional

    Example
    -------
    >>> data = DynamicMixingDataset(AudioPool(["a", "b"], [10, 10], speakers=["x", "y"]), num_spks=2, epoch_size=4)
    >>> sampler = MixingSampler(data)
    >>> sampler.set_epoch(3)
    >>> len(sampler), sorted(sampler), [data.decode(i) for i in sorted(sampler)][:2]
    (4, [12, 13, 14, 15], [(3, 0), (3, 1)])
    """

    def __init__(self, dataset, shuffle=True, epoch_counter=None):
        self.epoch_size = dataset.epoch_size
        self.seed = dataset.seed
        self.shuffle = shuffle
        self.epoch_counter = epoch_counter
        self.epoch = None

    def __len__(self):
        return self.epoch_size

    def __iter__(self):
        epoch = self.current_epoch
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch, _ORDER_STREAM]).permutation(self.epoch_size)
        else:
            order = np.arange(self.epoch_size)
        return iter((epoch * self.epoch_size + order).tolist())


# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------


def build_dynamic_mixing(hparams, train):
    """The dynamic-mixing training set and its sampler, from a recipe's hparams.

    Keys read (``dm_*`` are this module's; the others are the recipe's own):

    * ``dm_gain_rule`` (required): ``wham`` or ``librimix`` (:data:`GAIN_RULES`).
    * ``dm_speaker_rule``: ``wham`` or ``librimix`` (:data:`SPEAKER_RULES`),
      required when the sources come from the manifest.
    * ``dm_sources_folder`` (default ``None``: the manifest's sources): a
      folder of single-speaker utterances, with ``dm_speaker_level``
      (default 1: the file's folder) or ``dm_speaker_regex``.
    * ``dm_noise_folder`` (default ``None``: the manifest's ``noise_wav``).
    * ``dm_use_noise`` (default: a noise folder is given or the manifest has
      ``noise_wav``, i.e. the task is noisy).
    * ``dm_epoch_size`` (default: the manifest's number of rows).
    * ``dm_speaker_weighting`` (default ``count``; or ``uniform``).
    * ``num_spks``, ``sample_rate``, ``seed``, ``data_folder``;
      ``training_signal_len`` is the largest mixture length when
      ``limit_training_signal_len`` is true (else full length);
      ``epoch_counter`` (optional) gives the sampler its epoch when nobody
      calls ``set_epoch``.

    Arguments
    ---------
    hparams : dict
    train : str or DynamicItemDataset
        The training manifest (or the dataset made from it).

    Returns
    -------
    dataset : DynamicMixingDataset
    sampler : MixingSampler
        Give it as the training loader's ``sampler`` (without ``shuffle``),
        and as the Brain's ``train_sampler`` so that ``set_epoch`` is called.

    Example
    -------
    >>> import tempfile, soundfile
    >>> root = tempfile.mkdtemp()
    >>> rows = []
    >>> for i, mix_id in enumerate(["3536-8226-0026_1673-143397-0009", "19-198-0001_26-495-0000"]):
    ...     for col in ("s1", "s2", "noise"):
    ...         os.makedirs(os.path.join(root, col), exist_ok=True)
    ...         soundfile.write(os.path.join(root, col, mix_id + ".wav"), 0.1 * np.ones(8000), 8000)
    ...     rows.append(f"{mix_id},1.0," + ",".join(f"$data_root/{c}/{mix_id}.wav" for c in ("s1", "s2", "noise")))
    >>> with open(os.path.join(root, "tr.csv"), "w") as f:
    ...     _ = f.write("ID,duration,s1_wav,s2_wav,noise_wav\\n" + "\\n".join(rows) + "\\n")
    >>> hparams = {"dm_gain_rule": "wham", "dm_speaker_rule": "librimix", "num_spks": 2, "sample_rate": 8000,
    ...            "seed": 3, "data_folder": root, "training_signal_len": 4000, "limit_training_signal_len": True}
    >>> data, sampler = build_dynamic_mixing(hparams, os.path.join(root, "tr.csv"))
    >>> len(data), len(data.sources), len(data.noise), data.segment, data[0]["mix_sig"].shape
    (2, 4, 2, 4000, torch.Size([4000]))
    """
    if "dm_gain_rule" not in hparams:
        raise ValueError(f"dynamic mixing needs dm_gain_rule in the hparams (one of {', '.join(sorted(GAIN_RULES))})")
    sample_rate = int(hparams["sample_rate"])
    num_spks = int(hparams["num_spks"])
    data_folder = hparams.get("data_folder")
    ids, rows = manifest_rows(train, data_folder)
    has_noise_column = bool(ids) and "noise_wav" in rows[ids[0]]
    noise_folder = hparams.get("dm_noise_folder")
    use_noise = hparams.get("dm_use_noise")
    if use_noise is None:
        use_noise = noise_folder is not None or has_noise_column
    sources_folder = hparams.get("dm_sources_folder")
    if sources_folder is None:
        if hparams.get("dm_speaker_rule") is None:
            raise ValueError(
                f"dynamic mixing from the manifest needs dm_speaker_rule (one of {', '.join(sorted(SPEAKER_RULES))})"
            )
        from_manifest_noise = bool(use_noise) and noise_folder is None
        sources, noise, _ = manifest_pools(
            train, sample_rate, hparams["dm_speaker_rule"], data_folder=data_folder, with_noise=from_manifest_noise
        )
    else:
        sources = folder_pool(
            sources_folder,
            sample_rate,
            speaker_level=hparams.get("dm_speaker_level", 1 if hparams.get("dm_speaker_regex") is None else None),
            speaker_regex=hparams.get("dm_speaker_regex"),
        )
        noise = _manifest_noise(ids, rows, sample_rate, train) if use_noise and noise_folder is None else None
    if use_noise and noise_folder is not None:
        noise = folder_pool(noise_folder, sample_rate)
    if not use_noise:
        noise = None
    segment = hparams["training_signal_len"] if hparams.get("limit_training_signal_len", False) else None
    dataset = DynamicMixingDataset(
        sources,
        noise,
        num_spks=num_spks,
        gain_rule=hparams["dm_gain_rule"],
        sample_rate=sample_rate,
        segment=segment,
        epoch_size=hparams.get("dm_epoch_size") or len(ids),
        seed=int(hparams.get("seed", 0)),
        speaker_weighting=hparams.get("dm_speaker_weighting", "count"),
    )
    logger.info(
        "Dynamic mixing: %d utterances of %d speakers, %s noise files, gain rule %s, %d mixtures per epoch",
        len(sources),
        len(sources.speaker_names),
        len(noise) if noise is not None else "no",
        dataset.gain_rule_name,
        dataset.epoch_size,
    )
    return dataset, MixingSampler(dataset, epoch_counter=hparams.get("epoch_counter"))


def _manifest_noise(ids, rows, sample_rate, train):
    """The noise pool of a manifest's ``noise_wav`` column (sources from elsewhere)."""
    if not ids or "noise_wav" not in rows[ids[0]]:
        raise ValueError(
            f"the training manifest {train} has no noise_wav column: use a noisy task (sep_noisy), "
            "give a noise folder (dm_noise_folder) or mix without noise (dm_use_noise: False)"
        )
    paths, frames, seen = [], [], set()
    for mix_id in ids:
        path = rows[mix_id]["noise_wav"]
        if path not in seen:
            seen.add(path)
            paths.append(path)
            frames.append(round(float(rows[mix_id]["duration"]) * sample_rate))
    return AudioPool(paths, frames)
