"""CSV manifests for LibriMix (Libri2Mix, Libri3Mix).

Reads the layout written by the official generator (JorisCos/LibriMix)::

    Libri{2,3}Mix/wav{8k,16k}/{min,max}/{train-100,train-360,dev,test}/
        {mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<mixture_ID>.wav
    Libri{2,3}Mix/wav{8k,16k}/{min,max}/metadata/mixture_{split}_{mix_type}.csv

``data_folder`` may be the folder holding ``Libri{n}Mix`` (the generator's storage
folder), ``Libri{n}Mix`` itself, or one of its ``wav{8,16}k`` or ``wav{8,16}k/{min,max}``
folders (as Asteroid recipes are pointed); a folder name that contradicts
``n_spks``, ``sample_rate`` or ``mode`` is an error (:func:`find_librimix_prefix`).
Manifest paths are relative to ``data_folder``.

The module writes ``<save_folder>/libri{n}mix_{train-100|train-360,dev,test}.csv`` plus
the sidecar ``libri{n}mix_prep.json``. The wav folders are the truth: the
metadata CSVs (absolute paths from the generating machine) are only used to
warn about partial generations.

**Enrollment** (``enrollment=True``, target-speaker extraction, target = the
speaker of ``s1``) adds the audio column ``enroll_wav`` (+ format, opts):
another utterance of the target speaker, never the mixed one (see
:mod:`data_prep.enrollment`).

* With ``aux_list`` (the published Libri2Mix lists of jyhan03/icassp22-dataset,
  ``<mixture ID><TAB>../<subset>/<spk>/<chapter>/<utt>.flac``; a file, several,
  or a folder of ``*_aux.lst``), the listed LibriSpeech utterances are found
  under ``librispeech_folder`` (default: ``<data_folder>``, the folder holding
  ``Libri{n}Mix``, and their ``LibriSpeech`` subfolders, where the LibriMix
  generator puts it) and
  copied at the corpus rate to ``Libri{n}Mix/wav{8k,16k}/enroll/<utt>.wav``.
  A split none of whose mixtures is listed falls back to the rule below; a
  split only partly listed is an error.
* Otherwise, the paper's way (DPCCN: "its enrollment speech is randomly
  selected such that it differs from the one in the mixture"): a full
  LibriSpeech utterance of the target speaker other than the mixed one, drawn
  (seed ``enroll_seed``) from the LibriSpeech subset the split is made from
  (:data:`LIBRISPEECH_SUBSETS`), found under ``librispeech_folder`` or beside
  ``Libri{n}Mix`` where the generator puts it; the draw is written to
  ``<save_folder>/libri{n}mix_<split>_aux.lst`` (the published lists' format,
  paths relative to the LibriSpeech root), which the sidecar records and
  ``aux_list`` takes back.
* Without LibriSpeech, the enrollment is drawn among the other utterances of
  the target speaker found in the same split's source folders (``s1``...``sN``
  of other mixtures: cropped, gain-scaled copies, not the paper's), with a
  warning; mixtures whose speaker has no other utterance there are left out.

The sidecar records, per split, where the enrollments came from and how many
mixtures were left out.

Command line::

    python -m data_prep.librimix --data_folder /data/LibriMix --save_folder results/prep \\
        [--n_spks 2] [--sample_rate 8000] [--mode min] [--task sep_noisy] [--train_set train-100] [--skip_bad_files] \\
        [--enrollment [--aux_list lists/libri2mix] [--librispeech_folder /data/LibriSpeech] [--enroll_seed 0]]
"""

import argparse
import logging
import re
import sys
from pathlib import Path

from data_prep.common import (
    TASKS,
    PrepError,
    check_choice,
    check_layout,
    file_digest,
    list_error,
    manifest_header,
    prepare_manifests,
    read_metadata_ids,
    rel_to_root,
    run_cli,
    scan_split,
    task_folders,
    write_text_atomic,
)
from data_prep.enrollment import (
    ENROLL_KEY,
    Candidate,
    add_enrollment_column,
    aux_list_files,
    choose_enrollment,
    materialise_enrollment,
    read_aux_list,
    resolve_listed_path,
    search_roots,
)

logger = logging.getLogger(__name__)

