"""Shared building blocks of the dataset preparation scripts.

Every ``data_prep/<dataset>.py`` module turns an on-disk corpus into CSV
manifests that SpeechBrain's ``DynamicItemDataset.from_csv`` reads. The pieces
they have in common live here:

* :class:`PrepError`, the one exception type for bad input (a one-line message);
* option checking (:func:`check_choice`), task definitions (:data:`TASKS`,
  :func:`task_folders`) and the manifest header (:func:`manifest_header`);
* layout checks with helpful messages (:func:`check_layout`), the scan of one
  split folder into manifest rows (:func:`scan_split`) and WAV header reading
  (:func:`read_wav_info`);
* the content check (:func:`check_audio_content`): every audio file read
  once, whole, as float32; non-finite samples, silence (:data:`SILENCE_FLOOR`)
  and lengths that differ from the mixture's are caught, listed in
  ``<prefix>_rejected.csv`` and either reported (:class:`PrepError`) or left
  out of the manifests (``skip_bad_files``);
* atomic CSV writing (:func:`write_csv_atomic`), the ``<prefix>_prep.json``
  sidecar (:func:`manifests_ready`; it also caches the content check per
  file) and the skip-or-prepare driver (:func:`prepare_manifests`);
* the command-line error wrapper (:func:`run_cli`);
* for the simulators and the newer corpora: atomic, resumable WAV output
  (:func:`write_wav_atomic`, :func:`wav_is_complete`, :func:`remove_stale_temps`,
  :func:`run_simulation`), list-line errors (:func:`list_error`), split
  selection (:func:`select_splits`), paths relative to the data folder
  (:func:`rel_to_root`) and the supervised/unsupervised marker
  (:data:`SUPERVISED_KEY`, :func:`is_supervised`).

Mixture-only manifests (unsupervised data, real recordings) have no
``s1_wav``... columns, and their sidecar records ``"supervised": {split: false}``.

Manifest contract: one row per mixture, columns ``ID, duration`` then, for each
audio signal ``<key>`` (``mix``, ``s1``, ``s2``, [``s3``], [``noise``], later
e.g. ``enroll``), the triple ``<key>_wav, <key>_wav_format, <key>_wav_opts``,
then any extra columns. Paths are written as ``$data_root/<relative path>``
so that ``DynamicItemDataset.from_csv(csv, replacements={"data_root": data_folder})``
resolves them wherever the data lives.
"""

import csv
import json
import logging
import math
import os
import re
import sys
from collections import OrderedDict, namedtuple
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from modules.files import PrepError, atomic_path, write_csv_atomic, write_text_atomic, write_wav_atomic  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

#: Version of the manifest/sidecar format; bump it to force re-preparation.
PREP_FORMAT_VERSION = 2

#: Placeholder replaced by the data folder when SpeechBrain loads a manifest.
DATA_ROOT = "$data_root"

#: Task name -> (mixture folder, whether the noise signal is a column,
#: whether the task has a single source).
TASKS = OrderedDict(
    [
        ("sep_noisy", ("mix_both", True, False)),
        ("sep_clean", ("mix_clean", False, False)),
        ("enh_single", ("mix_single", True, True)),
    ]
)

#: How many listed items (ids, folder entries) an error message shows.
MAX_LISTED = 5


def _one_line(text):
    """Collapse whitespace runs containing newlines so a message is one line."""
    return " ".join(str(text).split())


def check_choice(name, value, choices):
    """Raise :class:`PrepError` unless ``value`` is one of ``choices``.

    Arguments
    ---------
    name : str
        Option name, used in the message.
    value : object
        Value given by the user.
    choices : sequence
        Allowed values.

    Returns
    -------
    object
        The value itself (the matching element of ``choices``).

    Example
    -------
    >>> check_choice("mode", "min", ("min", "max"))
    'min'
    >>> check_choice("mode", "avg", ("min", "max"))
    Traceback (most recent call last):
    ...
    modules.files.PrepError: invalid mode='avg' (choose from 'min', 'max')
    """
    for choice in choices:
        if type(value) is not bool and value == choice:
            return choice
    allowed = ", ".join(repr(c) for c in choices)
    raise PrepError(f"invalid {name}={value!r} (choose from {allowed})")


def task_folders(task, n_spks):
    """Manifest audio keys of a task and the corpus folder each one reads.

    The folder names are those of WHAM! and LibriMix (``mix_both``,
    ``mix_clean``, ``mix_single``, ``s1`` ... ``noise``).

    Arguments
    ---------
    task : str
        One of :data:`TASKS`: ``sep_noisy``, ``sep_clean`` or ``enh_single``.
    n_spks : int
        Number of speakers in the corpus (``enh_single`` always has one source).

    Returns
    -------
    OrderedDict
        ``{key: folder}`` in manifest column order, ``mix`` first.

    Example
    -------
    >>> dict(task_folders("sep_noisy", 2))
    {'mix': 'mix_both', 's1': 's1', 's2': 's2', 'noise': 'noise'}
    >>> dict(task_folders("enh_single", 3))
    {'mix': 'mix_single', 's1': 's1', 'noise': 'noise'}
    """
    task = check_choice("task", task, tuple(TASKS))
    mix_folder, with_noise, single = TASKS[task]
    n_src = 1 if single else int(n_spks)
    folders = OrderedDict(mix=mix_folder)
    for i in range(1, n_src + 1):
        folders[f"s{i}"] = f"s{i}"
    if with_noise:
        folders["noise"] = "noise"
    return folders


def audio_columns(key):
    """The three manifest columns of one audio signal.

    Example
    -------
    >>> audio_columns("s1")
    ['s1_wav', 's1_wav_format', 's1_wav_opts']
    """
    return [f"{key}_wav", f"{key}_wav_format", f"{key}_wav_opts"]


def manifest_header(audio_keys, extra=()):
    """Manifest header: ``ID, duration``, audio column triples, extra columns.

    Arguments
    ---------
    audio_keys : iterable of str
        Audio signal keys in column order (``mix`` first).
    extra : iterable of str
        Further non-audio columns appended at the end.

    Returns
    -------
    list of str

    Example
    -------
    >>> manifest_header(["mix", "s1"])
    ['ID', 'duration', 'mix_wav', 'mix_wav_format', 'mix_wav_opts', 's1_wav', 's1_wav_format', 's1_wav_opts']
    """
    header = ["ID", "duration"]
    for key in audio_keys:
        header += audio_columns(key)
    return header + list(extra)


