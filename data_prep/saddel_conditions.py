"""The test conditions of SADDEL's Tables 1-3, written once, deterministically, with manifests.

SADDEL's paper (Wu et al., arXiv:2005.09966) scores every system of a table on
the same test sets: WSJ0-mix and "Librispeech-mix" speech, with or without
noise of MUSAN or of the 100 Nonspeech Sounds, at several SNR ranges. This
module simulates such a *condition* once, to disk, the way LibriMix's scripts
generate their sets: every system is then scored on the same files, and a
rerun writes the same files byte for byte.

**What the paper says, and the rule that implements it.**

* Scenarios (section 4.2): "one speaker source with real-world noise (SD
  scenario, denoted as 1sp+n), multiple speakers without noise (SS in clean
  scenario, denoted as 2sp and 3sp ...), and multiple speakers with noise (SS
  in noise scenario, denoted as 2sp+n and 3sp+n)". A condition holds any of
  the five (:data:`SCENARIOS`); the speech of a scenario comes from a speech
  corpus of 2- and 3-speaker mixtures: ``2sp``/``2sp+n`` take the 2-speaker
  mixtures' sources, ``3sp``/``3sp+n`` the 3-speaker ones, ``1sp+n`` the first
  source (``s1``) of each 2-speaker mixture. So within a condition, and across
  conditions with the same speech, ``2sp`` and ``2sp+n`` hold the same speech,
  and a noise condition differs from another by its noise only.
* WSJ0-mix (section 4.1.1, "the publicly available datasets WSJ0-2mix and
  WSJ0-3mix"): the sources of the ``tt`` mixtures, as written by the MERL
  scripts, read through :func:`data_prep.wsj0mix.prepare_wsj0mix`
  (:func:`wsj0_speech`); their relative levels are the corpus's.
* Librispeech-mix (section 4.1.1: "We simulate another single-channel SS
  dataset for testing with the Librispeech dataset, where test data is
  generated from a 100-hour test set. All utterances are 6 seconds long with a
  sample rate of 8 KHz"): utterances of a LibriSpeech subset (``test-clean``
  by default: LibriSpeech has no 100-hour test set, the subset is a
  parameter) at least 6 s long, cropped to their first 6 s, resampled to
  8 kHz; 2- and 3-speaker mixtures of distinct speakers, each speaker after
  the first at a level drawn in [-2.5, 2.5] dB relative to the first (mean
  power over the 6 s; the first keeps its recorded level), the rule of
  WSJ0-mix that the paper follows ("the speech utterances were randomly
  sampled and mixed up between SNR from -2.5 dB to 2.5dB")
  (:func:`librispeech_mix_speech`).
* Noise (section 4.1.1: MUSAN "used ... for training and testing"; the 100
  Nonspeech Sounds, "used in our testing"; Table 2: "Librispeech-mix is mixed
  with random sampled noise from the MUSAN dataset at the SNR level for
  training"): test noise comes from the ``test`` split of the corpus only,
  the split of :func:`data_prep.noise_corpora.noise_split` with the seed and
  fractions of the training preparation (:func:`condition_noise_files`), so
  no test mixture holds a training noise file. Per mixture: a noise file drawn
  uniformly, resampled to the condition's rate, a segment of the mixture's
  length starting at a drawn sample (the file tiled, wrapping round, when it
  is shorter; a segment below :data:`~data_prep.common.SILENCE_FLOOR` is
  drawn again); an SNR drawn uniformly in the condition's range (rounded to
  :data:`SNR_DECIMALS` decimals), of the speech (the sum of the speakers)
  against the noise, over the whole mixture; the noise scaled to reach it
  exactly. The paper's Table 3 ranges are garbled ("M_C ... middle SNR level
  (SNR= -5 to - 25 dB)", "M_L ... low SNR level (SNR= -5 to - 5 dB)", "N_H
  ... high SNR level (SNR= 10 to 20 dB)"): the range is a parameter, decided
  by the recipe's yaml, not here.
* Level: if the largest peak of the signals to write (mixture, sources,
  noise) exceeds ``peak_ceiling`` (default :data:`PEAK_CEILING`), all of them
  are scaled by one factor, which leaves the SNR and the relative levels as
  they are. ``mix`` is the sum of the written (float32) sources and noise.

**Determinism.** Every random draw of a mixture comes from its own generator,
seeded by ``(seed, condition, scenario, mixture index)``
(:func:`mixture_rng`); the speech of Librispeech-mix by ``(seed, subset,
number of speakers, mixture index)``, so that it is the same in every
condition. Nothing depends on what was written before, so a rerun, a resumed
run, or a run of a subset of the scenarios writes the same bytes. Files are
float32 WAV (the SNR is exact to float32 rounding) with the write time that
libsndfile stores in the ``PEAK`` chunk zeroed, each written through a
temporary file and a rename (a killed run leaves no half-written file; its
temporary files are deleted by the next run). A rerun keeps every complete
file (checked from its header) and writes the rest. ``<out>/<condition>/condition.json``
records the parameters (seed, rate, SNR range, peak ceiling, the allowed noise
files, the speech description) and, per scenario, the number of mixtures, a
digest of its speech list and whether it is finished; a run with other
parameters than those recorded is refused (another condition name or folder,
or delete the folder), a finished scenario is skipped.

**Outputs.** ``<out_folder>/<condition>/<scenario folder>/{mix,s1,s2[,s3],noise}/<ID>.wav``
(scenario folders as :func:`data_prep.scenarios.scenario_folder` names them:
``1sp_n``, ``2sp``, ``3sp``, ``2sp_n``, ``3sp_n``) and one manifest per
scenario, ``<out_folder>/<condition>/<scenario folder>.csv``, in the project's
convention (:func:`data_prep.common.build_row`): ``ID, duration, mix_wav,
s1_wav, ... [, noise_wav]`` with their ``_format``/``_opts`` columns and
``$data_root`` paths, ``$data_root`` standing for ``<out_folder>/<condition>``;
the noisy scenarios add ``snr_db`` (the SNR reached), ``noise_file`` (the
noise file, relative to its corpus root, e.g.
``free-sound/noise-free-sound-0003.wav``) and ``noise_start`` (the segment's
first sample in the file resampled to the condition's rate). Load one with
``modules.data.load_manifest(csv, data_folder=<out_folder>/<condition>)``.
IDs: the WSJ0 mixture name; for Librispeech-mix ``<index>_<utt1>_<utt2>[_<utt3>]``.

Command line (:func:`build_parser` documents every option)::

    python -m data_prep.saddel_conditions --condition M_C --speech wsj0 --speech_folder /data/wsj0-mix \\
        --noise_corpus musan --noise_folder /data/musan --snr_range -5 20 --out_folder results/saddel_conditions
    python -m data_prep.saddel_conditions --condition L_N_H --speech librispeech --speech_folder /data/LibriSpeech \\
        --noise_corpus nonspeech --noise_folder /data/Nonspeech --snr_range 10 20 --out_folder results/saddel_conditions

A recipe's yaml calls :func:`prepare_saddel_condition` (``!name:``) with the
same arguments as its ``prepare`` step.
"""

