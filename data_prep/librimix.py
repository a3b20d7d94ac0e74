"""CSV manifests for LibriMix (Libri2Mix, Libri3Mix).

Reads the layout written by the official generator (JorisCos/LibriMix)::

    Libri{2,3}Mix/wav{8k,16k}/{min,max}/{train-100,train-360,dev,test}/
        {mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<mixture_ID>.wav
    Libri{2,3}Mix/wav{8k,16k}/{min,max}/metadata/mixture_{split}_{mix_type}.csv

and writes ``<save_folder>/libri{n}mix_{train-100|train-360,dev,test}.csv`` plus
the sidecar ``libri{n}mix_prep.json``. The wav folders are the truth: the
metadata CSVs (absolute paths from the generating machine) are only used to
warn about partial generations.

Command line::

    python -m data_prep.librimix --data_folder /data/LibriMix --save_folder results/prep \\
        [--n_spks 2] [--sample_rate 8000] [--mode min] [--task sep_noisy] [--train_set train-100]
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
    manifest_header,
    prepare_manifests,
    read_metadata_ids,
    run_cli,
    scan_split,
    task_folders,
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
    return {
        split: Path(save_folder) / f"{prefix}_{name}.csv"
        for split, name in librimix_splits(train_set).items()
    }


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
            f"data_folder {folder} is a {folder.name} folder but n_spks={n_spks} "
            f"(expected {folder.parent / name})"
        )
    if match or any((folder / f"wav{k}k").is_dir() for k in (8, 16)):
        return ""
    found = sorted(
        p.name for p in folder.iterdir() if re.fullmatch(r"Libri\dMix", p.name)
    )
    raise PrepError(
        f"{LABEL} folder not found: {folder / name} (expected <data_folder>/{name}/wav8k/... "
        f"or data_folder=<...>/{name}); {folder} contains: {', '.join(found) or 'no Libri*Mix folder'}"
    )


def _warn_partial(data_folder, rel_prefix, split, mix_folder, n_found):
    """Log a warning when the metadata lists more mixtures than were found."""
    meta = (
        Path(data_folder)
        / rel_prefix
        / "metadata"
        / f"mixture_{split}_{mix_folder}.csv"
    )
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
):
    """Write the LibriMix manifests ``libri{n}mix_{train_set,dev,test}.csv``.

    Arguments
    ---------
    data_folder : str or Path
        Folder containing ``Libri2Mix/`` / ``Libri3Mix/``, or that folder itself.
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

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder (including partial generations lacking
        what the task needs), mixtures without sources, wrong sample rate,
        unreadable WAV file.

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
    header = manifest_header(folders)
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

    def scan():
        root_rel = find_librimix_root(data_folder, n_spks)
        rel_prefix = "/".join(
            p for p in (root_rel, f"wav{sample_rate // 1000}k", mode) if p
        )
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
            _warn_partial(
                data_folder, rel_prefix, name, folders["mix"], len(rows[split])
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
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.librimix``.

    Example
    -------
    >>> args = build_parser().parse_args(["--data_folder", "d", "--save_folder", "s"])
    >>> args.n_spks, args.train_set
    (2, 'train-100')
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.librimix", description="Write LibriMix CSV manifests."
    )
    parser.add_argument(
        "--data_folder",
        required=True,
        help="folder containing Libri2Mix/Libri3Mix (or one of them)",
    )
    parser.add_argument(
        "--save_folder", required=True, help="output folder of the manifests"
    )
    parser.add_argument("--n_spks", type=int, default=2, choices=N_SPKS)
    parser.add_argument("--sample_rate", type=int, default=8000, choices=SAMPLE_RATES)
    parser.add_argument("--mode", default="min", choices=MODES)
    parser.add_argument("--task", default="sep_noisy", choices=tuple(TASKS))
    parser.add_argument("--train_set", default="train-100", choices=TRAIN_SETS)
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.librimix``; returns the exit status."""
    return run_cli(build_parser(), prepare_librimix, argv)


if __name__ == "__main__":
    sys.exit(main())
