"""Noise manifests for MUSAN (noise part) and the 100 Nonspeech Sounds, split by file.

SADDEL's paper trains on WSJ0-mix with MUSAN noise and tests on unseen noise,
among which the 100 Nonspeech Sounds (G. Hu). The two corpora are plain
folders of noise recordings:

* **MUSAN** (``corpus="musan"``): ``musan/noise/{free-sound,sound-bible}/*.wav``,
  16 kHz, 930 files in all, each folder also holding the text files
  ``ANNOTATIONS`` and ``LICENSE`` (not audio, ignored, as is anything but
  ``.wav``). ``data_folder`` may be ``musan/``, ``musan/noise/`` or the
  folder holding ``musan/`` (:func:`find_musan_noise`).
* **100 Nonspeech Sounds** (``corpus="nonspeech"``): ``n1.wav`` ... ``n100.wav``
  in one folder; ``data_folder`` is that folder or the one holding it
  (:func:`find_nonspeech`). Other files are ignored; the rate is read from
  the files.

**The split.** Neither corpus comes with one, so the files are split into
disjoint ``train`` / ``valid`` / ``test`` sets by :func:`noise_split`, fixed
by ``seed`` (default :data:`DEFAULT_SEED` = 0) and ``fractions`` (train,
valid, test; defaults :data:`DEFAULT_FRACTIONS`: MUSAN 0.8 / 0.1 / 0.1,
100 Nonspeech 0 / 0 / 1, all files in ``test``, the corpus being test-only in
the paper). The files are ordered by a hash of the seed and their path
relative to the corpus root (``free-sound/noise-free-sound-0000.wav``,
``n7.wav``), so the split does not depend on where the corpus lives or on the
order files are listed in, nor on NumPy's random streams; test files come
first in that order, then valid, then train, so a file is in one split only.
A test-condition simulator gets the same lists from
:func:`noise_split(corpus_files(...), seed, fractions) <noise_split>`.

**Manifests.** One CSV per non-empty split,
``<save_folder>/{musan_noise,nonspeech}_{train,valid,test}.csv``, with the
columns ``ID, duration, noise_wav, noise_wav_format, noise_wav_opts,
sample_rate, corpus, subset``: the file stem, its duration in seconds, its
path as ``$data_root/<path relative to data_folder>`` (SpeechBrain's
``replacements={"data_root": data_folder}`` resolves it), the file's own
sample rate, ``musan`` or ``nonspeech``, and the MUSAN subset
(``free-sound``/``sound-bible``; ``nonspeech`` for the other corpus). The
sidecar ``<prefix>_prep.json`` records the options (seed, fractions, recipe
rate) and the split counts. The content check of the other corpora applies to
every file (unreadable, non-finite samples, silence; ``skip_bad_files`` leaves
bad files out; there is no mixture to compare lengths with).

**Sample rates.** ``sample_rate`` is the recipe's rate (8000 or 16000). Files
at another rate are not an error and are not relabelled: the manifest keeps
each file's own rate, and the preparation says, in one log line per rate, that
the files will be resampled on load. Two readers exist:

* :func:`read_noise` (what a simulator calls): reads a file (or a manifest
  row) and resamples it to the recipe's rate with :func:`modules.audio.resample`;
* the on-the-fly mixing of the recipes (``noise_folder`` / ``--noise_folder``,
  :func:`modules.data.mixing.folder_pool`) reads a *folder* and refuses files
  at another rate than the recipe's ("resample the folder first"). With
  ``export_folder`` the preparation writes each split's files there, at the
  recipe's rate (16-bit PCM, resumable, skipped when complete):
  ``<export_folder>/<split>/<path relative to the corpus root>`` (files of
  an earlier export no longer in that split are deleted); point
  ``noise_folder`` at ``<export_folder>/train`` so that training never sees
  valid or test noise.

Command line::

    python -m data_prep.noise_corpora --corpus musan --data_folder /data/musan --save_folder results/prep \\
        [--sample_rate 8000] [--fractions 0.8 0.1 0.1] [--seed 0] [--subsets free-sound sound-bible] \\
        [--export_folder results/noise8k] [--skip_bad_files]
    python -m data_prep.noise_corpora --corpus nonspeech --data_folder /data/Nonspeech --save_folder results/prep
"""