import argparse
import csv
import functools
import hashlib
import io
import json
import logging
import math
import re
import sys
import zlib
from collections import OrderedDict, namedtuple
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.common import (
    DATA_ROOT,
    SILENCE_FLOOR,
    PrepError,
    atomic_path,
    build_row,
    check_choice,
    manifest_header,
    read_wav,
    read_wav_info,
    remove_stale_temps,
    run_cli,
    wav_is_complete,
    write_csv_atomic,
    write_text_atomic,
)
from data_prep.enrollment import resampled_length
from data_prep.librispeech import DEFAULT_SUBSET, find_librispeech_subset, list_librispeech
from data_prep.noise_corpora import (
    CORPORA,
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    MUSAN_SUBSETS,
    check_fractions,
    check_seed,
    corpus_files,
    noise_split,
    read_noise,
)
from data_prep.scenarios import SCENARIOS, scenario_folder
from data_prep.wsj0mix import MODES, prepare_wsj0mix
from modules.audio import resample

logger = logging.getLogger(__name__)

#: Version of the layout and of the rules; recorded in ``condition.json``.
FORMAT_VERSION = 1
CONDITION_FILE = "condition.json"
#: Scenario -> (speakers of the corpus mixtures it is taken from, sources it keeps, noisy).
SCENARIO_SOURCES = OrderedDict(
    [
        ("1sp+n", (2, 1, True)),
        ("2sp", (2, 2, False)),
        ("3sp", (3, 3, False)),
        ("2sp+n", (2, 2, True)),
        ("3sp+n", (3, 3, True)),
    ]
)
SPEECH_KINDS = ("wsj0", "librispeech")
SAMPLE_RATE = 8000
#: Default ceiling of the written signals' peak.
PEAK_CEILING = 0.99
#: Decimals of a drawn SNR (the value applied and written in ``snr_db``).
SNR_DECIMALS = 6
#: Librispeech-mix: utterance length (s), mixtures per speaker count, relative levels (dB).
LIBRI_DURATION = 6.0
LIBRI_MIXTURES = 3000
RELATIVE_LEVEL_DB = (-2.5, 2.5)
#: Draws of a noise segment before a condition gives up on finding one that is not silent.
MAX_NOISE_DRAWS = 100
#: Noise files kept in memory, resampled (float64), while a condition is simulated: all 93
#: MUSAN test files of the default split (about 140 MB at 8 kHz), or all 100 Nonspeech files.
NOISE_CACHE = 128
EXTRA_COLUMNS = ("snr_db", "noise_file", "noise_start")
_CONDITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

#: One mixture of a speech corpus: ``mix_id``; ``files`` (absolute paths of its
#: sources); ``rel_files`` (the same, relative to the corpus root: what is
#: recorded); ``crop_s`` (keep the first ``crop_s`` seconds, or None: the whole
#: files); ``levels_db`` (power of each source relative to the first, dB, or
#: None: the files' own levels).
SpeechMixture = namedtuple("SpeechMixture", "mix_id files rel_files crop_s levels_db")


# --------------------------------------------------------------------------
# Speech


def wsj0_speech(data_folder, save_folder, n_spks=(2, 3), sample_rate=SAMPLE_RATE, mode="min", skip_bad_files=False):
    """The WSJ0-2mix / WSJ0-3mix test (``tt``) mixtures as speech of SADDEL's conditions.

    The ``tt`` manifests are written by :func:`data_prep.wsj0mix.prepare_wsj0mix`
    (its header and content checks included) into ``save_folder``; each row
    becomes a :class:`SpeechMixture` of its sources at their corpus levels.

    Arguments
    ---------
    data_folder : str or Path
        The MERL scripts' output folder (holding ``2speakers``/``3speakers``).
    save_folder : str or Path
        Where the WSJ0-mix manifests ``wsj0{n}mix_tt.csv`` are written.
    n_spks : sequence of int
        Speaker counts to read (2 and/or 3).
    sample_rate : int
        8000 or 16000 (``wav8k`` or ``wav16k``).
    mode : str
        ``"min"`` or ``"max"``.
    skip_bad_files : bool
        Leave out mixtures whose audio fails the content check.

    Returns
    -------
    dict
        ``{n: [SpeechMixture, ...]}``, mixtures sorted by name.

    Raises
    ------
    PrepError
        A missing ``tt`` split or folder, bad audio (see ``prepare_wsj0mix``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_wsj0mix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_wsj0mix(tmp, n_train=1, n_valid=1, n_test=2, sample_rates=(8000,), modes=("min",))
    >>> speech = wsj0_speech(root, f"{tmp}/prep")
    >>> {n: len(m) for n, m in speech.items()}, speech[3][0].rel_files[2].split("/")[:5]
    ({2: 2, 3: 2}, ['3speakers', 'wav8k', 'min', 'tt', 's3'])
    """
    out = OrderedDict()
    for n in n_spks:
        try:
            paths = prepare_wsj0mix(
                data_folder, save_folder, n, sample_rate, mode, splits=("tt",), skip_bad_files=skip_bad_files
            )
        except PrepError as err:
            raise PrepError(f"SADDEL's conditions need the WSJ0-{n}mix test set (tt): {err}") from None
        out[n] = []
        for row in _read_rows(paths["test"]):
            rel = [_strip_root(row[f"s{k}_wav"]) for k in range(1, n + 1)]
            files = [str(Path(data_folder) / r) for r in rel]
            out[n].append(SpeechMixture(row["ID"], tuple(files), tuple(rel), None, None))
    return out


