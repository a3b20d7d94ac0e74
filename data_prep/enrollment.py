"""Enrollment utterances for target-speaker extraction (sDPCCN and friends).

A target-speaker manifest has, besides ``mix_wav`` and the sources, an audio
column ``enroll_wav`` (with ``enroll_wav_format`` and ``enroll_wav_opts``):
another utterance of the target speaker, who is always the speaker of ``s1``.
The enrollment is never the utterance that was mixed.

Two sources of enrollment utterances, used by :mod:`data_prep.librimix` and
:mod:`data_prep.aishell2mix`:

* **Published aux lists** (``*_aux.lst`` of jyhan03/icassp22-dataset), one line
  per mixture: ``<mixture name>[.wav]<TAB><path of the enrollment utterance>``,
  e.g. ``1089-134686-0000_121-127105-0031<TAB>../test-clean/1089/134686/1089-134686-0009.flac``.
  The listed paths are relative to the generating machine; they are found by
  :func:`resolve_listed_path`, which matches their trailing components under
  the corpus roots given (the longest suffix that exists wins), and a
  ``.flac`` listed where only a ``.wav`` exists (the authors converted
  LibriSpeech to 8 kHz WAV) is accepted. The utterances (LibriSpeech and
  Aishell-1 are 16 kHz) are copied at the corpus rate as PCM_16 WAV under the
  data folder (:func:`materialise_enrollment`), so that the manifest stays
  relative to ``$data_root`` and every audio column has the mixture's rate.
* **Drawn from the corpus** when no list is given (:func:`choose_enrollment`):
  for every mixture, one utterance of the same speaker other than the mixed
  one, uniformly at random with a generator seeded by ``(seed, mixture id)``
  (so the choice of a mixture does not depend on the other mixtures).
  A mixture whose target speaker has no other utterance is left out with a
  warning.
"""

import logging
import zlib
from collections import OrderedDict, namedtuple
from pathlib import Path

import numpy as np

from data_prep.common import (
    PrepError,
    audio_columns,
    data_root_path,
    list_error,
    read_wav,
    read_wav_info,
    wav_is_complete,
    write_wav_atomic,
)

logger = logging.getLogger(__name__)

#: Manifest key of the enrollment signal (columns ``enroll_wav``, ...).
ENROLL_KEY = "enroll"

#: One entry of an aux list: the listed path and the line it is on.
AuxEntry = namedtuple("AuxEntry", ["listed", "path", "lineno"])

#: One candidate enrollment utterance: utterance id and path relative to the
#: data folder (or an absolute path of a file still to be copied).
Candidate = namedtuple("Candidate", ["utt_id", "ref"])


def read_aux_list(path):
    """Read an aux list: ``{mixture id: AuxEntry}`` in file order.

    A ``.wav`` suffix of the mixture name is dropped (the Aishell2Mix lists
    have it, the Libri2Mix lists do not). Fields are separated by a tab or
    any whitespace; empty lines are skipped.

    Arguments
    ---------
    path : str or Path
        The list file.

    Returns
    -------
    OrderedDict

    Raises
    ------
    PrepError
        Missing file, or a malformed line (naming the line number).

    Example
    -------
    >>> import tempfile
    >>> lst = Path(tempfile.mkdtemp()) / "tt_aux.lst"
    >>> _ = lst.write_text("a_b_1.5.wav\\t../test/S1/x.wav\\n\\nc_d_0.2.wav\\t../test/S2/y.wav\\n")
    >>> aux = read_aux_list(lst)
    >>> list(aux), aux["c_d_0.2"].listed, aux["c_d_0.2"].lineno
    (['a_b_1.5', 'c_d_0.2'], '../test/S2/y.wav', 3)
    >>> _ = lst.write_text("a_b_1.5.wav ../x.wav extra\\n")
    >>> read_aux_list(lst)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: .../tt_aux.lst:1: expected '<mixture><TAB><enrollment path>', found 3 fields
    """
    path = Path(path)
    if not path.is_file():
        raise PrepError(f"aux list not found: {path}")
    entries = OrderedDict()
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PrepError(f"cannot read aux list {path} ({err})") from None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise list_error(path, lineno, f"expected '<mixture><TAB><enrollment path>', found {len(fields)} fields")
        name, listed = fields
        mix_id = name[:-4] if name.endswith(".wav") else name
        if mix_id in entries and entries[mix_id].listed != listed:
            raise list_error(
                path,
                lineno,
                f"mixture {mix_id} listed twice with different enrollments (first on line {entries[mix_id].lineno})",
            )
        entries.setdefault(mix_id, AuxEntry(listed, str(path), lineno))
    if not entries:
        raise PrepError(f"aux list is empty: {path}")
    return entries