import argparse
import csv
import hashlib
import logging
import math
import operator
import re
import sys
from collections import OrderedDict
from pathlib import Path

from data_prep.common import (
    DATA_ROOT,
    PrepError,
    _listing,
    build_row,
    check_choice,
    manifest_header,
    prepare_manifests,
    read_wav,
    read_wav_info,
    remove_stale_temps,
    run_cli,
    select_splits,
)
from data_prep.enrollment import materialise_enrollment

logger = logging.getLogger(__name__)

#: Manifest splits, in the order of the ``fractions`` tuples.
NOISE_SPLITS = ("train", "valid", "test")
CORPORA = ("musan", "nonspeech")
LABELS = {"musan": "MUSAN noise", "nonspeech": "100 Nonspeech Sounds"}
PREFIXES = {"musan": "musan_noise", "nonspeech": "nonspeech"}
#: Default (train, valid, test) fractions of each corpus.
DEFAULT_FRACTIONS = {"musan": (0.8, 0.1, 0.1), "nonspeech": (0.0, 0.0, 1.0)}
DEFAULT_SEED = 0
MUSAN_SUBSETS = ("free-sound", "sound-bible")
SAMPLE_RATES = (8000, 16000)
#: Columns after the ``noise_wav`` triple.
EXTRA_COLUMNS = ("sample_rate", "corpus", "subset")
#: How far from 1 the fractions may add up (rounding of user input).
FRACTION_TOLERANCE = 1e-6

_NONSPEECH_NAME = re.compile(r"n(\d+)\.wav", re.IGNORECASE)


def noise_manifest_paths(save_folder, corpus="musan", splits=NOISE_SPLITS):
    """Paths of the noise manifests of a corpus (the requested splits).

    Example
    -------
    >>> {k: Path(v).name for k, v in noise_manifest_paths("/s", "nonspeech", ("test",)).items()}
    {'test': 'nonspeech_test.csv'}
    """
    corpus = check_choice("corpus", corpus, CORPORA)
    return OrderedDict((s, Path(save_folder) / f"{PREFIXES[corpus]}_{s}.csv") for s in NOISE_SPLITS if s in splits)


def check_fractions(fractions):
    """Validate ``(train, valid, test)`` fractions: three finite numbers >= 0 adding up to 1.

    Arguments
    ---------
    fractions : sequence of float
        The proportions of the files in train, valid and test.

    Returns
    -------
    tuple of float

    Example
    -------
    >>> check_fractions([0.8, 0.1, 0.1])
    (0.8, 0.1, 0.1)
    >>> check_fractions((0.5, 0.5, 0.5))
    Traceback (most recent call last):
    ...
    modules.files.PrepError: invalid fractions=(0.5, 0.5, 0.5) (train, valid, test: three numbers >= 0 adding up to 1)
    """
    error = PrepError(f"invalid fractions={fractions!r} (train, valid, test: three numbers >= 0 adding up to 1)")
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise error from None
    if len(values) != 3 or not all(math.isfinite(f) and f >= 0 for f in values):
        raise error
    if abs(sum(values) - 1.0) > FRACTION_TOLERANCE:
        raise error
    return values


def split_counts(n_files, fractions):
    """How many files each split gets: largest remainders, at least one per non-zero fraction.

    ``n_files * fraction`` rounded down, the files left over going one each to
    the splits with the largest remainders (ties: test, then valid, then
    train); then a split with a non-zero fraction but no file takes one from
    the largest split.

    Arguments
    ---------
    n_files : int
        Number of files.
    fractions : sequence of float
        ``(train, valid, test)`` (see :func:`check_fractions`).

    Returns
    -------
    tuple of int
        ``(n_train, n_valid, n_test)``, adding up to ``n_files``.

    Raises
    ------
    PrepError
        Fewer files than splits with a non-zero fraction.

    Example
    -------
    >>> split_counts(930, (0.8, 0.1, 0.1)), split_counts(10, (0.8, 0.1, 0.1))
    ((744, 93, 93), (8, 1, 1))
    >>> split_counts(4, (0.9, 0.05, 0.05)), split_counts(100, (0, 0, 1))
    ((2, 1, 1), (0, 0, 100))
    """
    fractions = check_fractions(fractions)
    wanted = sum(f > 0 for f in fractions)
    if n_files < wanted:
        raise PrepError(f"{n_files} files cannot fill {wanted} splits (fractions {list(fractions)})")
    exact = [n_files * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), -i))
    for i in by_remainder[: n_files - sum(counts)]:
        counts[i] += 1
    for i in (2, 1, 0):
        if fractions[i] > 0 and counts[i] == 0:
            largest = max(range(3), key=lambda j: counts[j])
            counts[largest] -= 1
            counts[i] += 1
    return tuple(counts)


