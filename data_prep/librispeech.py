"""A small reader of LibriSpeech (OpenSLR 12): the utterances of one subset.

The corpus layout, as the OpenSLR archives unpack::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

with 16 kHz mono FLAC files and one transcript file per chapter, a line per
utterance: ``<speaker>-<chapter>-<utt> WORDS IN UPPER CASE``. The subsets are
:data:`SUBSETS` (``test-clean``, ``dev-clean``, ``train-clean-100`` ...).

``data_folder`` may be the ``LibriSpeech`` folder (holding the subsets), the
folder holding ``LibriSpeech``, or the subset folder itself
(:func:`find_librispeech_subset`). :func:`list_librispeech` lists the
utterances of a subset, sorted by id, as :class:`Utterance` records (speaker,
chapter, utterance id, path, duration read from the file's header,
transcript); ``min_duration`` keeps the utterances at least that long (SADDEL's
Librispeech-mix takes 6 s ones, :mod:`data_prep.saddel_conditions`). A subset
that is missing, holds no FLAC files, or a file whose name does not match its
speaker and chapter folders is a :class:`~data_prep.common.PrepError` with a
one-line message; an utterance without a transcript line (a partial copy, such
as the enrollment-only LibriSpeech of the mini LibriMix) gets ``None``.
"""

import logging
import re
from collections import namedtuple
from pathlib import Path

from data_prep.common import (
    PrepError,
    _listing,
    build_row,
    manifest_header,
    prepare_manifests,
    read_wav_info,
    rel_to_root,
)
from data_prep.enrollment import search_roots

logger = logging.getLogger(__name__)

LABEL = "LibriSpeech"
#: The subsets of the OpenSLR 12 release.
SUBSETS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
)
DEFAULT_SUBSET = "test-clean"
#: LibriSpeech's rate.
SAMPLE_RATE = 16000

_UTT_NAME = re.compile(r"(\d+)-(\d+)-(\d+)\.flac")

#: One utterance: ``speaker`` and ``chapter`` (str, as in the folder names),
#: ``utt_id`` (``<speaker>-<chapter>-<utt>``), ``path`` (Path), ``duration``
#: (seconds, from the header), ``transcript`` (str, or None when not listed),
#: ``frames`` and ``sample_rate`` (from the header).
Utterance = namedtuple(
    "Utterance", "speaker chapter utt_id path duration transcript frames sample_rate", defaults=(None, None)
)


def find_librispeech_subset(data_folder, subset=DEFAULT_SUBSET):
    """The folder of a LibriSpeech subset.

    Tried in order: ``data_folder`` itself when it is named ``subset``,
    ``<data_folder>/<subset>`` and ``<data_folder>/LibriSpeech/<subset>``.

    Arguments
    ---------
    data_folder : str or Path
        ``LibriSpeech/``, the folder holding it, or the subset folder.
    subset : str
        Subset name, e.g. ``"test-clean"``.

    Returns
    -------
    Path

    Raises
    ------
    PrepError
        ``data_folder`` missing, or the subset at none of those places (the
        message lists the subsets that are there).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "LibriSpeech" / "test-clean").mkdir(parents=True)
    >>> [find_librispeech_subset(p).relative_to(root).as_posix() for p in (root, root / "LibriSpeech")]
    ['LibriSpeech/test-clean', 'LibriSpeech/test-clean']
    >>> find_librispeech_subset(root, "dev-clean")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: LibriSpeech subset 'dev-clean' not found in ... (subsets there: test-clean)
    """
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {folder}")
    if folder.name == subset:
        return folder
    for base in (folder, folder / "LibriSpeech"):
        if (base / subset).is_dir():
            return base / subset
    found = [
        p.name
        for base in (folder, folder / "LibriSpeech")
        if base.is_dir()
        for p in sorted(base.iterdir())
        if p.is_dir() and (p.name in SUBSETS or any(q.is_dir() and q.name.isdigit() for q in p.iterdir()))
    ]
    there = f"subsets there: {', '.join(found)}" if found else f"it contains: {_listing(folder)}"
    raise PrepError(
        f"{LABEL} subset {subset!r} not found in {folder} (expected <data_folder>/{subset}/<speaker>/<chapter>/"
        f"*.flac, or data_folder=<...>/LibriSpeech) ({there})"
    )


def read_transcripts(path):
    """``{utterance id: transcript}`` of a ``<speaker>-<chapter>.trans.txt`` file.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "84-121123.trans.txt"
    >>> _ = path.write_text("84-121123-0000 GO DO YOU HEAR\\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\\n")
    >>> read_transcripts(path)["84-121123-0001"]
    'BUT IN LESS THAN FIVE MINUTES'
    """
    out = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PrepError(f"unreadable {LABEL} transcript file: {path} ({err})") from None
    for line in lines:
        utt_id, _, text = line.strip().partition(" ")
        if utt_id:
            out[utt_id] = text.strip()
    return out