LABEL = "LibriMix"
SAMPLE_RATES = (8000, 16000)
MODES = ("min", "max")
N_SPKS = (2, 3)
TRAIN_SETS = ("train-100", "train-360")


def librimix_splits(train_set="train-100"):
    """Manifest split name -> LibriMix folder name.

    Example
    -------
    >>> librimix_splits("train-360")
    {'train': 'train-360', 'valid': 'dev', 'test': 'test'}
    """
    return {"train": train_set, "valid": "dev", "test": "test"}


def librimix_manifest_paths(save_folder, n_spks=2, train_set="train-100"):
    """Paths of the three LibriMix manifests.

    Example
    -------
    >>> {k: Path(v).name for k, v in librimix_manifest_paths("/s", 3).items()}
    {'train': 'libri3mix_train-100.csv', 'valid': 'libri3mix_dev.csv', 'test': 'libri3mix_test.csv'}
    """
    prefix = f"libri{n_spks}mix"
    return {split: Path(save_folder) / f"{prefix}_{name}.csv" for split, name in librimix_splits(train_set).items()}


def find_librimix_root(data_folder, n_spks):
    """Locate ``Libri{n}Mix`` from either its parent folder or itself.

    Arguments
    ---------
    data_folder : str or Path
        The folder containing ``Libri2Mix/``, ``Libri3Mix/``, or one of them.
    n_spks : int
        2 or 3.

    Returns
    -------
    str
        Path of ``Libri{n}Mix`` relative to ``data_folder`` (``""`` when
        ``data_folder`` is that folder).

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> (tmp / "Libri2Mix" / "wav8k").mkdir(parents=True)
    >>> find_librimix_root(tmp, 2), find_librimix_root(tmp / "Libri2Mix", 2)
    ('Libri2Mix', '')
    """
    name = f"Libri{n_spks}Mix"
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {folder}")
    if (folder / name).is_dir():
        return name
    match = re.fullmatch(r"Libri(\d)Mix", folder.name)
    if match and int(match.group(1)) != n_spks:
        raise PrepError(
            f"data_folder {folder} is a {folder.name} folder but n_spks={n_spks} (expected {folder.parent / name})"
        )
    if match or any((folder / f"wav{k}k").is_dir() for k in (8, 16)):
        return ""
    found = sorted(p.name for p in folder.iterdir() if re.fullmatch(r"Libri\dMix", p.name))
    raise PrepError(
        f"{LABEL} folder not found: {folder / name} (expected <data_folder>/{name}/wav8k/... "
        f"or data_folder=<...>/{name}); {folder} contains: {', '.join(found) or 'no Libri*Mix folder'}"
    )


#: Folders of one LibriMix mode (``min``/``max``): the splits and the metadata.
SPLIT_FOLDERS = ("train-100", "train-360", "dev", "test", "metadata")


def _librimix_level(folder):
    """``"mode"`` for a ``min``/``max`` folder, ``"rate"`` for a ``wav{8,16}k`` one, else ``None``."""
    if folder.name in MODES or any((folder / name).is_dir() for name in SPLIT_FOLDERS):
        return "mode"
    if re.fullmatch(r"wav\d+k", folder.name) or any((folder / mode).is_dir() for mode in MODES):
        return "rate"
    return None