def check_seed(seed):
    """The seed as a plain ``int``; anything but an integer is a :class:`PrepError`.

    Example
    -------
    >>> check_seed(3)
    3
    >>> check_seed(0.5)
    Traceback (most recent call last):
    ...
    modules.files.PrepError: invalid seed=0.5 (an integer)
    """
    if isinstance(seed, bool):
        raise PrepError(f"invalid seed={seed!r} (an integer)")
    try:
        return operator.index(seed)
    except TypeError:
        raise PrepError(f"invalid seed={seed!r} (an integer)") from None


def _order_key(seed, name):
    """Position of a file in the seed's order: SHA-1 of ``"<seed>:<name>"``, then the name."""
    return hashlib.sha1(f"{int(seed)}:{name}".encode()).hexdigest(), name


def noise_split(files, seed=DEFAULT_SEED, fractions=DEFAULT_FRACTIONS["musan"]):
    """Split noise files into disjoint ``train`` / ``valid`` / ``test`` lists, fixed by a seed.

    The rule: each file is named by ``str(file)`` with ``/`` separators
    (give paths relative to the corpus root, as :func:`corpus_files` returns
    them, so that the split does not depend on where the corpus lives); the
    files are ordered by the SHA-1 of ``"<seed>:<name>"`` (no random
    generator: the same on every machine and NumPy version, whatever order
    the files come in); :func:`split_counts` gives how many each split gets;
    ``test`` takes the first files of that order, ``valid`` the next, ``train``
    the rest. Every file lands in exactly one split: no test file is ever in
    train. A file's place in the order depends only on its name and the seed,
    so a corpus with files added or missing keeps most of its split, but only
    the same list of files gives the same split.

    Arguments
    ---------
    files : iterable of str or Path
        The noise files (no duplicates).
    seed : int
        Seed of the order (default 0).
    fractions : sequence of float
        ``(train, valid, test)`` proportions, adding up to 1 (default
        ``(0.8, 0.1, 0.1)``; ``(0, 0, 1)`` puts everything in test).

    Returns
    -------
    OrderedDict
        ``{"train": [...], "valid": [...], "test": [...]}``, each list sorted
        by name, holding the items of ``files`` as given.

    Raises
    ------
    PrepError
        Duplicate files, invalid fractions, too few files for the non-zero
        fractions, a seed that is not an integer.

    Example
    -------
    >>> files = [f"free-sound/noise-free-sound-{i:04d}.wav" for i in range(10)]
    >>> split = noise_split(files, seed=0, fractions=(0.8, 0.1, 0.1))
    >>> {k: len(v) for k, v in split.items()}
    {'train': 8, 'valid': 1, 'test': 1}
    >>> split == noise_split(files[::-1], seed=0, fractions=(0.8, 0.1, 0.1))
    True
    >>> sorted(sum(split.values(), [])) == sorted(files)
    True
    >>> noise_split(["n1.wav", "n2.wav"], fractions=(0, 0, 1))["test"]
    ['n1.wav', 'n2.wav']
    """
    seed = check_seed(seed)
    items = list(files)
    names = [str(f).replace("\\", "/") for f in items]
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        raise PrepError(f"duplicate noise files: {', '.join(dups[:5])}")
    counts = split_counts(len(items), fractions)
    order = sorted(range(len(items)), key=lambda i: _order_key(seed, names[i]))
    _, n_valid, n_test = counts
    picks = {"test": order[:n_test], "valid": order[n_test : n_test + n_valid], "train": order[n_test + n_valid :]}
    return OrderedDict(
        (split, [items[i] for i in sorted(picks[split], key=names.__getitem__)]) for split in NOISE_SPLITS
    )