def list_librispeech(data_folder, subset=DEFAULT_SUBSET, min_duration=None):
    """The utterances of a LibriSpeech subset, sorted by id.

    Arguments
    ---------
    data_folder : str or Path
        ``LibriSpeech/``, the folder holding it, or the subset folder
        (:func:`find_librispeech_subset`).
    subset : str
        Subset name (default ``"test-clean"``).
    min_duration : float, optional
        Keep only the utterances at least this long (seconds).

    Returns
    -------
    list of Utterance

    Raises
    ------
    PrepError
        Missing subset, no ``.flac`` file in it, a file name that does not
        match its ``<speaker>/<chapter>`` folders, an unreadable file.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librispeech
    >>> root = make_mini_librispeech(tempfile.mkdtemp(), n_train=1, n_valid=1, n_test=5)
    >>> utts = list_librispeech(root, "test-clean")
    >>> len(utts), utts[0].path.suffix, utts[0].transcript.isupper()
    (5, '.flac', True)
    >>> len(list_librispeech(root, min_duration=6.0)) < len(utts)
    True
    """
    folder = find_librispeech_subset(data_folder, subset)
    utterances, untranscribed = [], 0
    for chapter_dir in sorted(p for p in folder.glob("*/*") if p.is_dir()):
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        flacs = sorted(p for p in chapter_dir.iterdir() if p.suffix == ".flac" and not p.name.startswith("."))
        if not flacs:
            continue
        trans_path = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        transcripts = read_transcripts(trans_path) if trans_path.is_file() else {}
        for path in flacs:
            match = _UTT_NAME.fullmatch(path.name)
            if match is None or match.group(1, 2) != (speaker, chapter):
                raise PrepError(
                    f"unexpected {LABEL} file name: {path} (expected {speaker}-{chapter}-<utt>.flac in "
                    f"<subset>/{speaker}/{chapter})"
                )
            info = read_wav_info(path)
            duration = info.frames / info.samplerate
            if min_duration is not None and duration < min_duration:
                continue
            utt_id = path.stem
            transcript = transcripts.get(utt_id)
            untranscribed += transcript is None
            utterances.append(
                Utterance(speaker, chapter, utt_id, path, duration, transcript, info.frames, info.samplerate)
            )
    if not any(folder.glob("*/*/*.flac")):
        raise PrepError(
            f"no .flac files in {folder} (expected {folder}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac); "
            f"it contains: {_listing(folder)}"
        )
    if untranscribed:
        logger.warning("%s %s: %d utterances without a transcript line", LABEL, subset, untranscribed)
    return sorted(utterances, key=lambda u: u.utt_id)


#: Columns of an utterance-pool manifest (:func:`prepare_librispeech_pool`).
POOL_HEADER = manifest_header(["utt"], extra=["spk_id", "frames", "file_rate"])
POOL_PREFIX = "librispeech_pool"


def librispeech_pool_path(save_folder, subset):
    """``<save_folder>/librispeech_pool_<subset>.csv``: the manifest :func:`prepare_librispeech_pool` writes.

    Example
    -------
    >>> librispeech_pool_path("prep", "dev-clean").as_posix()
    'prep/librispeech_pool_dev-clean.csv'
    """
    return Path(save_folder) / f"{POOL_PREFIX}_{subset}.csv"


def _find_subset(roots, subset):
    """The folder of ``subset`` under the first of ``roots`` that has it, or ``None``."""
    for root in roots:
        try:
            return find_librispeech_subset(root, subset)
        except PrepError:
            continue
    return None