def librispeech_mix_speech(
    data_folder,
    subset=DEFAULT_SUBSET,
    n_mixtures=LIBRI_MIXTURES,
    seed=0,
    n_spks=(2, 3),
    duration=LIBRI_DURATION,
    level_range=RELATIVE_LEVEL_DB,
):
    """SADDEL's Librispeech-mix: 2- and 3-speaker mixtures of 6 s LibriSpeech utterances.

    The utterances at least ``duration`` long of a subset
    (:func:`data_prep.librispeech.list_librispeech`); mixture ``i`` of ``n``
    speakers draws, from a generator seeded by ``(seed, subset, n, i)``,
    ``n`` distinct speakers (uniformly among the speakers with such an
    utterance), one utterance of each (uniformly), and the levels of the
    speakers after the first relative to the first, uniformly in
    ``level_range`` (dB). Each source is the first ``duration`` seconds of its
    utterance (the crop and the levels are applied when the audio is read,
    :func:`load_speech`).

    Arguments
    ---------
    data_folder : str or Path
        ``LibriSpeech/``, the folder holding it, or the subset folder.
    subset : str
        LibriSpeech subset (default ``"test-clean"``).
    n_mixtures : int
        Mixtures of each speaker count.
    seed : int
        Seed of the draws (non-negative).
    n_spks : sequence of int
        Speaker counts (2 and/or 3).
    duration : float
        Length of every source (seconds); shorter utterances are left out.
    level_range : sequence of float
        ``(low, high)`` level of a speaker relative to the first (dB).

    Returns
    -------
    dict
        ``{n: [SpeechMixture, ...]}``; IDs ``<index>_<utt1>_<utt2>[_<utt3>]``.

    Raises
    ------
    PrepError
        Missing subset, fewer speakers with long enough utterances than ``n``.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librispeech
    >>> root = make_mini_librispeech(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=8)
    >>> speech = librispeech_mix_speech(root, n_mixtures=2, seed=0)
    >>> mix = speech[3][0]
    >>> len({f.split("/")[1] for f in mix.rel_files}), mix.crop_s, mix.levels_db[0]
    (3, 6.0, 0.0)
    """
    seed = _check_seed(seed)
    low, high = _check_range("level_range", level_range)
    if not isinstance(n_mixtures, (int, np.integer)) or isinstance(n_mixtures, bool) or n_mixtures < 1:
        raise PrepError(f"invalid n_mixtures={n_mixtures!r} (a positive integer)")
    folder = find_librispeech_subset(data_folder, subset)
    by_speaker = OrderedDict()
    for utt in list_librispeech(folder, subset, min_duration=duration):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    speakers = sorted(by_speaker)
    width = max(4, len(str(n_mixtures - 1)))
    out = OrderedDict()
    for n in n_spks:
        if len(speakers) < n:
            raise PrepError(
                f"LibriSpeech {subset} in {folder}: {len(speakers)} speakers have utterances of at least "
                f"{duration:g} s, {n}-speaker mixtures need {n}"
            )
        out[n] = []
        for i in range(n_mixtures):
            rng = _rng(seed, "librispeech-mix", subset, n, i)
            picks = rng.choice(len(speakers), size=n, replace=False)
            utts = [by_speaker[speakers[k]][int(rng.integers(len(by_speaker[speakers[k]])))] for k in picks]
            levels = (0.0, *(float(v) for v in rng.uniform(low, high, size=n - 1)))
            out[n].append(
                SpeechMixture(
                    f"{i:0{width}d}_" + "_".join(u.utt_id for u in utts),
                    tuple(str(u.path) for u in utts),
                    tuple(f"{subset}/{u.speaker}/{u.chapter}/{u.path.name}" for u in utts),
                    float(duration),
                    levels,
                )
            )
    return out


def scenario_speech(speech, scenario):
    """The speech mixtures of a scenario, taken from a speech corpus.

    ``2sp``/``2sp+n`` are the 2-speaker mixtures, ``3sp``/``3sp+n`` the
    3-speaker ones, ``1sp+n`` the first source of each 2-speaker mixture.

    Example
    -------
    >>> corpus = {2: [SpeechMixture("a", ("/x/s1.wav", "/x/s2.wav"), ("s1.wav", "s2.wav"), None, None)]}
    >>> scenario_speech(corpus, "1sp+n")[0].files
    ('/x/s1.wav',)
    >>> scenario_speech(corpus, "3sp")
    Traceback (most recent call last):
    ...
    modules.files.PrepError: scenario 3sp needs 3-speaker speech mixtures, the speech given has 2-speaker ones only
    """
    scenario = check_choice("scenario", scenario, SCENARIOS)
    n_corpus, n_kept, _ = SCENARIO_SOURCES[scenario]
    if n_corpus not in speech:
        have = ", ".join(f"{n}-speaker" for n in speech) or "no"
        raise PrepError(
            f"scenario {scenario} needs {n_corpus}-speaker speech mixtures, the speech given has {have} ones only"
        )
    return [
        m._replace(
            files=m.files[:n_kept],
            rel_files=m.rel_files[:n_kept],
            levels_db=None if m.levels_db is None else m.levels_db[:n_kept],
        )
        for m in speech[n_corpus]
    ]


def speech_length(mixture, sample_rate):
    """Samples of a speech mixture at ``sample_rate``, from the first file's header.

    Example
    -------
    >>> speech_length(SpeechMixture("a", ("/no/such.flac",), ("x",), 6.0, None), 8000)
    48000
    """
    if mixture.crop_s is not None:
        return round(mixture.crop_s * sample_rate)
    info = read_wav_info(mixture.files[0])
    return resampled_length(info.frames, info.samplerate, sample_rate)


def load_speech(mixture, sample_rate):
    """The sources of a speech mixture, ``[K, T]`` float64 at ``sample_rate``.

    Each file is read (its first ``crop_s`` seconds when set), resampled with
    :func:`modules.audio.resample` and, when cropped, cut to
    ``round(crop_s * sample_rate)`` samples; with ``levels_db`` each source
    after the first is scaled so that its mean power relative to the first's
    is that level.

    Raises
    ------
    PrepError
        An unreadable or too short file, sources of different lengths, a silent
        source that a level applies to.

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name, amp in (("a", 0.1), ("b", 0.3)):
    ...     sf.write(tmp / f"{name}.flac", np.full(16000 * 7, amp), 16000)
    >>> mix = SpeechMixture("x", (str(tmp / "a.flac"), str(tmp / "b.flac")), ("a", "b"), 6.0, (0.0, 6.0))
    >>> x = load_speech(mix, 8000)
    >>> x.shape, round(float(10 * np.log10((x[1] ** 2).mean() / (x[0] ** 2).mean())), 6)
    ((2, 48000), 6.0)
    """
    sources = []
    for path in mixture.files:
        if mixture.crop_s is None:
            x, rate = read_wav(path)
        else:
            info = read_wav_info(path)
            frames = round(mixture.crop_s * info.samplerate)
            if info.frames < frames:
                raise PrepError(
                    f"{path} is {info.frames / info.samplerate:.3f} s long, shorter than {mixture.crop_s:g} s"
                )
            x, rate = sf.read(str(path), frames=frames, dtype="float64", always_2d=False)[0], info.samplerate
        x = resample(x, rate, sample_rate)
        sources.append(x if mixture.crop_s is None else x[: round(mixture.crop_s * sample_rate)])
    if len({len(x) for x in sources}) != 1:
        lengths = ", ".join(str(len(x)) for x in sources)
        raise PrepError(f"the sources of {mixture.mix_id} have different lengths ({lengths} samples): {mixture.files}")
    x = np.stack(sources)
    if mixture.levels_db is not None:
        power = (x**2).mean(axis=1)
        if np.any(power <= SILENCE_FLOOR):
            raise PrepError(f"a silent source in {mixture.mix_id}: {mixture.files}")
        x *= (np.sqrt(power[0] / power) * 10.0 ** (np.asarray(mixture.levels_db) / 20.0))[:, None]
    return x