def find_musan_noise(data_folder, subsets=MUSAN_SUBSETS):
    """Path from ``data_folder`` to MUSAN's ``noise`` folder.

    Tried in order: ``data_folder`` itself (``musan/noise``), ``noise`` below
    it (``musan/``), ``musan/noise`` below it (the folder holding ``musan``);
    the first that holds one of ``subsets`` wins.

    Arguments
    ---------
    data_folder : str or Path
        Where the user points.
    subsets : sequence of str
        The noise subsets looked for.

    Returns
    -------
    str
        The relative path (``""`` when ``data_folder`` is the noise folder).

    Raises
    ------
    PrepError
        ``data_folder`` missing, or no subset folder at any of those places.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "musan" / "noise" / "free-sound").mkdir(parents=True)
    >>> [find_musan_noise(root / p) for p in ("", "musan", "musan/noise")]
    ['musan/noise', 'noise', '']
    """
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABELS['musan']} data_folder not found: {folder}")
    for rel in ("", "noise", "musan/noise"):
        if any((folder / rel / subset).is_dir() for subset in subsets):
            return rel
    raise PrepError(
        f"{LABELS['musan']} folders not found under {folder} (expected noise/{{{','.join(subsets)}}} in it, "
        f"or data_folder=<...>/musan/noise); it contains: {_listing(folder)}"
    )


def find_nonspeech(data_folder):
    """Path from ``data_folder`` to the folder of ``n1.wav`` ... ``n100.wav``.

    ``data_folder`` itself, or its one subfolder holding ``n<k>.wav`` files.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "Nonspeech").mkdir()
    >>> _ = (root / "Nonspeech" / "n1.wav").write_bytes(b"")
    >>> find_nonspeech(root), find_nonspeech(root / "Nonspeech")
    ('Nonspeech', '')
    """
    folder = Path(data_folder)
    label = LABELS["nonspeech"]
    if not folder.is_dir():
        raise PrepError(f"{label} data_folder not found: {folder}")

    def holds(path):
        """Whether ``path`` holds a numbered 100 Nonspeech file."""
        return any(p.is_file() and _NONSPEECH_NAME.fullmatch(p.name) for p in path.iterdir())

    if holds(folder):
        return ""
    found = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and holds(p)]
    if len(found) == 1:
        return found[0]
    if found:
        raise PrepError(
            f"{label}: several folders under {folder} hold n<k>.wav files ({', '.join(found)}): point at one"
        )
    raise PrepError(
        f"{label} files n1.wav ... not found in {folder} or a folder below it; it contains: {_listing(folder)}"
    )


def corpus_files(data_folder, corpus="musan", subsets=MUSAN_SUBSETS):
    """The audio files of a noise corpus, as paths relative to its root.

    MUSAN: ``<subset>/<name>.wav`` below the ``noise`` folder (every ``.wav``
    file of each subset folder; ``ANNOTATIONS``, ``LICENSE`` and any other
    file are left out). 100 Nonspeech: ``n<k>.wav``, in number order (other
    files left out; a warning if the numbers are not 1 ... K).

    Arguments
    ---------
    data_folder : str or Path
        Where the user points (see :func:`find_musan_noise`, :func:`find_nonspeech`).
    corpus : str
        ``"musan"`` or ``"nonspeech"``.
    subsets : sequence of str
        MUSAN noise subsets to read (each must be there).

    Returns
    -------
    tuple
        ``(root, files)``: the corpus root relative to ``data_folder``
        (``""`` if it is ``data_folder``) and the relative paths of its files.

    Raises
    ------
    PrepError
        Missing folder or subset, a subset without ``.wav`` files, no file.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("n2.wav", "n1.wav", "n10.wav", "readme.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> corpus_files(root, "nonspeech")
    ('', ['n1.wav', 'n2.wav', 'n10.wav'])
    """
    corpus = check_choice("corpus", corpus, CORPORA)
    folder = Path(data_folder)
    if corpus == "nonspeech":
        rel = find_nonspeech(folder)
        numbered = sorted(
            (int(m.group(1)), p.name)
            for p in (folder / rel).iterdir()
            if p.is_file() and (m := _NONSPEECH_NAME.fullmatch(p.name))
        )
        numbers = [k for k, _ in numbered]
        if numbers != list(range(1, len(numbers) + 1)):
            logger.warning(
                "%s: %d files in %s, but not n1.wav ... n%d.wav (a partial copy?)",
                LABELS[corpus],
                len(numbers),
                folder / rel,
                len(numbers),
            )
        return rel, [name for _, name in numbered]
    subsets = select_splits(subsets, MUSAN_SUBSETS, name="subsets")
    rel = find_musan_noise(folder, subsets)
    files = []
    for subset in subsets:
        sub = folder / rel / subset
        if not sub.is_dir():
            raise PrepError(
                f"{LABELS[corpus]} folder not found: {sub} (expected <musan>/noise/{{{','.join(subsets)}}}; "
                f"set subsets to the ones there); {folder / rel} contains: {_listing(folder / rel)}"
            )
        wavs = sorted(p.name for p in sub.iterdir() if p.is_file() and p.suffix.lower() == ".wav")
        wavs = [name for name in wavs if not name.startswith(".")]
        if not wavs:
            raise PrepError(f"no .wav files in {sub}; it contains: {_listing(sub)}")
        files += [f"{subset}/{name}" for name in wavs]
    return rel, files


