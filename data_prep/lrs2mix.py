"""CSV manifests for LRS2-2Mix (two-speaker mixtures of LRS2-BBC, released with TDANet).

LRS2-2Mix is distributed as a download (linked from the TDANet repository,
JusperLee/TDANet); TDANet ships no mixing script, and its
``DataPreProcess/process_lrs2.py`` only lists the released folders. Unzipped, the
download reads::

    lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/<name>.wav
    lrs2_rebuild/mouths/...                                      (lip regions, not used here)

16 kHz, 2 s mixtures, SNR in [-5, 5] dB (TDANet's README), wsj0-style names such as
``6330311066473698535_00011_0.53084_6339356267468615354_00010_-0.53084.wav``,
20000 / 5000 / 3000 mixtures. ``data_folder`` may be the folder holding
``lrs2_rebuild/``, ``lrs2_rebuild/`` itself, ``lrs2_rebuild/audio``, ``.../wav16k``,
``.../wav16k/min`` or any folder holding ``{tr,cv,tt}`` (:func:`find_lrs2mix_audio`);
manifest paths are relative to it. The papers use only the test set, as an unseen
domain, so ``splits`` selects the folders to read (e.g. ``("tt",)``).

Writes ``<save_folder>/lrs2mix_{tr,cv,tt}.csv`` (keys ``train``, ``valid``,
``test``; columns ``ID, duration, mix_wav, s1_wav, s2_wav`` with their
``_format``/``_opts``) and the sidecar ``lrs2mix_prep.json`` (which records
``"supervised": {...: true}`` like the other corpora).

Command line::

    python -m data_prep.lrs2mix --data_folder /data/lrs2_rebuild --save_folder results/prep [--splits tt] \\
        [--skip_bad_files]
"""

import argparse
import logging
import sys
from collections import OrderedDict
from pathlib import Path

from data_prep.common import (
    SUPERVISED_KEY,
    WSJ_SPLITS,
    PrepError,
    check_choice,
    check_layout,
    manifest_header,
    prepare_manifests,
    run_cli,
    scan_split,
    select_splits,
)

logger = logging.getLogger(__name__)

LABEL = "LRS2-2Mix"
PREFIX = "lrs2mix"
SPLITS = tuple(WSJ_SPLITS.values())
FOLDERS = OrderedDict([("mix", "mix"), ("s1", "s1"), ("s2", "s2")])
SAMPLE_RATES = (16000, 8000)


def lrs2mix_manifest_paths(save_folder, splits=SPLITS):
    """Paths of the LRS2-2Mix manifests of the requested splits.

    Example
    -------
    >>> {k: Path(v).name for k, v in lrs2mix_manifest_paths("/s", ("tt",)).items()}
    {'test': 'lrs2mix_tt.csv'}
    """
    return OrderedDict(
        (key, Path(save_folder) / f"{PREFIX}_{name}.csv") for key, name in WSJ_SPLITS.items() if name in splits
    )


def _listing(folder, limit=8):
    """Short listing of a folder's entries, for messages."""
    names = sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(empty)"


def find_lrs2mix_audio(data_folder, sample_rate=16000):
    """Path from ``data_folder`` to the folder holding the split folders ``{tr,cv,tt}``.

    Tried in order: ``data_folder`` itself, then ``min``, ``wav16k/min``,
    ``audio/wav16k/min`` and ``lrs2_rebuild/audio/wav16k/min`` below it
    (``wav8k`` for ``sample_rate=8000``); the first that holds any split folder wins.

    Arguments
    ---------
    data_folder : str or Path
        Where the user points.
    sample_rate : int
        Names the ``wav{8,16}k`` level.

    Returns
    -------
    str
        The relative path (``""`` when ``data_folder`` holds the splits).

    Raises
    ------
    PrepError
        ``data_folder`` missing, or no split folder at any of those places.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "lrs2_rebuild" / "audio" / "wav16k" / "min" / "tt").mkdir(parents=True)
    >>> find_lrs2mix_audio(root), find_lrs2mix_audio(root / "lrs2_rebuild" / "audio" / "wav16k")
    ('lrs2_rebuild/audio/wav16k/min', 'min')
    """
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {folder}")
    wav = f"wav{int(sample_rate) // 1000}k"
    candidates = ("", "min", f"{wav}/min", f"audio/{wav}/min", f"lrs2_rebuild/audio/{wav}/min")
    for rel in candidates:
        if any((folder / rel / split).is_dir() for split in SPLITS):
            return rel
    raise PrepError(
        f"{LABEL} split folders not found under {folder} (expected {{tr,cv,tt}}/{{mix,s1,s2}} in it or in "
        f"lrs2_rebuild/audio/{wav}/min below it); it contains: {_listing(folder)}"
    )