# --------------------------------------------------------------------------
# Noise


def condition_noise_files(noise_folder, corpus="musan", seed=DEFAULT_SEED, fractions=None, subsets=MUSAN_SUBSETS):
    """The noise files a test condition may use: the ``test`` split of the corpus.

    The same split as the training preparation's
    (:func:`data_prep.noise_corpora.noise_split` of
    :func:`data_prep.noise_corpora.corpus_files`), so give the seed and
    fractions it used (defaults: seed 0; MUSAN 0.8/0.1/0.1, 100 Nonspeech
    0/0/1, every file a test file).

    Arguments
    ---------
    noise_folder : str or Path
        MUSAN (``musan/``, ``musan/noise`` or the folder holding ``musan``) or
        the 100 Nonspeech folder.
    corpus : str
        ``"musan"`` or ``"nonspeech"``.
    seed : int
        Seed of the split.
    fractions : sequence of float, optional
        ``(train, valid, test)`` of the split (default: the corpus's).
    subsets : sequence of str
        MUSAN noise subsets.

    Returns
    -------
    tuple
        ``(noise_root, files)``: the corpus root (Path) and the test files,
        relative to it, sorted.

    Raises
    ------
    PrepError
        Missing corpus, a test fraction of 0.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_musan
    >>> root = make_mini_musan(tempfile.mkdtemp(), n_train=8, n_valid=1, n_test=1)
    >>> noise_root, files = condition_noise_files(root, "musan")
    >>> noise_root.name, len(files)
    ('noise', 1)
    """
    corpus = check_choice("corpus", corpus, CORPORA)
    fractions = check_fractions(DEFAULT_FRACTIONS[corpus] if fractions is None else fractions)
    if fractions[2] <= 0:
        raise PrepError(f"noise fractions {list(fractions)} give no test file: test conditions take test noise only")
    rel, files = corpus_files(noise_folder, corpus, subsets)
    return Path(noise_folder) / rel, list(noise_split(files, seed, fractions)["test"])


class _NoiseBank:
    """The allowed noise files at the condition's rate: lengths from headers, audio through an LRU cache."""

    def __init__(self, root, files, sample_rate):
        """Reads every noise file's length from its header; the audio is read when drawn (cached)."""
        self.root, self.files, self.rate = Path(root), list(files), int(sample_rate)
        if not self.files:
            raise PrepError("no noise file given for a noisy scenario")
        self.lengths = []
        for rel in self.files:
            info = read_wav_info(self.root / rel)
            self.lengths.append(resampled_length(info.frames, info.samplerate, self.rate))
        self.audio = functools.lru_cache(maxsize=NOISE_CACHE)(self._read)

    def _read(self, index):
        """One noise file at the condition's rate (the cache keeps it in memory)."""
        return read_noise(self.root / self.files[index], self.rate)

    def draw(self, rng, length, name):
        """``(file index, start, segment)``: a segment of ``length`` samples that is not silent."""
        for _ in range(MAX_NOISE_DRAWS):
            index = int(rng.integers(len(self.files)))
            n = self.lengths[index]
            start = int(rng.integers(0, n - length + 1)) if n >= length else int(rng.integers(0, n))
            segment = np.take(self.audio(index), np.arange(start, start + length), mode="wrap")
            if (segment**2).mean() > SILENCE_FLOOR:
                return index, start, segment
        raise PrepError(f"{name}: {MAX_NOISE_DRAWS} noise segments drawn, all silent (check the noise files)")


# --------------------------------------------------------------------------
# Simulation


def mixture_rng(seed, condition, scenario, index):
    """The generator of every draw of one mixture, seeded by ``(seed, condition, scenario, index)``.

    Example
    -------
    >>> a = mixture_rng(0, "M_C", "2sp+n", 5).uniform()
    >>> a == mixture_rng(0, "M_C", "2sp+n", 5).uniform(), a == mixture_rng(0, "M_C", "3sp+n", 5).uniform()
    (True, False)
    """
    return _rng(seed, "condition", condition, scenario, index)


def condition_folder(out_folder, condition):
    """``<out_folder>/<condition>``: the data folder (``$data_root``) of a condition's manifests.

    Example
    -------
    >>> condition_folder("/out", "M_C").as_posix()
    '/out/M_C'
    >>> condition_folder("/out", "../x")
    Traceback (most recent call last):
    ...
    modules.files.PrepError: invalid condition name '../x' (letters, digits and _ . + -, used as a folder name)
    """
    if not isinstance(condition, str) or not _CONDITION_NAME.fullmatch(condition):
        raise PrepError(f"invalid condition name {condition!r} (letters, digits and _ . + -, used as a folder name)")
    return Path(out_folder) / condition


def condition_manifest_paths(out_folder, condition, scenarios=SCENARIOS):
    """``{scenario: manifest path}`` of a condition (nothing is checked or written).

    Example
    -------
    >>> {k: v.name for k, v in condition_manifest_paths("/out", "N_H", ["1sp+n", "3sp+n"]).items()}
    {'1sp+n': '1sp_n.csv', '3sp+n': '3sp_n.csv'}
    """
    folder = condition_folder(out_folder, condition)
    scenarios = _check_scenarios(scenarios)
    return OrderedDict((s, scenario_folder(folder, s).with_suffix(".csv")) for s in scenarios)