def prepare_librispeech_pool(
    save_folder, data_folder, roots, subsets=("train-clean-100", "dev-clean"), skip_prep=False
):
    """Utterance-pool manifests of LibriSpeech subsets: one row per utterance, the whole utterance.

    The pool that Mixture-Remix draws its source-domain utterances from
    (:func:`modules.data.remix.build_remix_datasets` with ``remix_pool:
    librispeech``: the DPCCN paper's "A-L-3Mix = Aishell2Mix + LibriSpeech").
    Columns :data:`POOL_HEADER`: ``ID`` (the utterance id), ``duration``
    (seconds), ``utt_wav`` (``$data_root/...`` relative to ``data_folder``, with
    ``..`` when LibriSpeech lies outside it), ``spk_id``, ``frames`` and
    ``file_rate`` (the file's own rate: LibriSpeech's 16 kHz; the reader
    resamples to the recipe's rate). One manifest per subset
    (:func:`librispeech_pool_path`) and the sidecar ``librispeech_pool_prep.json``.

    Arguments
    ---------
    save_folder : str or Path
    data_folder : str or Path
        What the manifests' ``$data_root`` stands for (the recipe's ``data_folder``).
    roots : str or Path or list
        Where to look for the subsets (each tried as ``LibriSpeech/``, its
        parent or the subset folder, :func:`find_librispeech_subset`).
    subsets : sequence of str
    skip_prep : bool

    Returns
    -------
    dict
        ``{subset: manifest path}``.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librispeech
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_librispeech(tmp, n_train=2, n_valid=3, n_test=1)
    >>> out = prepare_librispeech_pool(f"{tmp}/prep", tmp, [root], subsets=["dev-clean"])
    >>> open(out["dev-clean"]).read().splitlines()[1].split(",")[2]  # doctest: +ELLIPSIS
    '$data_root/LibriSpeech/dev-clean/...flac'
    """
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    manifests = {subset: librispeech_pool_path(save_folder, subset) for subset in subsets}
    folders = {}
    if not skip_prep:
        for subset in subsets:
            folders[subset] = _find_subset(roots, subset)
            if folders[subset] is None:
                where = ", ".join(str(r) for r in roots) or "(no folder given)"
                raise PrepError(
                    f"{LABEL} subset {subset!r} (the Mixture-Remix utterance pool) not found under {where}: set "
                    "librispeech_folder, or remix_pool: librimix to draw from the Libri2Mix sources"
                )
    options = {"subsets": list(subsets), "folders": {k: str(v.resolve()) for k, v in folders.items()}}

    def scan():
        """One row per utterance of each subset."""
        rows = {}
        for subset, folder in folders.items():
            rows[subset] = [
                build_row(
                    u.utt_id,
                    u.duration,
                    {"utt": rel_to_root(u.path, data_folder)},
                    {"spk_id": u.speaker, "frames": u.frames, "file_rate": u.sample_rate},
                )
                | {"utt_wav_format": u.path.suffix.lstrip(".")}
                for u in list_librispeech(folder, subset)
            ]
        return rows

    return prepare_manifests(
        save_folder, POOL_PREFIX, options, manifests, POOL_HEADER, scan, LABEL, skip_prep=skip_prep
    )


def prepare_remix_sources(
    prepare_librimix,
    save_folder,
    data_folder,
    librispeech_folder=None,
    subsets=("train-clean-100", "dev-clean"),
    n_spks=2,
    sample_rate=8000,
    mode="min",
    remix_pool="librispeech",
    skip_prep=False,
):
    """The Mixture-Remix recipes' preparation: the Libri2Mix manifests, then the LibriSpeech utterance pools.

    ``prepare_librimix`` (a ``!name:data_prep.librimix.prepare_librimix``
    with its arguments) runs first; with ``remix_pool="librispeech"`` the
    pools of ``subsets`` follow (:func:`prepare_librispeech_pool`), found
    under ``librispeech_folder`` or, when it is ``None``, beside
    ``Libri{n}Mix`` where the LibriMix generator puts LibriSpeech (the
    folder holding it, and ``data_folder`` itself), as the enrollments are.
    ``remix_pool="librimix"`` (the Libri2Mix sources) prepares no pool.

    Returns
    -------
    dict
        The Libri2Mix manifests and ``{subset: pool manifest}``.
    """
    if remix_pool not in ("librispeech", "librimix"):
        raise PrepError(f"remix_pool must be 'librispeech' or 'librimix', got {remix_pool!r}")
    paths = dict(prepare_librimix() or {})
    if remix_pool == "librimix":
        return paths
    roots = []
    if not skip_prep:
        if librispeech_folder is not None:
            if not Path(librispeech_folder).is_dir():
                raise PrepError(f"{LABEL} folder not found: {librispeech_folder}")
            roots = search_roots(librispeech_folder)
        else:
            from data_prep.librimix import find_librimix_prefix

            prefix = find_librimix_prefix(data_folder, n_spks, sample_rate, mode)
            storage = (Path(data_folder).resolve() / prefix).parents[2]  # the folder holding Libri{n}Mix
            roots = search_roots(data_folder, storage)
    paths.update(prepare_librispeech_pool(save_folder, data_folder, roots, subsets, skip_prep=skip_prep))
    return paths


__all__ = [
    "DEFAULT_SUBSET",
    "POOL_HEADER",
    "SAMPLE_RATE",
    "SUBSETS",
    "Utterance",
    "find_librispeech_subset",
    "librispeech_pool_path",
    "list_librispeech",
    "prepare_librispeech_pool",
    "prepare_remix_sources",
    "read_transcripts",
]