def find_librimix_prefix(data_folder, n_spks, sample_rate, mode):
    """Path from ``data_folder`` to the split folders of ``Libri{n}Mix/wav{8,16}k/{min,max}``.

    ``data_folder`` may be the folder holding ``Libri{n}Mix`` (the generator's
    storage folder), ``Libri{n}Mix`` itself, ``Libri{n}Mix/wav8k`` or
    ``Libri{n}Mix/wav8k/min`` (the Asteroid habit); the folder names it passes
    (``Libri{n}Mix``, ``wav{8,16}k``, ``min``/``max``) must agree with the options.

    Arguments
    ---------
    data_folder : str or Path
        Where the user points.
    n_spks, sample_rate, mode
        The options asked for.

    Returns
    -------
    str
        The relative path (``""`` when ``data_folder`` holds the split folders).

    Raises
    ------
    PrepError
        ``data_folder`` missing, not a LibriMix folder, or a level whose name
        contradicts ``n_spks``, ``sample_rate`` or ``mode`` (naming the folder
        to point at instead).

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> (tmp / "Libri2Mix" / "wav8k" / "min" / "dev").mkdir(parents=True)
    >>> [find_librimix_prefix(tmp / p, 2, 8000, "min") for p in ("", "Libri2Mix", "Libri2Mix/wav8k")]
    ['Libri2Mix/wav8k/min', 'wav8k/min', 'min']
    >>> find_librimix_prefix(tmp / "Libri2Mix/wav8k/min", 2, 8000, "min")
    ''
    >>> find_librimix_prefix(tmp / "Libri2Mix/wav8k/min", 2, 16000, "min")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: LibriMix data_folder .../Libri2Mix/wav8k/min is in a wav8k folder but sample_rate=16000 \
(point at .../Libri2Mix/wav16k/min or set sample_rate=8000)
    """
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {folder}")
    level = _librimix_level(folder)
    if level is None:
        root_rel = find_librimix_root(folder, n_spks)
        return "/".join(p for p in (root_rel, f"wav{sample_rate // 1000}k", mode) if p)
    mode_dir = folder if level == "mode" else None
    rate_dir = folder.parent if level == "mode" else folder
    top_dir = rate_dir.parent
    wanted = {"mode": mode, "sample_rate": sample_rate, "n_spks": n_spks}
    found = {}
    if mode_dir is not None and mode_dir.name in MODES:
        found["mode"] = (mode_dir.name, "a LibriMix {} folder")
    match = re.fullmatch(r"wav(\d+)k", rate_dir.name)
    if match:
        found["sample_rate"] = (int(match.group(1)) * 1000, f"{'in ' if mode_dir else ''}a {rate_dir.name} folder")
    match = re.fullmatch(r"Libri(\d)Mix", top_dir.name)
    if match:
        found["n_spks"] = (int(match.group(1)), f"in a {top_dir.name} folder")
    for option, (value, what) in found.items():
        if value != wanted[option]:
            expected = top_dir.parent / f"Libri{n_spks}Mix" if "n_spks" in found else top_dir
            expected = expected / f"wav{sample_rate // 1000}k"
            if mode_dir is not None:
                expected = expected / mode
            raise PrepError(
                f"{LABEL} data_folder {folder} is {what.format(value)} but {option}={wanted[option]!r} "
                f"(point at {expected} or set {option}={value!r})"
            )
    return "" if level == "mode" else mode


def _warn_partial(data_folder, rel_prefix, split, mix_folder, n_found):
    """Log a warning when the metadata lists more mixtures than were found."""
    meta = Path(data_folder) / rel_prefix / "metadata" / f"mixture_{split}_{mix_folder}.csv"
    ids = read_metadata_ids(meta)
    if ids is not None and len(ids) > n_found:
        logger.warning(
            "%s: %s lists %d mixtures but only %d are in %s (partial generation?)",
            LABEL,
            meta,
            len(ids),
            n_found,
            mix_folder,
        )