def simulate_condition(
    speech,
    noise_files,
    noise_root,
    out_folder,
    condition,
    scenarios,
    snr_range,
    seed,
    sample_rate=SAMPLE_RATE,
    n_mixtures=None,
    peak_ceiling=PEAK_CEILING,
    speech_description=None,
    noise_description=None,
    progress=True,
):
    """Write the scenarios of one test condition and their manifests (resumable, deterministic).

    See the module docstring for the rules. Scenarios already finished (by
    ``condition.json``, with their manifest there) are skipped; the others
    keep their complete files and write the missing ones.

    Arguments
    ---------
    speech : dict
        ``{n_speakers: [SpeechMixture, ...]}``, from :func:`wsj0_speech` or
        :func:`librispeech_mix_speech` (2-speaker mixtures for ``1sp+n``,
        ``2sp``, ``2sp+n``; 3-speaker ones for ``3sp``, ``3sp+n``).
    noise_files : sequence of str or None
        The noise files allowed, relative to ``noise_root`` (from
        :func:`condition_noise_files`); needed by the noisy scenarios only.
    noise_root : str or Path or None
        Root of the noise corpus.
    out_folder : str or Path
        Parent of the condition folders.
    condition : str
        Condition name (a folder name, e.g. ``"M_C"``); part of every seed.
    scenarios : sequence of str
        Scenarios to write (:data:`SCENARIOS`).
    snr_range : sequence of float or None
        ``(low, high)`` SNR range (dB) of the noisy scenarios.
    seed : int
        Seed of the condition's draws (non-negative).
    sample_rate : int
        Rate of the written files.
    n_mixtures : int, optional
        Mixtures per scenario: the first ``n_mixtures`` of the speech lists
        (default: all).
    peak_ceiling : float
        Largest peak allowed in the written signals (see the module docstring).
    speech_description, noise_description : dict, optional
        JSON-serialisable descriptions of the speech (corpus, subset ...) and
        of the noise (corpus, split seed, fractions ...), recorded in
        ``condition.json`` and compared on a rerun.
    progress : bool
        Show a progress bar per scenario.

    Returns
    -------
    OrderedDict
        ``{scenario: str(manifest path)}``.

    Raises
    ------
    PrepError
        Invalid parameters, a folder written with other parameters (or not by
        this simulator), a noisy scenario without noise or SNR range, bad audio.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_nonspeech, make_mini_wsj0mix
    >>> tmp = tempfile.mkdtemp()
    >>> wsj = make_mini_wsj0mix(tmp, n_train=1, n_valid=1, n_test=2, sample_rates=(8000,), modes=("min",), n_spks=(2,))
    >>> speech = wsj0_speech(wsj, f"{tmp}/prep", n_spks=(2,))
    >>> noise_root, files = condition_noise_files(make_mini_nonspeech(tmp, n_train=1, n_valid=1, n_test=1), "nonspeech")
    >>> paths = simulate_condition(speech, files, noise_root, f"{tmp}/out", "N_H", ["1sp+n", "2sp+n"], (10, 20), 0,
    ...                            progress=False)
    >>> sorted(p.name for p in Path(tmp, "out", "N_H").iterdir())
    ['1sp_n', '1sp_n.csv', '2sp_n', '2sp_n.csv', 'condition.json']
    >>> sorted(p.name for p in Path(tmp, "out", "N_H", "2sp_n").iterdir())
    ['mix', 'noise', 's1', 's2']
    """
    seed = _check_seed(seed)
    scenarios = _check_scenarios(scenarios)
    noisy = [s for s in scenarios if SCENARIO_SOURCES[s][2]]
    if noisy:
        snr_range = _check_range("snr_range", snr_range)
        if not noise_files or noise_root is None:
            raise PrepError(f"noisy scenarios {', '.join(noisy)} need noise files (noise_files and noise_root)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
        raise PrepError(f"invalid sample_rate={sample_rate!r} (an integer rate in Hz)")
    if not (isinstance(peak_ceiling, (int, float)) and 0 < peak_ceiling <= 1):
        raise PrepError(f"invalid peak_ceiling={peak_ceiling!r} (a number in (0, 1])")
    folder = condition_folder(out_folder, condition)
    manifests = condition_manifest_paths(out_folder, condition, scenarios)
    lists = OrderedDict((s, _first(scenario_speech(speech, s), n_mixtures, s)) for s in scenarios)
    parameters = _jsonable(
        {
            "seed": seed,
            "sample_rate": int(sample_rate),
            "peak_ceiling": float(peak_ceiling),
            "speech": speech_description or {},
        }
    )
    noise = None
    if noisy:
        noise_files = sorted(str(f) for f in noise_files)
        noise = _jsonable({"snr_range": list(snr_range), "files": noise_files, **(noise_description or {})})
    record = _open_condition(folder, condition, parameters, noise, lists)
    bank = _NoiseBank(noise_root, noise_files, sample_rate) if noisy else None
    for scenario, mixtures in lists.items():
        path = manifests[scenario]
        if record["scenarios"][scenario]["done"] and path.is_file():
            logger.info("%s %s: already written (%d mixtures), skipping", condition, scenario, len(mixtures))
            continue
        rows = _simulate_scenario(folder, condition, scenario, mixtures, bank, snr_range, parameters, progress)
        keys = ["mix", *_scenario_keys(scenario)[:-1]]
        header = manifest_header(keys, EXTRA_COLUMNS if scenario in noisy else ())
        write_csv_atomic(path, header, rows)
        record["scenarios"][scenario]["done"] = True
        write_text_atomic(folder / CONDITION_FILE, _json_text(record))
        logger.info("%s %s: %d mixtures -> %s", condition, scenario, len(rows), path)
    return OrderedDict((s, str(p)) for s, p in manifests.items())


def _simulate_scenario(folder, condition, scenario, mixtures, bank, snr_range, parameters, progress):
    """Writes the missing mixtures of one scenario; returns the manifest rows of all."""
    keys = _scenario_keys(scenario)
    remove_stale_temps([scenario_folder(folder, scenario) / key for key in keys])
    rows, n_written = [], 0
    with tqdm(mixtures, desc=f"{condition} {scenario}", unit="mix", dynamic_ncols=True, disable=not progress) as bar:
        for index, mixture in enumerate(bar):
            rng = mixture_rng(parameters["seed"], condition, scenario, index)
            row, written = _simulate_mixture(folder, scenario, mixture, rng, bank, snr_range, parameters)
            rows.append(row)
            n_written += written
    if n_written < len(mixtures):
        logger.info("%s %s: %d mixtures kept from an earlier run", condition, scenario, len(mixtures) - n_written)
    return rows


def _scenario_keys(scenario):
    """The signals a scenario writes, in writing order: sources, noise, the mixture last."""
    n_kept, noisy = SCENARIO_SOURCES[scenario][1:]
    return [f"s{k}" for k in range(1, n_kept + 1)] + (["noise"] if noisy else []) + ["mix"]


def _simulate_mixture(folder, scenario, mixture, rng, bank, snr_range, parameters):
    """Draws one mixture and writes its files unless complete; returns ``(manifest row, whether written)``."""
    rate = parameters["sample_rate"]
    keys = _scenario_keys(scenario)
    length = speech_length(mixture, rate)
    rel = {key: f"{scenario_folder(folder, scenario).name}/{key}/{mixture.mix_id}.wav" for key in keys}
    extra, segment, snr = None, None, None
    if SCENARIO_SOURCES[scenario][2]:
        snr = round(float(rng.uniform(*snr_range)), SNR_DECIMALS)
        noise_index, start, segment = bank.draw(rng, length, f"{folder.name} {scenario} {mixture.mix_id}")
        extra = {"snr_db": f"{snr:.{SNR_DECIMALS}f}", "noise_file": bank.files[noise_index], "noise_start": start}
    row = build_row(mixture.mix_id, length / rate, {k: rel[k] for k in ["mix", *keys[:-1]]}, extra)
    if all(wav_is_complete(folder / r, length, rate, "FLOAT") for r in rel.values()):
        return row, False
    signals = render_mixture(load_speech(mixture, rate), segment, snr, parameters["peak_ceiling"])
    if signals["mix"].shape[-1] != length:
        raise PrepError(f"{mixture.mix_id}: {signals['mix'].shape[-1]} samples, expected {length} from the headers")
    for key in keys:
        write_float_wav(folder / rel[key], signals[key], rate)
    return row, True


def render_mixture(sources, noise=None, snr_db=None, peak_ceiling=PEAK_CEILING):
    """The float32 signals of one mixture: sources, noise at ``snr_db`` against their sum, mixture.

    The noise is scaled so that the power of the speech (the sum of the
    sources) over the power of the noise, over the whole mixture, is
    ``snr_db``; then, if the largest peak of the mixture, sources and noise
    exceeds ``peak_ceiling``, all are scaled by one factor. The mixture is the
    sum of the float32 sources and noise.

    Arguments
    ---------
    sources : numpy.ndarray
        ``[K, T]``.
    noise : numpy.ndarray, optional
        ``[T]`` noise segment (not silent).
    snr_db : float, optional
        SNR to reach (with ``noise``).
    peak_ceiling : float
        Largest peak allowed.

    Returns
    -------
    dict
        ``{"s1": ..., "s<K>": ..., ["noise": ...,] "mix": ...}``, float32 arrays.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> out = render_mixture(rng.standard_normal((2, 8000)), rng.standard_normal(8000), 5.0)
    >>> speech = out["s1"].astype(float) + out["s2"]
    >>> round(float(10 * np.log10((speech**2).sum() / (out["noise"].astype(float) ** 2).sum())), 4)
    5.0
    >>> round(float(max(np.abs(v).max() for v in out.values())), 6), out["mix"].dtype
    (0.99, dtype('float32'))
    """
    sources = np.asarray(sources, dtype=np.float64)
    speech = sources.sum(axis=0)
    signals = list(sources)
    if noise is not None:
        speech_power = (speech**2).mean()
        if speech_power <= SILENCE_FLOOR:
            raise PrepError("silent speech: no SNR can be reached")
        noise = np.asarray(noise, dtype=np.float64)
        noise = noise * math.sqrt(speech_power / ((noise**2).mean() * 10.0 ** (snr_db / 10.0)))
        signals.append(noise)
    peak = max(np.abs(sum(signals)).max(), *(np.abs(x).max() for x in signals))
    scale = peak_ceiling / peak if peak > peak_ceiling else 1.0
    written = [(x * scale).astype(np.float32) for x in signals]
    out = OrderedDict((f"s{k}", x) for k, x in enumerate(written[: len(sources)], start=1))
    if noise is not None:
        out["noise"] = written[-1]
    out["mix"] = np.sum([x.astype(np.float64) for x in written], axis=0).astype(np.float32)
    return out


def write_float_wav(path, data, sample_rate):
    """Write a float32 WAV atomically, with reproducible bytes.

    libsndfile stores the write time in the ``PEAK`` chunk of float WAV
    files; it is zeroed, so the same signal always gives the same bytes. The
    file is written through a temporary file and a rename
    (:func:`data_prep.common.atomic_path`).

    Example
    -------
    >>> import tempfile, time
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> write_float_wav(path, np.full(80, 0.5), 8000)
    >>> first = path.read_bytes(); time.sleep(1.1); write_float_wav(path, np.full(80, 0.5), 8000)
    >>> path.read_bytes() == first, sf.info(path).subtype
    (True, 'FLOAT')
    """
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(data, dtype=np.float32), int(sample_rate), subtype="FLOAT", format="WAV")
    data = bytearray(buffer.getvalue())
    pos = data.find(b"PEAK", 0, 256)
    if pos >= 0:  # chunk id, size, version, then the 4-byte time stamp
        data[pos + 12 : pos + 16] = bytes(4)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(bytes(data))