def read_noise(source, sample_rate, data_folder=None):
    """Read a noise file at the recipe's rate: the reader the manifests are meant for.

    The file is read as float64 and, when its rate differs from
    ``sample_rate`` (16 kHz MUSAN, the 100 Nonspeech files for an 8 kHz
    recipe), resampled with :func:`modules.audio.resample` (polyphase).

    Arguments
    ---------
    source : str, Path or mapping
        A file, or a manifest row (its ``noise_wav``; ``$data_root`` replaced
        by ``data_folder`` if it is still there).
    sample_rate : int
        Rate wanted.
    data_folder : str or Path, optional
        Replaces ``$data_root`` in a row read with a plain CSV reader.

    Returns
    -------
    numpy.ndarray
        The signal at ``sample_rate``.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> tmp = Path(tempfile.mkdtemp())
    >>> sf.write(tmp / "n1.wav", np.full(2000, 0.1), 20000)
    >>> read_noise(tmp / "n1.wav", 8000).shape
    (800,)
    >>> read_noise({"noise_wav": "$data_root/n1.wav"}, 16000, data_folder=tmp).shape
    (1600,)
    """
    from modules.audio import resample

    path = source["noise_wav"] if hasattr(source, "keys") else source
    if data_folder is not None and str(path).startswith(DATA_ROOT):
        path = Path(data_folder) / str(path)[len(DATA_ROOT) :].lstrip("/")
    data, rate = read_wav(path)
    return data if rate == int(sample_rate) else resample(data, rate, int(sample_rate))


def _say_rates(label, rates, sample_rate):
    """Log what happens to files whose rate differs from the recipe's."""
    for rate, count in sorted(rates.items()):
        if rate == sample_rate:
            continue
        log = logger.warning if rate < sample_rate else logger.info
        log(
            "%s: %d files at %d Hz, the recipe at %d Hz: the manifests record each file's rate and the noise is "
            "resampled to %d Hz on load (data_prep.noise_corpora.read_noise)%s; noise_folder "
            "(modules.data.mixing.folder_pool) takes files at the recipe's rate only: prepare with export_folder",
            label,
            count,
            rate,
            sample_rate,
            sample_rate,
            ", from a narrower band" if rate < sample_rate else "",
        )