def data_root_path(rel_path):
    """Path as written in a manifest: ``$data_root/<relative path>``.

    Example
    -------
    >>> data_root_path("wav8k/min/tr/s1/a.wav")
    '$data_root/wav8k/min/tr/s1/a.wav'
    """
    rel = str(rel_path).replace(os.sep, "/").lstrip("/")
    return f"{DATA_ROOT}/{rel}"


def build_row(utt_id, duration, audio, extra=None):
    """One manifest row as a dict (keys are the header's columns).

    Arguments
    ---------
    utt_id : str
        Mixture id.
    duration : float
        Duration of the mixture in seconds.
    audio : mapping
        ``{key: relative path}`` of each audio signal.
    extra : mapping, optional
        Further column values.

    Returns
    -------
    dict

    Example
    -------
    >>> row = build_row("a", 1.5, {"mix": "tr/mix/a.wav"})
    >>> row["mix_wav"], row["mix_wav_format"], row["mix_wav_opts"]
    ('$data_root/tr/mix/a.wav', 'wav', '')
    """
    row = {"ID": utt_id, "duration": duration}
    for key, rel in audio.items():
        wav, fmt, opts = audio_columns(key)
        row[wav] = data_root_path(rel)
        row[fmt] = "wav"
        row[opts] = ""
    if extra:
        row.update(extra)
    return row


def read_wav_info(path, sample_rate=None):
    """Read a WAV header, turning every failure into a :class:`PrepError`.

    Arguments
    ---------
    path : str or Path
        Audio file.
    sample_rate : int, optional
        Expected sample rate; a different one raises :class:`PrepError`.

    Returns
    -------
    soundfile info object (``samplerate``, ``frames``, ``channels``, ...)

    Example
    -------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> sf.write(f"{tmp}/a.wav", np.zeros(800), 8000)
    >>> read_wav_info(f"{tmp}/a.wav", 8000).frames
    800
    >>> read_wav_info(f"{tmp}/a.wav", 16000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: wrong sample rate in .../a.wav: found 8000 Hz, expected 16000 Hz
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise PrepError(f"unreadable WAV file: {path} ({_one_line(err)})") from None
    if info.frames <= 0:
        raise PrepError(f"unreadable WAV file: {path} (no audio frames)")
    if sample_rate is not None and info.samplerate != int(sample_rate):
        raise PrepError(f"wrong sample rate in {path}: found {info.samplerate} Hz, expected {int(sample_rate)} Hz")
    if info.channels != 1:
        raise PrepError(f"expected a mono WAV file: {path} has {info.channels} channels")
    return info


def _join_rel(*parts):
    """Join relative path parts with '/', skipping empty ones."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _listing(folder, limit=8):
    """Short listing of the entries of a folder, for error messages."""
    try:
        names = sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_layout(data_folder, rel_prefix, splits, folders, label, task=None, n_spks=None):
    """Check that ``<data_folder>/<rel_prefix>/<split>/<folder>`` all exist.

    Arguments
    ---------
    data_folder : str or Path
        Root of the corpus as given by the user.
    rel_prefix : str
        Path from ``data_folder`` to the split folders (may be empty).
    splits : sequence of str
        Split folder names, e.g. ``("tr", "cv", "tt")``.
    folders : sequence of str
        Folders every split must contain, e.g. ``("mix_both", "s1")``.
    label : str
        Corpus name used in messages, e.g. ``"WHAM!"``.
    task : str, optional
        Task the folders are needed for; named in the message together with
        the tasks whose folders do exist in that split.
    n_spks : int, optional
        Number of speakers (to list the tasks available).

    Raises
    ------
    PrepError
        Names the first missing folder, the expected pattern and what was found.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for split in ("tr", "cv"):
    ...     (root / "wav8k" / split / "s1").mkdir(parents=True)
    >>> check_layout(root, "wav8k", ("tr", "cv"), ("s1",), "X")
    >>> check_layout(root, "wav8k", ("tr", "cv"), ("s2",), "X")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: X folder not found: .../wav8k/tr/s2 (expected <data_folder>/wav8k/{tr,cv}/s2); ...
    """
    data_folder = Path(data_folder)
    if not data_folder.is_dir():
        raise PrepError(f"{label} data_folder not found: {data_folder}")
    for split in splits:
        for folder in folders:
            rel = _join_rel(rel_prefix, split, folder)
            if (data_folder / rel).is_dir():
                continue
            pattern = _join_rel("<data_folder>", rel_prefix, "{" + ",".join(splits) + "}", folder)
            msg = f"{label} folder not found: {data_folder / rel} (expected {pattern})"
            # Deepest existing ancestor: say what is there instead.
            parts = rel.split("/")
            ancestor = data_folder
            for part in parts[:-1]:
                if not (ancestor / part).is_dir():
                    break
                ancestor = ancestor / part
            split_dir = data_folder / _join_rel(rel_prefix, split)
            if ancestor == split_dir and task is not None:
                needed = ", ".join(folders)
                msg += f"; task {task!r} needs {needed} but {split_dir} has only: {_listing(split_dir)}"
                if n_spks is not None:
                    avail = [
                        t for t in TASKS if all((split_dir / f).is_dir() for f in task_folders(t, n_spks).values())
                    ]
                    msg += f" (tasks possible with this data: {', '.join(avail) or 'none'})"
            else:
                msg += f"; {ancestor} contains: {_listing(ancestor)}"
            raise PrepError(msg)


def _list_wavs(folder):
    """Sorted stems of the ``.wav`` files of a folder."""
    with os.scandir(folder) as it:
        return sorted(e.name[:-4] for e in it if e.name.endswith(".wav") and not e.name.startswith("."))


def _id_list(ids):
    """Up to :data:`MAX_LISTED` ids, then how many more."""
    ids = sorted(ids)
    shown = ", ".join(ids[:MAX_LISTED])
    if len(ids) > MAX_LISTED:
        shown += f", ... (+{len(ids) - MAX_LISTED} more)"
    return shown


