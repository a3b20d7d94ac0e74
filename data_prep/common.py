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
* atomic CSV writing (:func:`write_csv_atomic`), the ``<prefix>_prep.json``
  sidecar (:func:`manifests_ready`) and the skip-or-prepare driver
  (:func:`prepare_manifests`);
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
import os
import sys
from collections import OrderedDict
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from modules.files import PrepError, atomic_path, write_csv_atomic, write_text_atomic, write_wav_atomic  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

#: Version of the manifest/sidecar format; bump it to force re-preparation.
PREP_FORMAT_VERSION = 1

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
        raise PrepError(
            f"wrong sample rate in {path}: found {info.samplerate} Hz, "
            f"expected {int(sample_rate)} Hz"
        )
    if info.channels != 1:
        raise PrepError(
            f"expected a mono WAV file: {path} has {info.channels} channels"
        )
    return info


def _join_rel(*parts):
    """Join relative path parts with '/', skipping empty ones."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _listing(folder, limit=8):
    """Short listing of the entries of a folder, for error messages."""
    try:
        names = sorted(
            p.name for p in Path(folder).iterdir() if not p.name.startswith(".")
        )
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_layout(
    data_folder, rel_prefix, splits, folders, label, task=None, n_spks=None
):
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
            pattern = _join_rel(
                "<data_folder>", rel_prefix, "{" + ",".join(splits) + "}", folder
            )
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
                        t
                        for t in TASKS
                        if all(
                            (split_dir / f).is_dir()
                            for f in task_folders(t, n_spks).values()
                        )
                    ]
                    msg += f" (tasks possible with this data: {', '.join(avail) or 'none'})"
            else:
                msg += f"; {ancestor} contains: {_listing(ancestor)}"
            raise PrepError(msg)


def _list_wavs(folder):
    """Sorted stems of the ``.wav`` files of a folder."""
    with os.scandir(folder) as it:
        return sorted(
            e.name[:-4]
            for e in it
            if e.name.endswith(".wav") and not e.name.startswith(".")
        )


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
    hold a file of the same name, with the same sample rate and length.

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
    bar = tqdm(
        ids, desc=desc or str(rel_split), unit="mix", leave=False, dynamic_ncols=True
    )
    try:
        for utt_id in bar:
            name = f"{utt_id}.wav"
            audio = OrderedDict()
            frames = None
            for key, folder in folders.items():
                rel = _join_rel(rel_split, folder, name)
                info = read_wav_info(data_folder / rel, sample_rate)
                if frames is None:
                    frames = info.frames
                    duration = info.frames / info.samplerate
                elif info.frames != frames:
                    raise PrepError(
                        f"length mismatch: {data_folder / rel} has {info.frames} samples, "
                        f"its mixture has {frames}"
                    )
                audio[key] = rel
            rows.append(
                build_row(utt_id, duration, audio, extra(utt_id) if extra else None)
            )
    finally:
        bar.close()
    return rows


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
    if (
        recorded.get("version") != PREP_FORMAT_VERSION
        or recorded.get("options") != options
    ):
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
):
    """Skip-or-prepare driver shared by the dataset modules.

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
    if manifests_ready(save_folder, prefix, options, manifests, header):
        logger.info("%s manifests already prepared in %s, skipping", label, save_folder)
        return paths
    rows = scan()
    # Invalidate first: a crash below must never leave a sidecar vouching for
    # a mix of old and new manifests.
    sidecar = sidecar_path(save_folder, prefix)
    if sidecar.exists():
        sidecar.unlink()
    counts = {}
    for split, path in manifests.items():
        counts[split] = write_csv_atomic(path, _split_header(header, split), rows[split])
        logger.info("%s %s: %d mixtures -> %s", label, split, counts[split], path)
    record = dict(extra_record or {})
    record.update(version=PREP_FORMAT_VERSION, options=options, rows=counts)
    write_text_atomic(sidecar, json.dumps(record, indent=2, sort_keys=True) + "\n")
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
    "DATA_ROOT",
    "SUPERVISED_KEY",
    "TASKS",
    "TEMP_WAV_GLOB",
    "WSJ_SPLITS",
    "PrepError",
    "audio_columns",
    "build_row",
    "check_choice",
    "check_layout",
    "data_root_path",
    "file_digest",
    "is_supervised",
    "list_error",
    "manifest_header",
    "manifests_ready",
    "prepare_manifests",
    "read_metadata_ids",
    "read_wav",
    "read_wav_info",
    "rel_to_root",
    "remove_stale_temps",
    "run_cli",
    "run_simulation",
    "scan_split",
    "select_splits",
    "sidecar_path",
    "task_folders",
    "wav_is_complete",
    "write_csv_atomic",
    "write_text_atomic",
    "write_wav_atomic",
]