def resolve_listed_path(listed, roots, min_parts=2):
    """Find a file named in a list (a path from another machine) under ``roots``.

    Leading ``/``, ``./`` and ``../`` are dropped, then the longest trailing
    part of the path (at least ``min_parts`` components) that exists under one
    of the roots is taken. ``.flac`` and ``.wav`` stand in for each other.

    Arguments
    ---------
    listed : str
        Path as written in the list.
    roots : sequence of str or Path
        Folders to search, in order of preference.
    min_parts : int
        Fewest trailing components a match must have (guards against matching
        a bare file name in the wrong folder).

    Returns
    -------
    Path or None

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "data_aishell" / "wav" / "test" / "S0764").mkdir(parents=True)
    >>> _ = (root / "data_aishell" / "wav" / "test" / "S0764" / "a.wav").write_bytes(b"")
    >>> resolve_listed_path("/data_aishell/wav/test/S0764/a.flac", [root]).name
    'a.wav'
    >>> resolve_listed_path("../test/S0764/a.wav", [root]) is None  # not under root itself
    True
    >>> found = resolve_listed_path("../test/S0764/a.wav", search_roots(root))
    >>> found.relative_to(root).as_posix()
    'data_aishell/wav/test/S0764/a.wav'
    """
    parts = [p for p in str(listed).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        return None
    stem = parts[-1].rsplit(".", 1)
    names = [parts[-1]]
    if len(stem) == 2 and stem[1].lower() in ("flac", "wav"):
        names.append(f"{stem[0]}.{'wav' if stem[1].lower() == 'flac' else 'flac'}")
    roots = [Path(r) for r in roots if r is not None]
    for start in range(0, max(len(parts) - min_parts + 1, 1)):
        head = parts[start:-1]
        for root in roots:
            folder = root.joinpath(*head) if head else root
            if not folder.is_dir():
                continue
            for name in names:
                candidate = folder / name
                if candidate.is_file():
                    return candidate
    return None


def search_roots(*folders):
    """Candidate search roots: each folder, then its usual sub-roots.

    The sub-roots are ``data_aishell/wav``, ``wav`` and ``LibriSpeech``
    (Aishell-1 and LibriSpeech layouts); only existing folders are kept.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "LibriSpeech").mkdir()
    >>> [p.relative_to(root).as_posix() for p in search_roots(root)]
    ['.', 'LibriSpeech']
    """
    found = []
    for name in folders:
        if name is None:
            continue
        folder = Path(name)
        for sub in ("", "data_aishell/wav", "wav", "data_aishell", "LibriSpeech"):
            path = folder / sub if sub else folder
            if path.is_dir() and path not in found:
                found.append(path)
    return found


def _enroll_rng(seed, mix_id):
    return np.random.default_rng([int(seed), zlib.crc32(str(mix_id).encode())])


def choose_enrollment(targets, candidates, seed=0):
    """Draw an enrollment utterance for each target, deterministically by seed.

    Arguments
    ---------
    targets : iterable of tuple
        ``(mixture id, speaker id, excluded utterance ids)``; the excluded
        utterances (those mixed in that mixture) are never chosen.
    candidates : mapping
        ``{speaker id: [Candidate, ...]}``; duplicates of an utterance id are
        ignored after the first.
    seed : int
        Seed; the choice for a mixture depends only on ``(seed, mixture id)``
        and on its candidates.

    Returns
    -------
    tuple
        ``({mixture id: Candidate}, [mixture ids without any candidate])``.

    Example
    -------
    >>> cands = {"84": [Candidate("84-1-0001", "a.wav"), Candidate("84-1-0002", "b.wav")]}
    >>> chosen, missing = choose_enrollment(
    ...     [("84-1-0001_9-2-0003", "84", {"84-1-0001", "9-2-0003"}),
    ...      ("9-2-0003_84-1-0002", "9", {"9-2-0003", "84-1-0002"})], cands)
    >>> chosen["84-1-0001_9-2-0003"].ref, missing
    ('b.wav', ['9-2-0003_84-1-0002'])
    """
    pools = {}
    for speaker, cands in candidates.items():
        seen, pool = set(), []
        for cand in sorted(cands, key=lambda c: c.utt_id):
            if cand.utt_id not in seen:
                seen.add(cand.utt_id)
                pool.append(cand)
        pools[speaker] = pool
    chosen, missing = {}, []
    for mix_id, speaker, excluded in targets:
        pool = [c for c in pools.get(speaker, ()) if c.utt_id not in excluded]
        if not pool:
            missing.append(mix_id)
            continue
        chosen[mix_id] = pool[int(_enroll_rng(seed, mix_id).integers(len(pool)))]
    return chosen, missing


def resampled_length(frames, orig_sr, target_sr):
    """Length after :func:`data_prep.synth.resample` (``ceil(frames * target / orig)``).

    Example
    -------
    >>> resampled_length(16001, 16000, 8000)
    8001
    """
    frames, orig_sr, target_sr = int(frames), int(orig_sr), int(target_sr)
    return -(-frames * target_sr // orig_sr)


def materialise_enrollment(src, dst, sample_rate):
    """Copy an utterance to ``dst`` as a mono PCM_16 WAV at ``sample_rate``.

    Skipped when ``dst`` already holds a complete file of the expected length
    (a later preparation reuses it); written atomically otherwise.

    Arguments
    ---------
    src : str or Path
        Source audio (WAV or FLAC, any rate).
    dst : str or Path
        Destination WAV.
    sample_rate : int
        Rate of the copy.

    Returns
    -------
    int
        Frames of the copy.

    Example
    -------
    >>> import tempfile, soundfile as sf
    >>> tmp = Path(tempfile.mkdtemp())
    >>> sf.write(tmp / "a.flac", np.zeros(1600), 16000)
    >>> materialise_enrollment(tmp / "a.flac", tmp / "enroll" / "a.wav", 8000)
    800
    """
    from modules.audio import resample

    info = read_wav_info(src)
    frames = resampled_length(info.frames, info.samplerate, sample_rate)
    if wav_is_complete(dst, frames, sample_rate):
        return frames
    data, rate = read_wav(src)
    write_wav_atomic(dst, resample(data, rate, sample_rate), sample_rate)
    return frames


def add_enrollment_column(row, rel_path):
    """Add the ``enroll_wav`` triple to a manifest row (in place).

    Example
    -------
    >>> row = {"ID": "a"}
    >>> add_enrollment_column(row, "enroll/x.wav")["enroll_wav"]
    '$data_root/enroll/x.wav'
    """
    wav, fmt, opts = audio_columns(ENROLL_KEY)
    row[wav] = data_root_path(rel_path)
    row[fmt] = "wav"
    row[opts] = ""
    return row


def aux_list_files(aux_list):
    """The aux list files given as one file, a folder (``*_aux.lst``) or a sequence.

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name in ("tt_aux.lst", "cv_aux.lst", "notes.txt"):
    ...     _ = (tmp / name).write_text("")
    >>> [p.name for p in aux_list_files(tmp)]
    ['cv_aux.lst', 'tt_aux.lst']
    """
    if isinstance(aux_list, (str, Path)):
        aux_list = [aux_list]
    files = []
    for name in aux_list:
        item = Path(name)
        if item.is_dir():
            found = sorted(item.glob("*_aux.lst"))
            if not found:
                raise PrepError(f"no *_aux.lst file in aux list folder {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise PrepError(f"aux list not found: {item}")
    return files


__all__ = [
    "ENROLL_KEY",
    "AuxEntry",
    "Candidate",
    "add_enrollment_column",
    "aux_list_files",
    "choose_enrollment",
    "materialise_enrollment",
    "read_aux_list",
    "resampled_length",
    "resolve_listed_path",
    "search_roots",
]