def scan_split(data_folder, rel_split, folders, sample_rate, desc=None, extra=None):
    """Build the manifest rows of one split folder.

    The mixture folder (key ``mix``) lists the mixtures; every other folder must
    hold a file of the same name, with the same sample rate (read from the
    headers). Lengths are compared later, on the decoded audio, by the content
    check of :func:`prepare_manifests` (:func:`check_audio_content`), so that a
    source longer or shorter than its mixture can be left out with
    ``skip_bad_files`` like any other bad file.

    Arguments
    ---------
    data_folder : str or Path
        Root of the corpus; manifest paths are relative to it.
    rel_split : str
        Path of the split folder relative to ``data_folder``.
    folders : mapping
        ``{key: folder}`` as returned by :func:`task_folders`.
    sample_rate : int
        Expected sample rate of every file.
    desc : str, optional
        Progress bar label.
    extra : callable, optional
        ``extra(utt_id) -> dict`` of further column values for a row.

    Returns
    -------
    list of dict
        One row per mixture (see :func:`build_row`), sorted by id.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> for folder in ("mix_clean", "s1"):
    ...     (root / "tt" / folder).mkdir(parents=True)
    ...     sf.write(root / "tt" / folder / "a.wav", np.zeros(4000), 8000)
    >>> rows = scan_split(root, "tt", {"mix": "mix_clean", "s1": "s1"}, 8000)
    >>> rows[0]["ID"], rows[0]["duration"], rows[0]["s1_wav"]
    ('a', 0.5, '$data_root/tt/s1/a.wav')
    """
    data_folder = Path(data_folder)
    mix_rel = _join_rel(rel_split, folders["mix"])
    ids = _list_wavs(data_folder / mix_rel)
    if not ids:
        raise PrepError(f"no .wav files in {data_folder / mix_rel}")
    present = {}
    problems = []
    for key, folder in folders.items():
        if key == "mix":
            continue
        rel = _join_rel(rel_split, folder)
        present[key] = set(_list_wavs(data_folder / rel))
        missing = [i for i in ids if i not in present[key]]
        if missing:
            problems.append(f"{folder}: {len(missing)} missing ({_id_list(missing)})")
    if problems:
        raise PrepError(
            f"mixtures in {data_folder / mix_rel} without matching files in "
            f"{data_folder / rel_split}: " + "; ".join(problems)
        )
    rows = []
    bar = tqdm(ids, desc=desc or str(rel_split), unit="mix", leave=False, dynamic_ncols=True)
    try:
        for utt_id in bar:
            name = f"{utt_id}.wav"
            audio = OrderedDict()
            duration = None
            for key, folder in folders.items():
                rel = _join_rel(rel_split, folder, name)
                info = read_wav_info(data_folder / rel, sample_rate)
                if duration is None:
                    duration = info.frames / info.samplerate
                audio[key] = rel
            rows.append(build_row(utt_id, duration, audio, extra(utt_id) if extra else None))
    finally:
        bar.close()
    return rows


# --------------------------------------------------------------------------
# Content check: what the headers cannot tell

#: Mean square (full scale = 1.0) below which a file counts as silent: 1e-10,
#: i.e. -100 dBFS (dB re a full-scale square wave). A 16-bit step is
#: 1/32768, so the rounding noise of an otherwise empty 16-bit file has a mean
#: square of step²/12 = 7.8e-11 (-101 dBFS), and a file toggling by one step
#: everywhere 9.3e-10 (-90 dBFS): below the floor there is nothing a 16-bit
#: recording can hold beyond rounding residue (all-zero files, signals scaled to
#: nothing). Quiet but valid files are far above it: LibriMix draws speech at
#: -33 to -25 LUFS and noise at -38 to -30 LUFS, wsj0-2mix/WHAM! peak-normalise
#: their mixtures to 0.9, and recorded silence carries the recording's noise
#: floor (typically -60 to -80 dBFS); the margin is 60 dB or more.
SILENCE_FLOOR = 1e-10

#: Version of the content check's rules, recorded with :data:`SILENCE_FLOOR`
#: in the sidecar options: a change re-prepares.
CONTENT_CHECK_VERSION = 1

#: Sidecar key of the per-file cache of the content check.
CONTENT_CACHE_KEY = "content_files"

#: Columns of ``<prefix>_rejected.csv`` (:func:`rejected_path`).
REJECTED_HEADER = ("ID", "split", "file", "reason")

#: What the content check measures in one file (``mean_square`` is ``None``
#: when ``nonfinite`` > 0).
FileStats = namedtuple("FileStats", ["frames", "sample_rate", "nonfinite", "mean_square"])

#: One file that fails the check, in one mixture of one split.
BadFile = namedtuple("BadFile", ["split", "utt_id", "path", "reason"])

#: Result of :func:`check_audio_content`: the bad files (in manifest order),
#: the relative paths of every file checked, and how many were read (not cached).
ContentReport = namedtuple("ContentReport", ["bad", "files", "n_read"])


def content_check_options():
    """The content check's settings, recorded in the sidecar options.

    Example
    -------
    >>> content_check_options()
    {'version': 1, 'silence_floor': 1e-10}
    """
    return {"version": CONTENT_CHECK_VERSION, "silence_floor": SILENCE_FLOOR}


def rejected_path(save_folder, prefix):
    """Path of the list of bad files, ``<save_folder>/<prefix>_rejected.csv``.

    Example
    -------
    >>> rejected_path("/s", "wham").as_posix()
    '/s/wham_rejected.csv'
    """
    return Path(save_folder) / f"{prefix}_rejected.csv"


_SOURCE_KEY = re.compile(r"s\d+")


def is_length_key(key):
    """Whether an audio key must have the length of its mixture (sources, noise).

    Enrollment utterances (``enroll``) and REAL-M's separations (``sep1``...)
    have lengths of their own.

    Example
    -------
    >>> [is_length_key(k) for k in ("s1", "s12", "noise", "mix", "enroll", "sep1")]
    [True, True, True, False, False, False]
    """
    return key == "noise" or _SOURCE_KEY.fullmatch(key) is not None


def measure_audio(data, sample_rate):
    """Measure a signal for the content check, on the whole array.

    The mean square is one dot product (float32, as read), which also flags
    non-finite samples: a NaN or an Inf makes it non-finite, and only then are
    they counted (finite samples whose squares overflow float32 are measured
    again in float64).

    Arguments
    ---------
    data : numpy.ndarray
        ``[frames]`` or ``[frames, channels]``.
    sample_rate : int
        Its sample rate.

    Returns
    -------
    FileStats
        ``(frames, sample_rate, nonfinite, mean_square)``; ``mean_square`` is
        ``None`` when ``nonfinite`` > 0.

    Example
    -------
    >>> measure_audio(np.array([0.5, -0.5, np.inf], dtype=np.float32), 8000)
    FileStats(frames=3, sample_rate=8000, nonfinite=1, mean_square=None)
    >>> measure_audio(np.full(4, 1e30, dtype=np.float32), 8000).mean_square  # doctest: +ELLIPSIS
    1.00...e+60
    """
    flat = np.ravel(data)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are handled below
        mean_square = float(np.dot(flat, flat)) / flat.size if flat.size else 0.0
    nonfinite = 0
    if not math.isfinite(mean_square):
        nonfinite = flat.size - int(np.count_nonzero(np.isfinite(flat)))
        if nonfinite:
            mean_square = None
        else:
            wide = flat.astype(np.float64)
            mean_square = float(np.dot(wide, wide)) / flat.size
    return FileStats(int(data.shape[0]), int(sample_rate), int(nonfinite), mean_square)