def prepare_librimix(
    data_folder,
    save_folder,
    n_spks=2,
    sample_rate=8000,
    mode="min",
    task="sep_noisy",
    train_set="train-100",
    skip_prep=False,
    enrollment=False,
    aux_list=None,
    librispeech_folder=None,
    enroll_seed=0,
    skip_bad_files=False,
):
    """Write the LibriMix manifests ``libri{n}mix_{train_set,dev,test}.csv``.

    Arguments
    ---------
    data_folder : str or Path
        Folder containing ``Libri2Mix/`` / ``Libri3Mix/``, that folder itself, or
        its ``wav{8,16}k`` or ``wav{8,16}k/{min,max}`` folder (matching the options).
    save_folder : str or Path
        Where the manifests and ``libri{n}mix_prep.json`` are written.
    n_spks : int
        2 (Libri2Mix) or 3 (Libri3Mix).
    sample_rate : int
        8000 or 16000.
    mode : str
        ``"min"`` or ``"max"``.
    task : str
        ``"sep_noisy"`` (``mix_both``; s1..sN, noise), ``"sep_clean"``
        (``mix_clean``; s1..sN) or ``"enh_single"`` (``mix_single``; s1, noise).
    train_set : str
        ``"train-100"`` or ``"train-360"``.
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    enrollment : bool
        Add the ``enroll_wav`` column (see the module docstring).
    aux_list : str, Path or sequence, optional
        Published enrollment list(s) (files, or a folder of ``*_aux.lst``).
    librispeech_folder : str or Path, optional
        LibriSpeech root the lists point into (default: ``data_folder``, the
        folder holding ``Libri{n}Mix``, and their ``LibriSpeech`` subfolders).
    enroll_seed : int
        Seed of the enrollment draw for splits not covered by ``aux_list``.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/libri{n}mix_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder (including partial generations lacking
        what the task needs), mixtures without sources, wrong sample rate,
        unreadable WAV file, bad audio content (unless ``skip_bad_files``);
        with enrollment: missing or malformed aux list (naming the line),
        listed utterance not found, of another speaker or the mixed one itself.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librimix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_librimix(tmp, n_train=2, n_valid=1, n_test=1, n_spks=(3,),
    ...                           sample_rates=(8000,), modes=("min",))
    >>> paths = prepare_librimix(root, f"{tmp}/prep", n_spks=3)
    >>> Path(paths["train"]).name
    'libri3mix_train-100.csv'
    >>> row = Path(paths["train"]).read_text().splitlines()[1].split(",")
    >>> row[2]  # doctest: +ELLIPSIS
    '$data_root/Libri3Mix/wav8k/min/train-100/mix_both/...wav'
    >>> row[-3]  # doctest: +ELLIPSIS
    '$data_root/Libri3Mix/wav8k/min/train-100/noise/...wav'
    """
    n_spks = check_choice("n_spks", n_spks, N_SPKS)
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    mode = check_choice("mode", mode, MODES)
    task = check_choice("task", task, tuple(TASKS))
    train_set = check_choice("train_set", train_set, TRAIN_SETS)
    prefix = f"libri{n_spks}mix"
    manifests = librimix_manifest_paths(save_folder, n_spks, train_set)
    folders = task_folders(task, n_spks)
    header = manifest_header(list(folders) + ([ENROLL_KEY] if enrollment else []))
    splits = librimix_splits(train_set)
    options = {
        "dataset": "librimix",
        "data_folder": str(Path(data_folder).resolve()),
        "n_spks": n_spks,
        "sample_rate": sample_rate,
        "mode": mode,
        "task": task,
        "train_set": train_set,
    }
    extra = {}
    aux_files = None
    if enrollment and not skip_prep:
        options["enrollment"] = True
        options["enroll_seed"] = int(enroll_seed)
        if aux_list is not None:
            aux_files = aux_list_files(aux_list)
            options["aux_list"] = {str(p.resolve()): file_digest(p) for p in aux_files}
        if librispeech_folder is not None:
            options["librispeech_folder"] = str(Path(librispeech_folder).resolve())
        extra["enrollment"] = {}

    def scan():
        """Checks the LibriMix layout and returns the manifest rows of every split."""
        rel_prefix = find_librimix_prefix(data_folder, n_spks, sample_rate, mode)
        label = f"{LABEL} (Libri{n_spks}Mix)"
        short = f"Libri{n_spks}Mix wav{sample_rate // 1000}k/{mode}"
        check_layout(
            data_folder,
            rel_prefix,
            tuple(splits.values()),
            tuple(folders.values()),
            label,
            task=task,
            n_spks=n_spks,
        )
        rows = {}
        for split, name in splits.items():
            rows[split] = scan_split(
                data_folder,
                f"{rel_prefix}/{name}",
                folders,
                sample_rate,
                desc=f"{short}/{name}",
            )
            _warn_partial(data_folder, rel_prefix, name, folders["mix"], len(rows[split]))
        if enrollment:
            if librispeech_folder is not None and not Path(librispeech_folder).is_dir():
                raise PrepError(f"LibriSpeech folder not found: {librispeech_folder}")
            aux = {}
            for path in aux_files or ():
                aux.update(read_aux_list(path))
            # LibriSpeech sits beside Libri{n}Mix in the generator's storage folder
            storage = (Path(data_folder).resolve() / rel_prefix).parents[2]
            roots = search_roots(librispeech_folder) if librispeech_folder else search_roots(data_folder, storage)
            for split, name in splits.items():
                list_path = Path(save_folder) / f"libri{n_spks}mix_{name}_aux.lst"
                rows[split], extra["enrollment"][split] = _add_enrollment(
                    rows[split], data_folder, rel_prefix, name, n_spks, sample_rate, aux, roots, enroll_seed, list_path
                )
        return rows

    return prepare_manifests(
        save_folder,
        prefix,
        options,
        manifests,
        header,
        scan,
        f"Libri{n_spks}Mix",
        skip_prep=skip_prep,
        extra_record=extra,
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


#: LibriMix split folder -> the LibriSpeech subset it is made from.
LIBRISPEECH_SUBSETS = {
    "train-100": "train-clean-100",
    "train-360": "train-clean-360",
    "dev": "dev-clean",
    "test": "test-clean",
}


def librispeech_speaker(utt):
    """Speaker of a LibriSpeech utterance id (``1089-134686-0000`` -> ``1089``).

    Example
    -------
    >>> librispeech_speaker("1089-134686-0000")
    '1089'
    """
    return utt.split("-")[0]


def _librispeech_subset(roots, subset):
    """The folder of a LibriSpeech subset under the first of ``roots`` that has it, or ``None``."""
    for root in roots:
        for folder in (Path(root) / subset, Path(root) / "LibriSpeech" / subset):
            if folder.is_dir() and any(folder.glob("*/*/*.flac")):
                return folder
    return None


def _add_enrollment(rows, data_folder, rel_prefix, split_name, n_spks, sample_rate, aux, roots, seed, list_path):
    """Add ``enroll_wav`` to the rows of one split; returns ``(rows, record)``."""
    data_folder = Path(data_folder)
    listed = [r["ID"] for r in rows if r["ID"] in aux]
    if listed:
        missing = [r["ID"] for r in rows if r["ID"] not in aux]
        if missing:
            raise PrepError(
                f"{len(missing)} mixtures of {split_name} are not in the aux list(s) that list {len(listed)} "
                f"others (e.g. {', '.join(missing[:3])})"
            )
        enroll_dir = (data_folder.resolve() / rel_prefix).parent / "enroll"  # Libri{n}Mix/wav{8,16}k/enroll
        where = ", ".join(str(r) for r in roots) or str(data_folder)
        for row in rows:
            entry = aux[row["ID"]]
            path = resolve_listed_path(entry.listed, roots)
            if path is None:
                raise list_error(
                    entry.path,
                    entry.lineno,
                    f"enrollment utterance not found: {entry.listed} (searched under {where}; set librispeech_folder)",
                )
            utt, target = path.stem, row["ID"].split("_")[0]
            if utt == target:
                raise list_error(entry.path, entry.lineno, f"the enrollment is the mixed utterance {target}")
            if librispeech_speaker(utt) != librispeech_speaker(target):
                raise list_error(
                    entry.path,
                    entry.lineno,
                    f"enrollment speaker {librispeech_speaker(utt)} is not the s1 speaker "
                    f"{librispeech_speaker(target)}",
                )
            materialise_enrollment(path, enroll_dir / f"{utt}.wav", sample_rate)
            add_enrollment_column(row, rel_to_root(enroll_dir / f"{utt}.wav", data_folder))
        return rows, {"source": "aux_list", "dropped": 0}
    targets = [(r["ID"], librispeech_speaker(r["ID"].split("_")[0]), set(r["ID"].split("_"))) for r in rows]
    subset = LIBRISPEECH_SUBSETS.get(split_name)
    folder = _librispeech_subset(roots, subset) if subset else None
    if folder is not None:
        return _enrollment_from_librispeech(
            rows, targets, folder, data_folder, rel_prefix, sample_rate, seed, list_path
        )
    logger.warning(
        "%s %s: no LibriSpeech %s found (set librispeech_folder): enrollments drawn from the split's own sources "
        "(cropped LibriMix copies, not the paper's full utterances)",
        LABEL,
        split_name,
        subset,
    )
    split_dir = data_folder / rel_prefix / split_name
    candidates = {}
    for k in range(1, n_spks + 1):
        folder = split_dir / f"s{k}"
        if not folder.is_dir():
            continue
        for wav in sorted(folder.glob("*.wav")):
            utts = wav.stem.split("_")
            if len(utts) != n_spks:
                continue
            candidates.setdefault(librispeech_speaker(utts[k - 1]), []).append(
                Candidate(utts[k - 1], rel_to_root(wav, data_folder))
            )
    chosen, missing = choose_enrollment(targets, candidates, seed)
    if missing:
        logger.warning(
            "%s %s: %d of %d mixtures left out, their s1 speaker has no other utterance in the split (e.g. %s); "
            "give aux lists for all of them",
            LABEL,
            split_name,
            len(missing),
            len(rows),
            ", ".join(missing[:3]),
        )
    kept = [add_enrollment_column(r, chosen[r["ID"]].ref) for r in rows if r["ID"] in chosen]
    if not kept:
        raise PrepError(
            f"no enrollment utterance for any mixture of {split_name}: no s1 speaker appears twice; give aux lists"
        )
    return kept, {"source": "corpus", "dropped": len(missing)}


def _enrollment_from_librispeech(rows, targets, folder, data_folder, rel_prefix, sample_rate, seed, list_path):
    """Enrollments drawn from a LibriSpeech subset folder, written to an aux list and copied at the corpus rate."""
    from data_prep.librispeech import list_librispeech

    candidates = {}
    for utt in list_librispeech(folder, folder.name):
        candidates.setdefault(utt.speaker, []).append(Candidate(utt.utt_id, utt.path))
    chosen, missing = choose_enrollment(targets, candidates, seed)
    if missing:
        logger.warning(
            "%s: %d of %d mixtures left out, their s1 speaker has no other utterance in %s (e.g. %s)",
            LABEL,
            len(missing),
            len(rows),
            folder,
            ", ".join(missing[:3]),
        )
    kept = [r for r in rows if r["ID"] in chosen]
    if not kept:
        raise PrepError(f"no enrollment utterance for any mixture in {folder}: no s1 speaker has another utterance")
    lines = []
    enroll_dir = (Path(data_folder).resolve() / rel_prefix).parent / "enroll"  # Libri{n}Mix/wav{8,16}k/enroll
    for row in kept:
        pick = chosen[row["ID"]]
        spk, chapter = pick.ref.parent.parent.name, pick.ref.parent.name
        lines.append(f"{row['ID']}\t{folder.name}/{spk}/{chapter}/{pick.ref.name}\n")
        materialise_enrollment(pick.ref, enroll_dir / f"{pick.utt_id}.wav", sample_rate)
        add_enrollment_column(row, rel_to_root(enroll_dir / f"{pick.utt_id}.wav", data_folder))
    write_text_atomic(list_path, "".join(lines))
    return kept, {"source": "librispeech", "list": str(list_path), "dropped": len(missing)}


def build_parser():
    """Command-line parser of ``python -m data_prep.librimix``.

    Example
    -------
    >>> args = build_parser().parse_args(["--data_folder", "d", "--save_folder", "s"])
    >>> args.n_spks, args.train_set
    (2, 'train-100')
    """
    parser = argparse.ArgumentParser(prog="python -m data_prep.librimix", description="Write LibriMix CSV manifests.")
    parser.add_argument(
        "--data_folder",
        required=True,
        help="folder containing Libri2Mix/Libri3Mix, one of them, or its wav8k[/min] level",
    )
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--n_spks", type=int, default=2, choices=N_SPKS)
    parser.add_argument("--sample_rate", type=int, default=8000, choices=SAMPLE_RATES)
    parser.add_argument("--mode", default="min", choices=MODES)
    parser.add_argument("--task", default="sep_noisy", choices=tuple(TASKS))
    parser.add_argument("--train_set", default="train-100", choices=TRAIN_SETS)
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/libri{n}mix_rejected.csv",
    )
    parser.add_argument("--enrollment", action="store_true", help="add the enroll_wav column (target = s1)")
    parser.add_argument("--aux_list", nargs="+", default=None, help="enrollment list file(s) or folder")
    parser.add_argument("--librispeech_folder", default=None, help="LibriSpeech root of the aux lists")
    parser.add_argument("--enroll_seed", type=int, default=0)
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.librimix``; returns the exit status."""
    return run_cli(build_parser(), prepare_librimix, argv)


if __name__ == "__main__":
    sys.exit(main())