# --------------------------------------------------------------------------
# The one-call preparation (recipes' yaml, command line)


def prepare_saddel_condition(
    condition,
    speech,
    speech_folder,
    out_folder,
    snr_range=None,
    noise_corpus=None,
    noise_folder=None,
    scenarios=SCENARIOS,
    seed=0,
    sample_rate=SAMPLE_RATE,
    n_mixtures=None,
    noise_split_seed=DEFAULT_SEED,
    noise_fractions=None,
    musan_subsets=MUSAN_SUBSETS,
    wsj0_mode="min",
    librispeech_subset=DEFAULT_SUBSET,
    peak_ceiling=PEAK_CEILING,
    skip_prep=False,
    progress=True,
):
    """Write one of SADDEL's test conditions from the corpus folders; the recipes' ``prepare`` step.

    Builds the speech (:func:`wsj0_speech` or :func:`librispeech_mix_speech`),
    takes the test split of the noise corpus (:func:`condition_noise_files`)
    and simulates (:func:`simulate_condition`).

    Arguments
    ---------
    condition : str
        Condition name, e.g. ``"M_C"`` (the folder ``<out_folder>/<condition>``).
    speech : str
        ``"wsj0"`` (WSJ0-2mix/3mix ``tt``) or ``"librispeech"`` (Librispeech-mix).
    speech_folder : str or Path
        WSJ0-mix: the MERL scripts' output folder; LibriSpeech: ``LibriSpeech/``,
        the folder holding it, or the subset folder.
    out_folder : str or Path
        Parent of the condition folders (WSJ0-mix's ``tt`` manifests go to
        ``<out_folder>/wsj0mix_manifests``).
    snr_range : sequence of float, optional
        ``(low, high)`` SNR (dB) of the noisy scenarios.
    noise_corpus : str, optional
        ``"musan"`` or ``"nonspeech"`` (needed by noisy scenarios).
    noise_folder : str or Path, optional
        The noise corpus folder.
    scenarios : sequence of str
        Scenarios to write (default all five).
    seed : int
        Seed of the condition's draws and of Librispeech-mix's speech.
    sample_rate : int
        Rate of the written files (8000 in the paper).
    n_mixtures : int, optional
        Mixtures per scenario: WSJ0-mix, the first ``n`` test mixtures (default
        all 3000); Librispeech-mix, how many are drawn (default 3000).
    noise_split_seed : int
        Seed of the noise split (as in the training preparation).
    noise_fractions : sequence of float, optional
        ``(train, valid, test)`` of the noise split (default: the corpus's).
    musan_subsets : sequence of str
        MUSAN noise subsets.
    wsj0_mode : str
        ``"min"`` or ``"max"`` WSJ0-mix.
    librispeech_subset : str
        LibriSpeech subset of Librispeech-mix.
    peak_ceiling : float
        Largest peak allowed in the written signals.
    skip_prep : bool
        Return the manifest paths without checking or writing anything.
    progress : bool
        Show progress bars.

    Returns
    -------
    OrderedDict
        ``{scenario: manifest path}``.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librispeech
    >>> tmp = tempfile.mkdtemp()
    >>> libri = make_mini_librispeech(tmp, n_train=1, n_valid=1, n_test=8)
    >>> paths = prepare_saddel_condition("L_clean", "librispeech", libri, f"{tmp}/out", scenarios=["2sp"],
    ...                                  n_mixtures=2, progress=False)
    >>> lines = Path(paths["2sp"]).read_text().splitlines()
    >>> len(lines), lines[1].split(",")[1]
    (3, '6.0')
    """
    speech = check_choice("speech", speech, SPEECH_KINDS)
    scenarios = _check_scenarios(scenarios)
    if skip_prep:
        return OrderedDict((s, str(p)) for s, p in condition_manifest_paths(out_folder, condition, scenarios).items())
    condition_folder(out_folder, condition)  # the name, checked before any corpus is read
    n_spks = sorted({SCENARIO_SOURCES[s][0] for s in scenarios})
    noisy = any(SCENARIO_SOURCES[s][2] for s in scenarios)
    if noisy:  # checked before any corpus is read
        if noise_corpus is None or noise_folder is None:
            raise PrepError("noisy scenarios need noise_corpus and noise_folder")
        check_choice("noise_corpus", noise_corpus, CORPORA)
        _check_range("snr_range", snr_range)
    speech_description = {"kind": speech}
    if speech == "wsj0":
        speech_description["mode"] = check_choice("wsj0_mode", wsj0_mode, MODES)
        corpus = wsj0_speech(speech_folder, Path(out_folder) / "wsj0mix_manifests", n_spks, sample_rate, wsj0_mode)
    else:
        n_libri = LIBRI_MIXTURES if n_mixtures is None else n_mixtures
        speech_description.update(
            subset=librispeech_subset, duration=LIBRI_DURATION, level_range=list(RELATIVE_LEVEL_DB), n_drawn=n_libri
        )
        corpus = librispeech_mix_speech(speech_folder, librispeech_subset, n_libri, seed, n_spks)
    noise_root, noise_files, noise_description = None, None, None
    if noisy:
        noise_root, noise_files = condition_noise_files(
            noise_folder, noise_corpus, noise_split_seed, noise_fractions, musan_subsets
        )
        noise_description = {
            "corpus": noise_corpus,
            "split_seed": noise_split_seed,
            "fractions": list(DEFAULT_FRACTIONS[noise_corpus] if noise_fractions is None else noise_fractions),
        }
    return simulate_condition(
        corpus,
        noise_files,
        noise_root,
        out_folder,
        condition,
        scenarios,
        snr_range,
        seed,
        sample_rate=sample_rate,
        n_mixtures=n_mixtures,
        peak_ceiling=peak_ceiling,
        speech_description=speech_description,
        noise_description=noise_description,
        progress=progress,
    )