def _read_audio(path):
    """``(os.stat_result, FileStats)`` of one file, read whole as float32 through one descriptor.

    Reading from the descriptor gives the file's size and modification time
    (the cache key) without a second lookup of the path, and skips soundfile's
    handling of file names; it is a little faster than ``soundfile.read(path)``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        stat = os.fstat(fd)
        with sf.SoundFile(fd, closefd=False) as audio:
            data = audio.read(dtype="float32", always_2d=False)
            rate = audio.samplerate
    finally:
        os.close(fd)
    return stat, measure_audio(data, rate)


def audio_stats(path):
    """Read a whole audio file as float32 and measure it for the content check.

    Arguments
    ---------
    path : str or Path
        Audio file.

    Returns
    -------
    FileStats
        ``(frames, sample_rate, nonfinite, mean_square)`` (see :func:`measure_audio`).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> x = np.full(800, 0.5, dtype=np.float32)
    >>> x[:3] = np.nan
    >>> sf.write(path, x, 8000, subtype="FLOAT")
    >>> audio_stats(path)
    FileStats(frames=800, sample_rate=8000, nonfinite=3, mean_square=None)
    >>> sf.write(path, np.full(800, 0.5), 8000, subtype="PCM_16")
    >>> audio_stats(path)
    FileStats(frames=800, sample_rate=8000, nonfinite=0, mean_square=0.25)
    """
    return _read_audio(path)[1]


def _dbfs(mean_square):
    """Level of a mean square in dBFS, as text (``-100``, ``-123.4``, ``-inf``)."""
    return f"{10 * math.log10(mean_square):.4g}" if mean_square > 0 else "-inf"


def file_problems(stats, floor=SILENCE_FLOOR):
    """Why one file fails the check on its own: non-finite samples or silence.

    Arguments
    ---------
    stats : FileStats
        As measured by :func:`audio_stats`.
    floor : float
        Mean square below which the file is silent (:data:`SILENCE_FLOOR`).

    Returns
    -------
    list of str
        Empty when the file passes.

    Example
    -------
    >>> file_problems(FileStats(800, 8000, 0, 0.01))
    []
    >>> file_problems(FileStats(800, 8000, 100, None))
    ['100 non-finite samples (NaN or Inf)']
    >>> file_problems(FileStats(800, 8000, 0, 0.0))
    ['silent: -inf dBFS, below the floor of -100 dBFS']
    """
    if stats.nonfinite:
        return [f"{stats.nonfinite} non-finite samples (NaN or Inf)"]
    if stats.mean_square < floor:
        return [f"silent: {_dbfs(stats.mean_square)} dBFS, below the floor of {_dbfs(floor)} dBFS"]
    return []


def row_audio(row):
    """``{key: path relative to the data folder}`` of a manifest row's audio columns.

    Example
    -------
    >>> row = build_row("a", 1.0, {"mix": "tt/mix/a.wav", "s1": "tt/s1/a.wav"})
    >>> dict(row_audio(row))
    {'mix': 'tt/mix/a.wav', 's1': 'tt/s1/a.wav'}
    """
    prefix = f"{DATA_ROOT}/"
    audio = OrderedDict()
    for column, value in row.items():
        if column.endswith("_wav") and value:
            path = str(value)
            audio[column[: -len("_wav")]] = path[len(prefix) :] if path.startswith(prefix) else path
    return audio


def row_problems(row, stats, floor=SILENCE_FLOOR):
    """Why the files of one mixture fail the check.

    Each file on its own (:func:`file_problems`), then lengths: the mixture
    must have the length its manifest ``duration`` gives (the header's, for a
    scanned corpus), and every source and the noise (:func:`is_length_key`)
    the length of the mixture.

    Arguments
    ---------
    row : dict
        Manifest row (``ID``, ``duration``, ...).
    stats : mapping
        ``{key: FileStats}``, or ``{key: str}`` (the reason) for an unreadable file.
    floor : float
        Silence floor (:data:`SILENCE_FLOOR`).

    Returns
    -------
    OrderedDict
        ``{key: [reason, ...]}`` of the bad files only.

    Example
    -------
    >>> row = {"ID": "a", "duration": 0.1}
    >>> ok = FileStats(800, 8000, 0, 0.01)
    >>> dict(row_problems(row, {"mix": ok, "s1": ok}))
    {}
    >>> dict(row_problems(row, {"mix": ok, "s1": FileStats(900, 8000, 0, 0.0)}))  # doctest: +NORMALIZE_WHITESPACE
    {'s1': ['silent: -inf dBFS, below the floor of -100 dBFS',
            'length mismatch: 900 samples, longer than its mixture (800)']}
    """
    problems = OrderedDict()
    for key, st in stats.items():
        problems[key] = [st] if isinstance(st, str) else file_problems(st, floor)
    mix = stats.get("mix")
    if isinstance(mix, FileStats):
        duration = row.get("duration")
        if duration not in (None, ""):
            expected = round(float(duration) * mix.sample_rate)
            if mix.frames != expected:
                problems["mix"].append(
                    f"length mismatch: {mix.frames} samples decoded, its manifest duration gives {expected}"
                )
        for key, st in stats.items():
            if key != "mix" and is_length_key(key) and isinstance(st, FileStats) and st.frames != mix.frames:
                longer = "longer" if st.frames > mix.frames else "shorter"
                problems[key].append(f"length mismatch: {st.frames} samples, {longer} than its mixture ({mix.frames})")
    return OrderedDict((key, reasons) for key, reasons in problems.items() if reasons)


def _cached_stats(entry, stat):
    """The FileStats of a cache entry if it matches the file's size and mtime, else ``None``."""
    if type(entry) is not list or len(entry) != 6 or entry[0] != stat.st_size or entry[1] != stat.st_mtime_ns:
        return None
    _, _, frames, rate, nonfinite, mean_square = entry
    if type(frames) is not int or type(rate) is not int or type(nonfinite) is not int:
        return None  # a hand-edited or foreign entry: read the file again
    if (mean_square is not None) if nonfinite else type(mean_square) not in (int, float):
        return None
    return FileStats(frames, rate, nonfinite, mean_square)