def prepare_noise_corpus(
    data_folder,
    save_folder,
    corpus="musan",
    sample_rate=8000,
    fractions=None,
    seed=DEFAULT_SEED,
    subsets=MUSAN_SUBSETS,
    export_folder=None,
    skip_prep=False,
    skip_bad_files=False,
):
    """Write the noise manifests ``<prefix>_{train,valid,test}.csv`` of MUSAN or 100 Nonspeech.

    See the module docstring for the layouts, the split rule and the columns.

    Arguments
    ---------
    data_folder : str or Path
        MUSAN: ``musan/``, ``musan/noise/`` or the folder holding ``musan/``;
        100 Nonspeech: the folder of ``n<k>.wav`` or the one holding it.
        Manifest paths are relative to it.
    save_folder : str or Path
        Where the manifests and ``<prefix>_prep.json`` are written
        (prefix ``musan_noise`` or ``nonspeech``).
    corpus : str
        ``"musan"`` or ``"nonspeech"``.
    sample_rate : int
        The recipe's rate, 8000 or 16000: files at another rate are recorded
        with their own and resampled on load (:func:`read_noise`), or by
        ``export_folder``.
    fractions : sequence of float, optional
        ``(train, valid, test)`` proportions of the files, adding up to 1
        (default :data:`DEFAULT_FRACTIONS`: MUSAN 0.8/0.1/0.1, 100 Nonspeech
        0/0/1). A split with fraction 0 gets no manifest.
    seed : int
        Seed of the split (:func:`noise_split`).
    subsets : sequence of str
        MUSAN noise subsets to read (default both); ignored for 100 Nonspeech.
    export_folder : str or Path, optional
        Also write each split's files at ``sample_rate`` (16-bit PCM) to
        ``<export_folder>/<split>/<path relative to the corpus root>``, for
        ``noise_folder`` (:func:`modules.data.mixing.folder_pool`); files
        already there and complete are kept.
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the files that fail the content check
        (unreadable, non-finite samples, silent) instead of raising; they are
        listed in ``<save_folder>/<prefix>_rejected.csv``. The split is made
        before the check, so a file left out never moves another.

    Returns
    -------
    dict
        ``{split: path}`` of the splits with a non-zero fraction.

    Raises
    ------
    data_prep.common.PrepError
        Invalid option or fractions, missing folder or subset, no audio, too
        few files for the fractions, unreadable or non-mono WAV, bad audio
        content (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_musan
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_musan(tmp, n_train=8, n_valid=1, n_test=1)
    >>> paths = prepare_noise_corpus(root, f"{tmp}/prep", "musan", sample_rate=8000)
    >>> {k: len(Path(v).read_text().splitlines()) - 1 for k, v in paths.items()}
    {'train': 8, 'valid': 1, 'test': 1}
    >>> print(Path(paths["test"]).read_text().splitlines()[0])
    ID,duration,noise_wav,noise_wav_format,noise_wav_opts,sample_rate,corpus,subset
    >>> Path(paths["test"]).read_text().splitlines()[1].split(",")[2]  # doctest: +ELLIPSIS
    '$data_root/noise/...wav'
    """
    corpus = check_choice("corpus", corpus, CORPORA)
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    fractions = check_fractions(DEFAULT_FRACTIONS[corpus] if fractions is None else fractions)
    seed = check_seed(seed)
    subsets = select_splits(subsets, MUSAN_SUBSETS, name="subsets") if corpus == "musan" else ()
    label, prefix = LABELS[corpus], PREFIXES[corpus]
    splits = tuple(s for s, f in zip(NOISE_SPLITS, fractions) if f > 0)
    manifests = noise_manifest_paths(save_folder, corpus, splits)
    header = manifest_header(["noise"], EXTRA_COLUMNS)
    options = {
        "dataset": prefix,
        "data_folder": str(Path(data_folder).resolve()),
        "sample_rate": sample_rate,
        "fractions": list(fractions),
        "seed": seed,
    }
    if subsets:
        options["subsets"] = list(subsets)
    record = {"split": {}, "file_rates": {}}

    def scan():
        """Lists the corpus, splits it and returns the manifest rows of every non-empty split."""
        root, files = corpus_files(data_folder, corpus, subsets or MUSAN_SUBSETS)
        split = noise_split(files, seed, fractions)
        rates, rows = {}, {}
        for name in splits:
            rows[name] = []
            for rel in split[name]:
                path = Path(data_folder) / root / rel
                info = read_wav_info(path)
                rates[info.samplerate] = rates.get(info.samplerate, 0) + 1
                subset = rel.split("/")[0] if corpus == "musan" else corpus
                extra = {"sample_rate": info.samplerate, "corpus": corpus, "subset": subset}
                rows[name].append(
                    build_row(
                        Path(rel).stem,
                        info.frames / info.samplerate,
                        {"noise": f"{root}/{rel}" if root else rel},
                        extra,
                    )
                )
        record["split"] = {name: len(split[name]) for name in NOISE_SPLITS}
        record["file_rates"] = {str(rate): count for rate, count in sorted(rates.items())}
        _say_rates(label, rates, sample_rate)
        return rows

    paths = prepare_manifests(
        save_folder,
        prefix,
        options,
        manifests,
        header,
        scan,
        label,
        skip_prep=skip_prep,
        extra_record=record,
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )
    if export_folder is not None and not skip_prep:
        export_noise(paths, data_folder, export_folder, sample_rate)
    return paths


