"""CSV manifests for REAL-M v0.1.0 (real two-speaker mixtures, no references).

Reads the layout of the REAL-M release::

    <data_folder>/audio_files_converted_8000Hz/<session>/<name>.wav   (8 kHz mixtures)
    <data_folder>/transcriptions/<session>.csv
    <data_folder>/separations/<name>source{1,2}hat.wav                (SepFormer separations)

The separations are also found under the name one public reader builds,
``<name>.wavsource{1,2}hat.wav`` (the mixture's file name, extension included).

Transcription CSVs come in two shapes: the newer sessions have the columns
``index, sentence1, sentence2, filename`` with ``.wav`` names; the early sessions
``early_collection{1,2,3}`` have ``sentence1, sentence2, WorkerId, filename``
where ``filename`` is the name of the recording as collected, an ``.mp3``.
Columns are found by name; a ``filename`` is reduced to its base name (any
folder or URL part dropped) and its extension replaced by ``.wav``, which is
the name of the converted file in ``audio_files_converted_8000Hz/<session>/``.

**Split (the DIP paper's protocol).** A session whose name starts with
``early_collection`` goes to the *pretrain* manifest, every other session to
the *test* manifest (:func:`is_pretrain_session`): the rule depends only on
session names, so it applies to any subset of the corpus.

**Counts.** The REAL-M release v0.1.0 holds 1436 mixtures (the number given for
the corpus by the REAL-M paper, Subakan et al., "REAL-M: Towards Speech
Separation on Real Mixtures", ICASSP 2022; SpeechBrain's REAL-M recipe,
``recipes/REAL-M/sisnr-estimation``, trains its SI-SNR estimator on LibriMix and
WHAMR!, only links the release and states no count). The DIP paper splits it
into 600 pretraining and 837 test mixtures, i.e. 1437, one more than the
release holds: with its 600 ``early_collection`` mixtures, the release leaves
836 for the test manifest, and that is what this module yields (every
recording that has a transcription row, split by session name; no count is
imposed). The manifests of a complete copy (1436 mixtures or more) are
checked against 600 / 836 and a difference is reported as a warning; a
smaller copy is reported as partial.

Writes ``<save_folder>/realm_pretrain.csv`` and ``realm_test.csv`` (keys
``pretrain``, ``test``) with the columns ``ID, duration, mix_wav, mix_wav_format,
mix_wav_opts`` (``sep1_wav``, ``sep2_wav`` triples with ``with_separations``),
then ``sentence1, sentence2, session``; and the sidecar ``realm_prep.json``.
The ID is the file stem (``<session>_<stem>`` for every row if stems repeat
across sessions). A recording without a transcription row is left out with a
warning (their number is in the sidecar). SpeechBrain's CSV loader
substitutes ``$name`` patterns in every field, so a ``$`` in a transcription is
written as a full-width dollar sign (U+FF04).

**Unsupervised.** REAL-M has no reference sources: the manifests have no
``s1_wav``/``s2_wav`` columns and the sidecar records
``"supervised": {"pretrain": false, "test": false}``. Evaluation is
reference-free (ASR word error rate against ``sentence1``/``sentence2``, a
blind SI-SNR estimator, DNSMOS).

Command line::

    python -m data_prep.realm --data_folder /data/REAL-M-v0.1.0 --save_folder results/prep [--with_separations] \\
        [--skip_bad_files]
"""

import argparse
import csv
import logging
import re
import sys
from collections import OrderedDict
from pathlib import Path

from data_prep.common import (
    SUPERVISED_KEY,
    PrepError,
    build_row,
    list_error,
    manifest_header,
    prepare_manifests,
    read_wav_info,
    run_cli,
)

logger = logging.getLogger(__name__)