def _file_stats(path, rel, cache):
    """``(FileStats or reason, whether the audio was read)`` of ``path``; updates ``cache[rel]``."""
    entry = cache.get(rel)
    if entry is not None:
        try:
            stats = _cached_stats(entry, os.stat(path))
        except OSError as err:
            return f"unreadable ({_one_line(err)})", False
        if stats is not None:
            return stats, False
    try:
        stat, stats = _read_audio(path)
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        cache.pop(rel, None)
        return f"unreadable ({_one_line(err)})", True
    cache[rel] = [stat.st_size, stat.st_mtime_ns, *stats]
    return stats, True


def check_audio_content(rows, data_folder, cache=None, floor=SILENCE_FLOOR, desc="content check"):
    """Read every audio file of the manifest rows once and find the bad ones.

    A file is bad when it is unreadable, holds non-finite samples, is silent
    (mean square below ``floor``), or has the wrong length (see
    :func:`row_problems`). The files of one mixture are read together (the
    length checks compare them), each whole as float32 (:func:`audio_stats`);
    a file shared by several rows (an enrollment utterance) is read once.

    ``cache`` maps a path relative to ``data_folder`` to
    ``[size, mtime_ns, frames, sample_rate, nonfinite, mean_square]``; a file
    whose size and modification time (ns) match its entry is not read again.
    It is updated in place with the files read, so that a caller can keep it
    even when the check is interrupted.

    Arguments
    ---------
    rows : mapping
        ``{split: [manifest row, ...]}`` (rows as :func:`build_row` makes them).
    data_folder : str or Path
        Root that the rows' ``$data_root/...`` paths are relative to.
    cache : dict, optional
        Per-file cache (see above), updated in place.
    floor : float
        Silence floor (:data:`SILENCE_FLOOR`).
    desc : str
        Progress bar label.

    Returns
    -------
    ContentReport
        ``bad``: list of :class:`BadFile` (``split, utt_id, path, reason``;
        ``path`` is ``data_folder / relative path``) in manifest order, one per
        bad file of each mixture; ``files``: the relative paths checked;
        ``n_read``: how many were read (the others came from the cache).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for folder in ("mix", "s1"):
    ...     (root / folder).mkdir()
    ...     sf.write(root / folder / "a.wav", np.full(800, 0.1), 8000)
    ...     sf.write(root / folder / "b.wav", np.zeros(800), 8000)
    >>> rows = {"test": [build_row(i, 0.1, {"mix": f"mix/{i}.wav", "s1": f"s1/{i}.wav"}) for i in "ab"]}
    >>> cache = {}
    >>> report = check_audio_content(rows, root, cache)
    >>> [(b.utt_id, Path(b.path).parent.name, b.reason) for b in report.bad]  # doctest: +NORMALIZE_WHITESPACE
    [('b', 'mix', 'silent: -inf dBFS, below the floor of -100 dBFS'),
     ('b', 's1', 'silent: -inf dBFS, below the floor of -100 dBFS')]
    >>> report.n_read, check_audio_content(rows, root, cache).n_read
    (4, 0)
    """
    root = str(Path(data_folder))  # plain strings below: pathlib costs as much as a stat here
    cache = {} if cache is None else cache
    seen = {}
    bad = []
    n_read = 0
    bar = tqdm(total=sum(len(r) for r in rows.values()), desc=desc, unit="mix", leave=False, dynamic_ncols=True)
    try:
        for split, split_rows in rows.items():
            for row in split_rows:
                audio = row_audio(row)
                stats = OrderedDict()
                for key, rel in audio.items():
                    if rel not in seen:
                        seen[rel], was_read = _file_stats(os.path.join(root, rel), rel, cache)
                        n_read += was_read
                    stats[key] = seen[rel]
                for key, reasons in row_problems(row, stats, floor).items():
                    bad.append(BadFile(split, row["ID"], os.path.join(root, audio[key]), "; ".join(reasons)))
                bar.update()
    finally:
        bar.close()
    return ContentReport(bad, list(seen), n_read)


def _bad_files_message(label, bad, csv_path):
    """The one-line error of a check that found bad files."""
    files = OrderedDict()
    for item in bad:
        files.setdefault(item.path, item.reason)
    n_mix = len({(item.split, item.utt_id) for item in bad})
    shown = ", ".join(f"{path} ({reason})" for path, reason in list(files.items())[:MAX_LISTED])
    if len(files) > MAX_LISTED:
        shown += f", ... (+{len(files) - MAX_LISTED} more)"
    files_txt = f"{len(files)} audio file{'s' if len(files) > 1 else ''}"
    mix_txt = f"{n_mix} mixture{'s' if n_mix > 1 else ''}"
    return (
        f"{label}: {files_txt} of {mix_txt} fail{'' if len(files) > 1 else 's'} the content check: {shown}; "
        f"all listed in {csv_path}; fix them, or leave these mixtures out of the manifests with "
        "--skip_bad_files (a recipe: --skip_bad_files=True, or skip_bad_files: True in its yaml)"
    )