# --------------------------------------------------------------------------
# Helpers


def _rng(seed, *keys):
    """Generator seeded by ``seed`` and a path of keys (CRC-32 of their text)."""
    words = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _check_seed(seed):
    """A non-negative integer seed, or a PrepError."""
    seed = check_seed(seed)
    if seed < 0:
        raise PrepError(f"invalid seed={seed!r} (a non-negative integer)")
    return seed


def _check_range(name, value):
    """``(low, high)``: two finite numbers, low <= high."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise PrepError(f"invalid {name}={value!r} (two numbers: low high, in dB)") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise PrepError(f"invalid {name}={value!r} (two finite numbers, low <= high, in dB)")
    return low, high


def _check_scenarios(scenarios):
    """The scenarios asked for, checked against SCENARIOS."""
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    scenarios = list(scenarios)
    for scenario in scenarios:
        check_choice("scenario", scenario, SCENARIOS)
    if not scenarios or len(set(scenarios)) != len(scenarios):
        raise PrepError(f"invalid scenarios={scenarios!r} (distinct names among {', '.join(SCENARIOS)})")
    return [s for s in SCENARIOS if s in scenarios]


def _first(mixtures, n_mixtures, scenario):
    """The first ``n_mixtures`` mixtures of a scenario (all when None); an error when there are fewer."""
    if n_mixtures is None:
        return mixtures
    if isinstance(n_mixtures, bool) or not isinstance(n_mixtures, (int, np.integer)) or n_mixtures < 1:
        raise PrepError(f"invalid n_mixtures={n_mixtures!r} (a positive integer)")
    if n_mixtures > len(mixtures):
        raise PrepError(f"n_mixtures={n_mixtures} but the speech of {scenario} has {len(mixtures)} mixtures")
    return mixtures[:n_mixtures]


def _strip_root(path):
    """A manifest path without its ``$data_root/``."""
    return str(path)[len(DATA_ROOT) :].lstrip("/") if str(path).startswith(DATA_ROOT) else str(path)


def _read_rows(path):
    """The rows of a CSV file as dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _jsonable(value):
    """``value`` as JSON reads it back (tuples become lists), so records compare equal."""
    return json.loads(json.dumps(value))


def _json_text(record):
    """A record as indented JSON text."""
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def speech_digest(mixtures):
    """SHA-1 of a speech list (IDs, corpus-relative files, crop, levels): what makes a scenario's speech.

    Example
    -------
    >>> m = SpeechMixture("a", ("/data/s1.wav",), ("s1.wav",), None, None)
    >>> speech_digest([m]) == speech_digest([m._replace(files=("/elsewhere/s1.wav",))])
    True
    """
    items = [
        [m.mix_id, list(m.rel_files), m.crop_s, None if m.levels_db is None else list(m.levels_db)] for m in mixtures
    ]
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()