LABEL = "REAL-M"
PREFIX = "realm"
AUDIO_DIR = "audio_files_converted_8000Hz"
TRANSCRIPT_DIR = "transcriptions"
SEPARATION_DIR = "separations"
SAMPLE_RATE = 8000
EARLY_PREFIX = "early_collection"
#: Mixtures in the release (REAL-M paper); fewer means a partial (or miniature) copy.
FULL_TOTAL = 1436
#: The manifests of the full release: the DIP paper's 600 ``early_collection``
#: mixtures, and the rest of the 1436 (the DIP paper writes 837: see the module docstring).
FULL_COUNTS = OrderedDict([("pretrain", 600), ("test", FULL_TOTAL - 600)])
#: The split as the DIP paper reports it (600 + 837 = 1437).
DIP_PAPER_COUNTS = OrderedDict([("pretrain", 600), ("test", 837)])
#: Names of a mixture's reference separation ``k`` (1 or 2), tried in this order.
SEPARATION_NAMES = ("{stem}source{k}hat.wav", "{stem}.wavsource{k}hat.wav")
TEXT_COLUMNS = ("sentence1", "sentence2", "session")


def is_pretrain_session(session):
    """Whether a session belongs to the pretraining part (``early_collection*``).

    Example
    -------
    >>> is_pretrain_session("early_collection2"), is_pretrain_session("session01")
    (True, False)
    """
    return str(session).startswith(EARLY_PREFIX)