def _read_record(path):
    """The JSON object in ``path``, or ``{}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def sidecar_text(record):
    """JSON text of a sidecar: indented, the per-file cache one file per line.

    Example
    -------
    >>> print(sidecar_text({"version": 1, CONTENT_CACHE_KEY: {"a.wav": [1, 2, 800, 8000, 0, 0.25]}}), end="")
    {
      "version": 1,
      "content_files": {
        "a.wav": [1, 2, 800, 8000, 0, 0.25]
      }
    }
    """
    record = dict(record)
    files = record.pop(CONTENT_CACHE_KEY, None)
    text = json.dumps(record, indent=2, sort_keys=True)
    if files is None:
        return text + "\n"
    lines = [f"    {json.dumps(rel)}: {json.dumps(entry)}" for rel, entry in sorted(files.items())]
    body = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"
    head = text[:-2] + ",\n" if record else "{\n"
    return f'{head}  "{CONTENT_CACHE_KEY}": {body}\n}}\n'


def _keep_cache(sidecar, cache):
    """Store the per-file cache in the sidecar, leaving the rest of it as it is.

    Used when a preparation stops before writing manifests (bad files, an
    interruption): what the sidecar vouched for is still on disk unchanged,
    and the next run reads only the files that are new or changed.
    """
    record = _read_record(sidecar)
    record[CONTENT_CACHE_KEY] = cache
    write_text_atomic(sidecar, sidecar_text(record))


def _apply_content_check(save_folder, prefix, rows, data_folder, skip_bad_files, label):
    """Run :func:`check_audio_content` for :func:`prepare_manifests`.

    Returns ``(rows kept, cache, {split: mixtures left out})``; raises
    :class:`PrepError` on bad files unless ``skip_bad_files``.
    """
    sidecar = sidecar_path(save_folder, prefix)
    old = _read_record(sidecar).get(CONTENT_CACHE_KEY)
    cache = dict(old) if isinstance(old, dict) else {}
    report = None
    try:
        report = check_audio_content(rows, data_folder, cache, desc=f"{label} content check")
    finally:
        if report is None and cache != (old or {}):
            _keep_cache(sidecar, cache)  # interrupted: keep what was read
    cache = {rel: cache[rel] for rel in report.files if rel in cache}
    csv_path = rejected_path(save_folder, prefix)
    if report.bad:
        write_csv_atomic(
            csv_path,
            REJECTED_HEADER,
            [{"ID": b.utt_id, "split": b.split, "file": b.path, "reason": b.reason} for b in report.bad],
        )
    elif csv_path.exists():
        csv_path.unlink()  # a list from an earlier check would name files that are fine now
    logger.info(
        "%s content check: %d files (%d read, %d from the cache), %d bad",
        label,
        len(report.files),
        report.n_read,
        len(report.files) - report.n_read,
        len({b.path for b in report.bad}),
    )
    if report.bad and not skip_bad_files:
        _keep_cache(sidecar, cache)
        raise PrepError(_bad_files_message(label, report.bad, csv_path))
    left_out = {split: {b.utt_id for b in report.bad if b.split == split} for split in rows}
    kept = {split: [r for r in split_rows if r["ID"] not in left_out[split]] for split, split_rows in rows.items()}
    if report.bad:
        logger.warning(
            "%s: %d mixtures left out (skip_bad_files), their bad files are listed in %s",
            label,
            sum(len(ids) for ids in left_out.values()),
            csv_path,
        )
    for split, split_rows in kept.items():
        if not split_rows:
            _keep_cache(sidecar, cache)
            raise PrepError(
                f"{label}: every mixture of the {split} split fails the content check "
                f"({len(left_out[split])} mixtures, listed in {csv_path}); the manifest would be empty"
            )
    return kept, cache, {split: len(ids) for split, ids in left_out.items()}


def sidecar_path(save_folder, prefix):
    """Path of the options sidecar ``<save_folder>/<prefix>_prep.json``.

    Example
    -------
    >>> sidecar_path("/s", "wham").as_posix()
    '/s/wham_prep.json'
    """
    return Path(save_folder) / f"{prefix}_prep.json"


def _csv_summary(path):
    """(header, number of data rows) of a CSV, or (None, 0) if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            n_rows = sum(1 for row in reader if row)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None, 0
    return header, n_rows


def manifests_ready(save_folder, prefix, options, manifests, header):
    """Whether an earlier preparation with the same options can be reused.

    True when the sidecar records the same options and every manifest exists
    with the expected header and the recorded (non-zero) number of rows.

    Arguments
    ---------
    save_folder : str or Path
        Folder of the manifests and sidecar.
    prefix : str
        Sidecar name prefix.
    options : dict
        JSON-serialisable preparation options.
    manifests : mapping
        ``{split: path}`` of the manifests.
    header : sequence of str or mapping
        Expected header, or ``{split: header}`` when the manifests differ
        (e.g. mixture-only training and supervised test manifests).

    Returns
    -------
    bool

    Example
    -------
    >>> import tempfile
    >>> manifests_ready(tempfile.mkdtemp(), "x", {}, {"train": "none.csv"}, ["ID"])
    False
    """
    try:
        with open(sidecar_path(save_folder, prefix), encoding="utf-8") as fh:
            recorded = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    if recorded.get("version") != PREP_FORMAT_VERSION or recorded.get("options") != options:
        return False
    rows = recorded.get("rows", {})
    for split, path in manifests.items():
        found_header, n_rows = _csv_summary(path)
        expected = _split_header(header, split)
        if found_header != expected or n_rows == 0 or rows.get(split) != n_rows:
            return False
    return True


def _split_header(header, split):
    """The header of one split: ``header[split]`` for a mapping, else ``header``."""
    if isinstance(header, dict):
        return list(header[split])
    return list(header)