def prepare_lrs2mix(data_folder, save_folder, splits=SPLITS, sample_rate=16000, skip_prep=False, skip_bad_files=False):
    """Write the LRS2-2Mix manifests ``lrs2mix_{tr,cv,tt}.csv``.

    Arguments
    ---------
    data_folder : str or Path
        The unzipped download (``lrs2_rebuild/``, the folder holding it, or any
        level down to ``audio/wav16k/min``), or any folder that contains
        ``tr/``, ``cv/``, ``tt/``; manifest paths are relative to it.
    save_folder : str or Path
        Where the manifests and ``lrs2mix_prep.json`` are written.
    splits : sequence of str
        Subset of ``("tr", "cv", "tt")``.
    sample_rate : int
        Expected rate of the files: 16000 (the corpus), or 8000 for a copy
        resampled by the user.
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/lrs2mix_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}`` (requested splits).

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder, mixtures without sources, wrong sample
        rate, unreadable WAV file, bad audio content (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_lrs2mix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_lrs2mix(tmp, n_train=1, n_valid=1, n_test=2)
    >>> paths = prepare_lrs2mix(root / "lrs2_rebuild", f"{tmp}/prep", splits=("tt",))
    >>> list(paths), len(Path(paths["test"]).read_text().splitlines())
    (['test'], 3)
    >>> Path(paths["test"]).read_text().splitlines()[1].split(",")[2]  # doctest: +ELLIPSIS
    '$data_root/audio/wav16k/min/tt/mix/...wav'
    """
    splits = select_splits(splits, SPLITS)
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    manifests = lrs2mix_manifest_paths(save_folder, splits)
    split_of = {name: key for key, name in WSJ_SPLITS.items()}
    options = {
        "dataset": PREFIX,
        "data_folder": str(Path(data_folder).resolve()),
        "splits": list(splits),
        "sample_rate": sample_rate,
    }

    def scan():
        """Checks the LRS2-2Mix layout and returns the manifest rows of every split."""
        rel = find_lrs2mix_audio(data_folder, sample_rate)
        check_layout(data_folder, rel, splits, tuple(FOLDERS.values()), LABEL)
        return {
            split_of[name]: scan_split(
                data_folder, f"{rel}/{name}" if rel else name, FOLDERS, sample_rate, desc=f"{LABEL} {name}"
            )
            for name in splits
        }

    return prepare_manifests(
        save_folder,
        PREFIX,
        options,
        manifests,
        manifest_header(FOLDERS),
        scan,
        LABEL,
        skip_prep=skip_prep,
        extra_record={SUPERVISED_KEY: dict.fromkeys(manifests, True)},
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.lrs2mix``.

    Example
    -------
    >>> build_parser().parse_args(["--data_folder", "d", "--save_folder", "s", "--splits", "tt"]).splits
    ['tt']
    """
    parser = argparse.ArgumentParser(prog="python -m data_prep.lrs2mix", description="Write LRS2-2Mix CSV manifests.")
    parser.add_argument(
        "--data_folder", required=True, help="lrs2_rebuild/ (or a level below it down to audio/wav16k/min)"
    )
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--sample_rate", type=int, default=16000, choices=SAMPLE_RATES)
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/lrs2mix_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.lrs2mix``; returns the exit status."""
    return run_cli(build_parser(), prepare_lrs2mix, argv)


if __name__ == "__main__":
    sys.exit(main())