def export_noise(manifests, data_folder, export_folder, sample_rate):
    """Write the files of noise manifests at ``sample_rate``, one folder per split.

    ``<export_folder>/<split>/<path relative to the corpus root>`` (for MUSAN
    ``<subset>/<name>.wav``), 16-bit PCM; a file already there with the
    expected length and rate is kept, so an interrupted export continues.
    Any other ``.wav`` file in a split folder (left by an export with another
    seed or fractions) is deleted, so that a split folder never holds noise
    of another split. Each split folder then serves as ``noise_folder``
    (:func:`modules.data.mixing.folder_pool`).

    Arguments
    ---------
    manifests : mapping
        ``{split: manifest path}`` as :func:`prepare_noise_corpus` returns.
    data_folder : str or Path
        The data folder of the manifests (``$data_root``).
    export_folder : str or Path
        Where the split folders are written.
    sample_rate : int
        Rate of the copies.

    Returns
    -------
    dict
        ``{split: str(folder)}``.

    Example
    -------
    >>> import tempfile, soundfile as sf
    >>> from data_prep.mini import make_mini_nonspeech
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_nonspeech(tmp, n_train=1, n_valid=1, n_test=1)
    >>> paths = prepare_noise_corpus(root, f"{tmp}/prep", "nonspeech")
    >>> out = export_noise(paths, root, f"{tmp}/noise8k", 8000)
    >>> sorted(p.name for p in Path(out["test"]).iterdir()), sf.info(Path(out["test"]) / "n1.wav").samplerate
    (['n1.wav', 'n2.wav', 'n3.wav'], 8000)
    """
    out = {}
    for split, manifest in manifests.items():
        folder = Path(export_folder) / split
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        wanted = set()
        for row in rows:
            src = Path(str(row["noise_wav"]).replace(DATA_ROOT, str(data_folder), 1))
            dst = folder / _corpus_relative(src, row)
            materialise_enrollment(src, dst, sample_rate)
            wanted.add(dst)
        stale = [p for p in folder.rglob("*.wav") if p not in wanted]
        for path in stale:
            path.unlink()
        remove_stale_temps({p.parent for p in wanted})
        logger.info(
            "%s: %d noise files at %d Hz in %s%s",
            split,
            len(rows),
            sample_rate,
            folder,
            f" ({len(stale)} files of an earlier export removed)" if stale else "",
        )
        out[split] = str(folder)
    return out


def _corpus_relative(path, row):
    """Path of a file below its corpus root: ``<subset>/<name>`` for MUSAN, ``<name>`` otherwise."""
    path = Path(path)
    return Path(path.parent.name, path.name) if row.get("corpus") == "musan" else Path(path.name)


def build_parser():
    """Command-line parser of ``python -m data_prep.noise_corpora``.

    Example
    -------
    >>> argv = ["--data_folder", "d", "--save_folder", "s", "--fractions", "0.7", "0.2", "0.1"]
    >>> args = build_parser().parse_args(argv)
    >>> args.corpus, args.fractions, args.seed
    ('musan', [0.7, 0.2, 0.1], 0)
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.noise_corpora",
        description="Write noise manifests (train/valid/test split of the files) of MUSAN or 100 Nonspeech Sounds.",
    )
    parser.add_argument("--corpus", default="musan", choices=CORPORA)
    parser.add_argument(
        "--data_folder",
        required=True,
        help="musan: musan/, musan/noise/ or the folder holding musan/; nonspeech: the folder of n1.wav ...",
    )
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--sample_rate", type=int, default=8000, choices=SAMPLE_RATES, help="the recipe's rate")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VALID", "TEST"),
        help="proportions of the files (default: musan 0.8 0.1 0.1, nonspeech 0 0 1)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the split")
    parser.add_argument("--subsets", nargs="+", default=list(MUSAN_SUBSETS), choices=MUSAN_SUBSETS)
    parser.add_argument("--export_folder", default=None, help="also write each split's files at sample_rate here")
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out files with bad audio (unreadable, non-finite, silent), listed in "
        "<save_folder>/<prefix>_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.noise_corpora``; returns the exit status."""
    return run_cli(build_parser(), prepare_noise_corpus, argv)


if __name__ == "__main__":
    sys.exit(main())