def prepare_manifests(
    save_folder,
    prefix,
    options,
    manifests,
    header,
    scan,
    label,
    skip_prep=False,
    extra_record=None,
    data_folder=None,
    skip_bad_files=False,
):
    """Skip-or-prepare driver shared by the dataset modules.

    With ``data_folder``, the rows that ``scan`` returns go through the
    content check (:func:`check_audio_content`): every audio file is read once
    (with a progress bar), and a file that is unreadable, holds non-finite
    samples, is silent (:data:`SILENCE_FLOOR`) or whose length differs from
    its mixture's is bad. Every bad file is listed in ``<prefix>_rejected.csv``
    (:func:`rejected_path`; columns :data:`REJECTED_HEADER`, one line per bad
    file of a mixture; a check that finds none removes it). Then, by default,
    a one-line :class:`PrepError` names the first ones and how many there are;
    with ``skip_bad_files``, their mixtures are left out of the manifests (the
    sidecar counts them per split under ``"rejected"``). ``skip_bad_files``
    and the check's settings (:func:`content_check_options`) are recorded in
    the sidecar options, so changing them prepares again.

    The sidecar keeps, under :data:`CONTENT_CACHE_KEY`, each file's measures
    keyed by its path relative to ``data_folder``, its size and modification
    time (one file a line, see :func:`sidecar_text`), also after a check that
    failed or was interrupted: a preparation done again reads only the files
    that are new or changed. A preparation with unchanged options and intact
    manifests is skipped without reading anything, so after fixing files,
    delete one manifest (or switch ``skip_bad_files``) to have them checked
    again.

    Arguments
    ---------
    save_folder : str or Path
        Output folder (created if needed).
    prefix : str
        Sidecar prefix, e.g. ``"wham"``.
    options : dict
        JSON-serialisable options recorded in the sidecar.
    manifests : mapping
        ``{split: path}``.
    header : sequence of str or mapping
        Manifest header, or ``{split: header}``.
    scan : callable
        ``scan() -> {split: rows}``; it reads the corpus and raises
        :class:`PrepError` on bad input, before anything is written.
    label : str
        Corpus name for log lines.
    skip_prep : bool
        Return the paths without checking or writing anything.
    extra_record : dict, optional
        Further JSON-serialisable entries of the sidecar (e.g.
        ``{"supervised": {...}}``); ``scan`` may fill it in while it runs.
    data_folder : str or Path, optional
        Root that the rows' ``$data_root/...`` paths are relative to; enables
        the content check (without it no audio is read, as in the example).
    skip_bad_files : bool
        Leave the mixtures with bad files out of the manifests instead of
        raising :class:`PrepError`.

    Returns
    -------
    dict
        ``{split: str(path)}``.

    Example
    -------
    >>> import tempfile
    >>> save = tempfile.mkdtemp()
    >>> man = {"train": f"{save}/x_train.csv"}
    >>> scan = lambda: {"train": [{"ID": "a", "duration": 1.0}]}
    >>> out = prepare_manifests(save, "x", {"o": 1}, man, ["ID", "duration"], scan, "X")
    >>> sorted(p.name for p in Path(save).iterdir())
    ['x_prep.json', 'x_train.csv']
    """
    paths = {split: str(path) for split, path in manifests.items()}
    if skip_prep:
        return paths
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    if data_folder is not None:
        options = {**options, "skip_bad_files": bool(skip_bad_files), "content_check": content_check_options()}
    if manifests_ready(save_folder, prefix, options, manifests, header):
        logger.info("%s manifests already prepared in %s, skipping", label, save_folder)
        return paths
    rows = scan()
    record = dict(extra_record or {})
    if data_folder is not None:
        rows, cache, left_out = _apply_content_check(save_folder, prefix, rows, data_folder, skip_bad_files, label)
        record.update(rejected=left_out, **{CONTENT_CACHE_KEY: cache})
    # Invalidate first: a crash below must never leave a sidecar vouching for
    # a mix of old and new manifests.
    sidecar = sidecar_path(save_folder, prefix)
    if sidecar.exists():
        sidecar.unlink()
    counts = {}
    for split, path in manifests.items():
        counts[split] = write_csv_atomic(path, _split_header(header, split), rows[split])
        logger.info("%s %s: %d mixtures -> %s", label, split, counts[split], path)
    record.update(version=PREP_FORMAT_VERSION, options=options, rows=counts)
    write_text_atomic(sidecar, sidecar_text(record))
    return paths


def read_metadata_ids(path, column="mixture_ID"):
    """Ids listed in a metadata CSV, or ``None`` if the file does not exist.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = path.write_text("mixture_ID,length\\na_b,8000\\n")
    >>> read_metadata_ids(path)
    ['a_b']
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [row[column] for row in csv.DictReader(fh) if row.get(column)]
    except (OSError, csv.Error, KeyError, UnicodeDecodeError) as err:
        logger.warning("could not read metadata %s: %s", path, _one_line(err))
        return None


def run_cli(parser, func, argv=None):
    """Parse arguments, call ``func(**vars(args))``, report :class:`PrepError`.

    On :class:`PrepError` prints ``error: <message>`` (one line, no traceback)
    on stderr and returns 2. On success prints ``key: value`` for each item of
    a returned dict (the manifest paths) and returns 0.

    Arguments
    ---------
    parser : argparse.ArgumentParser
        Parser whose destinations are ``func``'s keyword arguments.
    func : callable
        The preparation function.
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--x", type=int, default=1)
    >>> def fail(x):
    ...     raise PrepError(f"bad x={x}")
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     status = run_cli(parser, fail, ["--x", "3"])
    >>> status, err.getvalue()
    (2, 'error: bad x=3\\n')
    """
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = func(**vars(args))
    except PrepError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


# --------------------------------------------------------------------------
# Helpers of the simulators (Vox2Mix, Aishell2Mix) and of the newer modules

#: Manifest split key -> wsj0-style split folder name.
WSJ_SPLITS = OrderedDict([("train", "tr"), ("valid", "cv"), ("test", "tt")])

#: Sidecar key recording, per manifest split, whether it has reference sources.
SUPERVISED_KEY = "supervised"

#: Glob pattern of the temporary files :func:`write_wav_atomic` leaves behind
#: when a process is killed between creating and renaming them.
TEMP_WAV_GLOB = ".*.wav.*.tmp"


def list_error(path, lineno, message):
    """A :class:`PrepError` naming a line of a list file.

    Example
    -------
    >>> str(list_error("lists/tt_cfg.lst", 3, "expected 7 fields, found 2"))
    'lists/tt_cfg.lst:3: expected 7 fields, found 2'
    """
    return PrepError(f"{path}:{lineno}: {_one_line(message)}")


def select_splits(splits, allowed, name="splits"):
    """Validate a sequence of split names (no duplicates, known names).

    Arguments
    ---------
    splits : str or sequence of str
        Requested split names (a single string is one split).
    allowed : sequence of str
        Known split names, in canonical order.
    name : str
        Option name, used in messages.

    Returns
    -------
    tuple of str
        The requested splits in canonical order.

    Example
    -------
    >>> select_splits(["tt", "tr"], ("tr", "cv", "tt"))
    ('tr', 'tt')
    >>> select_splits("cv", ("tr", "cv", "tt"))
    ('cv',)
    >>> select_splits(["dev"], ("tr", "cv", "tt"))
    Traceback (most recent call last):
    ...
    modules.files.PrepError: invalid splits=['dev'] (choose from 'tr', 'cv', 'tt')
    """
    if isinstance(splits, str):
        splits = [splits]
    splits = list(splits)
    allowed_txt = ", ".join(repr(a) for a in allowed)
    if not splits or any(s not in allowed for s in splits) or len(set(splits)) != len(splits):
        raise PrepError(f"invalid {name}={splits!r} (choose from {allowed_txt})")
    return tuple(a for a in allowed if a in splits)


def rel_to_root(path, data_folder):
    """Path of ``path`` relative to ``data_folder`` (with ``..`` if outside).

    Manifest paths are ``$data_root/<this>``; a file outside the data folder
    (a simulation folder elsewhere, say) is reached through ``..`` and stays
    valid as long as both folders move together.

    Example
    -------
    >>> rel_to_root("/data/Vox/sim/tt/mix/a.wav", "/data/Vox")
    'sim/tt/mix/a.wav'
    >>> rel_to_root("/scratch/sim/a.wav", "/data/Vox")
    '../../scratch/sim/a.wav'
    """
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(data_folder))
    return rel.replace(os.sep, "/")


def is_supervised(csv_path):
    """Whether a manifest has reference sources (an ``s1_wav`` column).

    Mixture-only manifests (unsupervised training data, real recordings) have
    no ``s1_wav`` column; their sidecar also records ``"supervised": false``
    for that split (key :data:`SUPERVISED_KEY`).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = path.write_text("ID,duration,mix_wav,mix_wav_format,mix_wav_opts\\n")
    >>> is_supervised(path)
    False
    """
    header, _ = _csv_summary(csv_path)
    if header is None:
        raise PrepError(f"manifest not found or unreadable: {csv_path}")
    return "s1_wav" in header


def file_digest(path):
    """SHA-1 of a file's bytes (recorded in sidecars so an edited list re-prepares).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.lst"
    >>> _ = path.write_text("x")
    >>> file_digest(path)
    '11f6ad8ec52a2984abaafd7c3b516503785c2072'
    """
    import hashlib

    digest = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise PrepError(f"cannot read {path} ({_one_line(err)})") from None
    return digest.hexdigest()


def read_wav(path, sample_rate=None):
    """Read a mono audio file as float64, turning failures into :class:`PrepError`.

    Arguments
    ---------
    path : str or Path
        Audio file (any format libsndfile reads: WAV, FLAC, ...).
    sample_rate : int, optional
        Expected sample rate; a different one raises :class:`PrepError`.

    Returns
    -------
    tuple
        ``(signal, sample_rate)``.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> sf.write(path, np.full(80, 0.5), 8000, subtype="PCM_16")
    >>> x, sr = read_wav(path, 8000)
    >>> x.shape, sr, float(x[0])
    ((80,), 8000, 0.5)
    """
    info = read_wav_info(path, sample_rate)
    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=False)
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise PrepError(f"unreadable WAV file: {path} ({_one_line(err)})") from None
    if len(data) != info.frames or len(data) == 0:
        raise PrepError(f"unreadable WAV file: {path} (truncated audio data)")
    return data, rate


def wav_is_complete(path, frames, sample_rate, subtype=None):
    """Whether ``path`` is a readable mono WAV with exactly ``frames`` samples.

    Used by the simulators to decide, from headers only, whether an output of
    an earlier (possibly interrupted) run can be kept. libsndfile reports the
    frames actually present, so a truncated file never passes.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> write_wav_atomic(path, np.zeros(800), 8000)
    >>> wav_is_complete(path, 800, 8000), wav_is_complete(path, 801, 8000)
    (True, False)
    >>> _ = path.write_bytes(path.read_bytes()[:500])  # truncated
    >>> wav_is_complete(path, 800, 8000)
    False
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError):
        return False
    return (
        info.frames == int(frames)
        and info.samplerate == int(sample_rate)
        and info.channels == 1
        and (subtype is None or info.subtype == subtype)
    )