def wav_name(filename):
    """Name of the converted WAV file of a transcription's ``filename``.

    Example
    -------
    >>> wav_name("f8ac8330a6.mp3"), wav_name("https://host/x/early_7.MP3"), wav_name("a.wav")
    ('f8ac8330a6.wav', 'early_7.wav', 'a.wav')
    """
    base = re.split(r"[/\\]", str(filename).strip())[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or ext.lower() not in ("mp3", "wav", "flac", "m4a", "ogg", "webm"):
        return f"{base}.wav"
    return f"{stem}.wav"


def _clean_text(text):
    return " ".join(str(text).split()).replace("$", "\uff04")


def read_transcriptions(path):
    """Read one session's transcriptions: ``{wav name: (sentence1, sentence2)}``.

    Arguments
    ---------
    path : str or Path
        ``transcriptions/<session>.csv`` (either column layout).

    Returns
    -------
    OrderedDict

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "early_collection1.csv"
    >>> _ = path.write_text('sentence1,sentence2,WorkerId,filename\\n"Hi, you",Costs $5,A1,x.mp3\\n')
    >>> dict(read_transcriptions(path))
    {'x.wav': ('Hi, you', 'Costs ＄5')}
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            needed = ("sentence1", "sentence2", "filename")
            if not all(c in columns for c in needed):
                found = ", ".join(columns) or "none"
                raise PrepError(f"{path}: expected the columns sentence1, sentence2, filename; found: {found}")
            out = OrderedDict()
            for lineno, row in enumerate(reader, 2):
                if not (row.get("filename") or "").strip():
                    if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                        raise list_error(path, lineno, "empty filename")
                    continue
                name = wav_name(row["filename"])
                if name in out:
                    logger.warning("%s: %s:%d repeats %s; the first row is kept", LABEL, path, lineno, name)
                    continue
                out[name] = (_clean_text(row["sentence1"] or ""), _clean_text(row["sentence2"] or ""))
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise PrepError(f"cannot read {path} ({err})") from None
    return out


def find_separation(data_folder, stem, k):
    """Path (relative to ``data_folder``) of separation ``k`` of mixture ``stem``, or ``None``.

    Both public names are accepted: ``<stem>source<k>hat.wav`` and
    ``<stem>.wavsource<k>hat.wav``.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / SEPARATION_DIR).mkdir()
    >>> _ = (root / SEPARATION_DIR / "ab12.wavsource2hat.wav").write_bytes(b"")
    >>> find_separation(root, "ab12", 2), find_separation(root, "ab12", 1)
    ('separations/ab12.wavsource2hat.wav', None)
    """
    for pattern in SEPARATION_NAMES:
        rel = f"{SEPARATION_DIR}/{pattern.format(stem=stem, k=k)}"
        if (Path(data_folder) / rel).is_file():
            return rel
    return None


def realm_manifest_paths(save_folder):
    """Paths of the two REAL-M manifests.

    Example
    -------
    >>> {k: Path(v).name for k, v in realm_manifest_paths("/s").items()}
    {'pretrain': 'realm_pretrain.csv', 'test': 'realm_test.csv'}
    """
    return OrderedDict((key, Path(save_folder) / f"{PREFIX}_{key}.csv") for key in FULL_COUNTS)


def prepare_realm(data_folder, save_folder, with_separations=False, skip_prep=False, skip_bad_files=False):
    """Write the REAL-M manifests ``realm_pretrain.csv`` and ``realm_test.csv``.

    Arguments
    ---------
    data_folder : str or Path
        REAL-M root (contains ``audio_files_converted_8000Hz/`` and ``transcriptions/``).
    save_folder : str or Path
        Where the manifests and ``realm_prep.json`` are written.
    with_separations : bool
        Add the reference SepFormer separations as ``sep1_wav``, ``sep2_wav``
        (``separations/<name>source{1,2}hat.wav`` or ``<name>.wavsource{1,2}hat.wav``).
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/realm_rejected.csv``.

    Returns
    -------
    dict
        ``{"pretrain": path, "test": path}``.

    Raises
    ------
    data_prep.common.PrepError
        Missing folder or transcription file, malformed transcription file,
        wrong sample rate, unreadable WAV file, missing separations (when asked),
        bad audio content (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_realm
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_realm(tmp, n_train=3, n_valid=1, n_test=1)
    >>> paths = prepare_realm(root, f"{tmp}/prep")
    >>> [len(Path(p).read_text().splitlines()) - 1 for p in paths.values()]
    [3, 2]
    >>> Path(paths["test"]).read_text().splitlines()[0]
    'ID,duration,mix_wav,mix_wav_format,mix_wav_opts,sentence1,sentence2,session'
    """
    manifests = realm_manifest_paths(save_folder)
    keys = ["mix"] + (["sep1", "sep2"] if with_separations else [])
    header = manifest_header(keys, TEXT_COLUMNS)
    options = {
        "dataset": PREFIX,
        "data_folder": str(Path(data_folder).resolve()),
        "with_separations": bool(with_separations),
    }
    extra = {SUPERVISED_KEY: dict.fromkeys(manifests, False)}

    def scan():
        """Checks the REAL-M layout and returns the rows of the pretraining and test manifests."""
        root = Path(data_folder)
        if not root.is_dir():
            raise PrepError(f"{LABEL} data_folder not found: {root}")
        audio_dir = root / AUDIO_DIR
        if not audio_dir.is_dir():
            found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
            raise PrepError(
                f"{LABEL} folder not found: {audio_dir} (expected <data_folder>/{AUDIO_DIR}/<session>/*.wav); "
                f"{root} contains: {', '.join(found[:8]) or '(empty)'}"
            )
        sessions = sorted(p.name for p in audio_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not sessions:
            raise PrepError(f"no session folder in {audio_dir}")
        items, dropped = [], []
        for session in sessions:
            wavs = sorted(p.name for p in (audio_dir / session).glob("*.wav") if not p.name.startswith("."))
            csv_path = root / TRANSCRIPT_DIR / f"{session}.csv"
            if not csv_path.is_file():
                raise PrepError(
                    f"{LABEL} transcriptions not found: {csv_path} "
                    f"(expected <data_folder>/{TRANSCRIPT_DIR}/<session>.csv for session {session})"
                )
            texts = read_transcriptions(csv_path)
            unlisted = [w for w in wavs if w not in texts]
            if unlisted:
                logger.warning(
                    "%s: %d recordings of %s have no row in %s and are left out (e.g. %s)",
                    LABEL,
                    len(unlisted),
                    session,
                    csv_path,
                    ", ".join(unlisted[:3]),
                )
                dropped += [f"{session}/{w}" for w in unlisted]
            absent = [n for n in texts if n not in set(wavs)]
            if absent:
                logger.warning(
                    "%s: %d rows of %s name no file of %s (e.g. %s)",
                    LABEL,
                    len(absent),
                    csv_path,
                    audio_dir / session,
                    ", ".join(absent[:3]),
                )
            for wav in wavs:
                if wav in texts:
                    items.append((session, wav, texts[wav]))
        stems = [wav[:-4] for _, wav, _ in items]
        prefixed = len(set(stems)) != len(stems)
        if prefixed:
            logger.warning("%s: file names repeat across sessions; IDs are <session>_<name>", LABEL)
        rows = {key: [] for key in manifests}
        missing_sep = []
        for session, wav, (s1, s2) in items:
            stem = wav[:-4]
            rel = f"{AUDIO_DIR}/{session}/{wav}"
            info = read_wav_info(root / rel, SAMPLE_RATE)
            audio = OrderedDict(mix=rel)
            if with_separations:
                for k in (1, 2):
                    sep = find_separation(root, stem, k)
                    if sep is None:
                        missing_sep.append(f"{SEPARATION_DIR}/{SEPARATION_NAMES[0].format(stem=stem, k=k)}")
                    audio[f"sep{k}"] = sep
            key = "pretrain" if is_pretrain_session(session) else "test"
            utt_id = f"{session}_{stem}" if prefixed else stem
            extra_cols = {"sentence1": s1, "sentence2": s2, "session": session}
            rows[key].append(build_row(utt_id, info.frames / info.samplerate, audio, extra_cols))
        if missing_sep:
            raise PrepError(
                f"{len(missing_sep)} separations not found under {root / SEPARATION_DIR} "
                f"(e.g. {', '.join(missing_sep[:3])}, or <name>.wavsource<k>hat.wav); "
                "prepare without with_separations or complete the download"
            )
        for key, found in rows.items():
            if not found:
                what = f"no {EARLY_PREFIX}* session" if key == "pretrain" else f"no session other than {EARLY_PREFIX}*"
                raise PrepError(f"{LABEL}: {what} in {audio_dir} (the {key} manifest would be empty)")
        counts = {key: len(found) for key, found in rows.items()}
        total = sum(counts.values())
        full = " / ".join(str(v) for v in FULL_COUNTS.values())
        if total >= FULL_TOTAL:
            if counts != dict(FULL_COUNTS):
                logger.warning(
                    "%s: %d pretrain / %d test mixtures, expected %s for the %d of the full release "
                    "(the DIP paper writes %s)",
                    LABEL,
                    *counts.values(),
                    full,
                    FULL_TOTAL,
                    " / ".join(str(v) for v in DIP_PAPER_COUNTS.values()),
                )
        else:
            logger.info(
                "%s: partial corpus (%d of %d mixtures): %d pretrain / %d test (full release: %s)",
                LABEL,
                total,
                FULL_TOTAL,
                *counts.values(),
                full,
            )
        extra["left_out"] = len(dropped)
        return rows

    return prepare_manifests(
        save_folder,
        PREFIX,
        options,
        manifests,
        header,
        scan,
        LABEL,
        skip_prep=skip_prep,
        extra_record=extra,
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.realm``.

    Example
    -------
    >>> build_parser().parse_args(["--data_folder", "d", "--save_folder", "s"]).with_separations
    False
    """
    parser = argparse.ArgumentParser(prog="python -m data_prep.realm", description="Write REAL-M CSV manifests.")
    parser.add_argument("--data_folder", required=True, help="REAL-M root (contains audio_files_converted_8000Hz/)")
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--with_separations", action="store_true", help="add the SepFormer separations")
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/realm_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.realm``; returns the exit status."""
    return run_cli(build_parser(), prepare_realm, argv)


if __name__ == "__main__":
    sys.exit(main())