def _open_condition(folder, condition, parameters, noise, lists):
    """Reads or creates ``condition.json``; refuses a folder written with other parameters.

    ``parameters`` must equal those recorded; ``noise`` (None when no noisy
    scenario is asked for) must equal the recorded noise when both exist, and
    is recorded when the folder has none yet (its scenarios were all clean).
    """
    path = folder / CONDITION_FILE
    scenarios = {s: {"n_mixtures": len(m), "speech_digest": speech_digest(m)} for s, m in lists.items()}
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise PrepError(f"unreadable {path} ({err}): delete {folder} to write the condition again") from None
        old = {"format": record.get("format"), "condition": record.get("condition"), **record.get("parameters", {})}
        new = {"format": FORMAT_VERSION, "condition": condition, **parameters}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                raise PrepError(_other_parameters(folder, key, old.get(key), new.get(key)))
        if noise is not None and record.get("noise") is not None:
            for key in sorted(set(noise) | set(record["noise"])):
                if noise.get(key) != record["noise"].get(key):
                    raise PrepError(_other_parameters(folder, f"noise {key}", record["noise"].get(key), noise.get(key)))
        record["noise"] = record.get("noise") or noise
        for scenario, wanted in scenarios.items():
            done = record["scenarios"].get(scenario)
            for key, value in wanted.items():
                if done is not None and done.get(key) != value:
                    raise PrepError(_other_parameters(folder, f"{scenario} {key}", done.get(key), value))
            if done is None:
                record["scenarios"][scenario] = {**wanted, "done": False}
    else:
        if folder.exists() and any(folder.iterdir()):
            raise PrepError(
                f"{folder} exists and holds no {CONDITION_FILE}: not a condition folder, refusing to write in it"
            )
        record = {
            "format": FORMAT_VERSION,
            "condition": condition,
            "parameters": parameters,
            "noise": noise,
            "scenarios": {s: {**v, "done": False} for s, v in scenarios.items()},
        }
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, _json_text(record))
    return record


def _other_parameters(folder, key, old, new):
    """The message of a rerun whose parameters differ from the recorded ones."""

    def short(value):
        """A value as JSON, cut to 80 characters."""
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + "..."

    return (
        f"{folder} was written with other parameters ({key}: {short(old)} there, {short(new)} now); "
        f"use another condition name or out_folder, or delete {folder}"
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.saddel_conditions``.

    Example
    -------
    >>> argv = ["--condition", "M_L", "--speech", "wsj0", "--speech_folder", "w", "--out_folder", "o",
    ...         "--noise_corpus", "musan", "--noise_folder", "m", "--snr_range", "-5", "5"]
    >>> args = build_parser().parse_args(argv)
    >>> args.snr_range, args.scenarios, args.seed, args.progress
    ([-5.0, 5.0], ['1sp+n', '2sp', '3sp', '2sp+n', '3sp+n'], 0, True)
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.saddel_conditions",
        description="Write one of SADDEL's test conditions (Tables 1-3): WSJ0-mix or Librispeech-mix speech, "
        "with MUSAN or 100 Nonspeech test noise at an SNR range, deterministically by seed, resumable; "
        "<out_folder>/<condition>/<scenario>/{mix,s1,s2[,s3],noise}/<ID>.wav, one manifest per scenario "
        "(<out_folder>/<condition>/<scenario>.csv, $data_root = <out_folder>/<condition>) and condition.json.",
    )
    parser.add_argument(
        "--condition", required=True, help="condition name, the folder <out_folder>/<condition> (e.g. M_C)"
    )
    parser.add_argument(
        "--speech", required=True, choices=SPEECH_KINDS, help="wsj0: WSJ0-2mix/3mix tt; librispeech: Librispeech-mix"
    )
    parser.add_argument(
        "--speech_folder",
        required=True,
        help="wsj0: the MERL scripts' output folder (holding 2speakers/3speakers); librispeech: LibriSpeech/, "
        "the folder holding it, or the subset folder",
    )
    parser.add_argument("--out_folder", required=True, help="parent of the condition folders")
    parser.add_argument(
        "--snr_range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="SNR range (dB) of the noisy scenarios, drawn uniformly per mixture",
    )
    parser.add_argument("--noise_corpus", default=None, choices=CORPORA, help="noise of the noisy scenarios")
    parser.add_argument(
        "--noise_folder",
        default=None,
        help="musan: musan/, musan/noise or the folder holding musan; nonspeech: the folder of n1.wav ...",
    )
    parser.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS, help="scenarios to write (default all)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the draws: (seed, condition, scenario, mixture index) seeds a mixture's noise file, "
        "segment and SNR; Librispeech-mix's speakers, utterances and levels too (default 0)",
    )
    parser.add_argument("--sample_rate", type=int, default=SAMPLE_RATE, help="rate of the written files (default 8000)")
    parser.add_argument(
        "--n_mixtures",
        type=int,
        default=None,
        help="mixtures per scenario (wsj0: the first N tt mixtures, default all; librispeech: default 3000)",
    )
    parser.add_argument(
        "--noise_split_seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the noise corpus's train/valid/test split, as in the training preparation (default 0)",
    )
    parser.add_argument(
        "--noise_fractions",
        type=float,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of that split (default: musan 0.8 0.1 0.1, nonspeech 0 0 1); the test files are used",
    )
    parser.add_argument(
        "--musan_subsets",
        nargs="+",
        default=list(MUSAN_SUBSETS),
        choices=MUSAN_SUBSETS,
        help="MUSAN noise subsets listed before the split (default both, as in the training preparation)",
    )
    parser.add_argument("--wsj0_mode", default="min", choices=MODES, help="WSJ0-mix min or max (default min)")
    parser.add_argument("--librispeech_subset", default=DEFAULT_SUBSET, help="LibriSpeech subset (default test-clean)")
    parser.add_argument(
        "--peak_ceiling",
        type=float,
        default=PEAK_CEILING,
        help="largest peak of the written signals; a mixture above it is scaled down with its sources and noise",
    )
    parser.add_argument("--skip_prep", action="store_true", help="only print the manifest paths")
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.saddel_conditions``; returns the exit status."""
    return run_cli(build_parser(), prepare_saddel_condition, argv)


__all__ = [
    "CONDITION_FILE",
    "PEAK_CEILING",
    "SCENARIO_SOURCES",
    "SpeechMixture",
    "build_parser",
    "condition_folder",
    "condition_manifest_paths",
    "condition_noise_files",
    "librispeech_mix_speech",
    "load_speech",
    "main",
    "mixture_rng",
    "prepare_saddel_condition",
    "render_mixture",
    "scenario_speech",
    "simulate_condition",
    "speech_digest",
    "speech_length",
    "write_float_wav",
    "wsj0_speech",
]


if __name__ == "__main__":
    sys.exit(main())