def remove_stale_temps(folders):
    """Delete temporary WAV files left in ``folders`` by an interrupted writer.

    Returns
    -------
    int
        Number of files removed.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".a.wav.x1y2.tmp").write_bytes(b"RIFF")
    >>> _ = (folder / "b.wav").write_bytes(b"RIFF")
    >>> remove_stale_temps([folder]), sorted(p.name for p in folder.iterdir())
    (1, ['b.wav'])
    """
    removed = 0
    for name in folders:
        folder = Path(name)
        if not folder.is_dir():
            continue
        for tmp in folder.glob(TEMP_WAV_GLOB):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def run_simulation(items, is_done, make, desc, unit="mix"):
    """Simulate the items that are not done yet, with a progress bar.

    Arguments
    ---------
    items : sequence
        Work items (e.g. parsed list lines), in list order.
    is_done : callable
        ``is_done(item) -> bool``: whether the outputs of an earlier run are
        complete (checked from headers; see :func:`wav_is_complete`).
    make : callable
        ``make(item)`` writes the outputs (atomically, with
        :func:`write_wav_atomic`).
    desc : str
        Progress bar label.
    unit : str
        Progress bar unit.

    Returns
    -------
    tuple of int
        ``(n_made, n_kept)``.

    Example
    -------
    >>> made = []
    >>> run_simulation([1, 2, 3], lambda i: i == 2, made.append, "demo")
    (2, 1)
    >>> made
    [1, 3]
    """
    todo = [item for item in items if not is_done(item)]
    n_kept = len(items) - len(todo)
    if n_kept and todo:
        logger.info("%s: resuming, %d of %d already simulated", desc, n_kept, len(items))
    if todo:
        bar = tqdm(todo, desc=desc, unit=unit, dynamic_ncols=True)
        try:
            for item in bar:
                make(item)
        finally:
            bar.close()
    return len(todo), n_kept


__all__ = [
    "CONTENT_CACHE_KEY",
    "CONTENT_CHECK_VERSION",
    "DATA_ROOT",
    "REJECTED_HEADER",
    "SILENCE_FLOOR",
    "SUPERVISED_KEY",
    "TASKS",
    "TEMP_WAV_GLOB",
    "WSJ_SPLITS",
    "BadFile",
    "ContentReport",
    "FileStats",
    "PrepError",
    "audio_columns",
    "audio_stats",
    "build_row",
    "check_audio_content",
    "check_choice",
    "check_layout",
    "content_check_options",
    "data_root_path",
    "file_digest",
    "file_problems",
    "is_length_key",
    "is_supervised",
    "list_error",
    "manifest_header",
    "manifests_ready",
    "measure_audio",
    "prepare_manifests",
    "read_metadata_ids",
    "read_wav",
    "read_wav_info",
    "rejected_path",
    "rel_to_root",
    "remove_stale_temps",
    "row_audio",
    "row_problems",
    "run_cli",
    "run_simulation",
    "scan_split",
    "select_splits",
    "sidecar_path",
    "sidecar_text",
    "task_folders",
    "wav_is_complete",
    "write_csv_atomic",
    "write_text_atomic",
    "write_wav_atomic",
]
