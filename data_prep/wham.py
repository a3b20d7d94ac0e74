"""CSV manifests for WHAM! (noisy wsj0-2mix).

Reads the layout written by the official ``wham_scripts``::

    <data_folder>/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix_clean,mix_single,mix_both,s1,s2,noise}/<name>.wav

and writes ``<save_folder>/wham_{tr,cv,tt}.csv`` (see :mod:`data_prep.common`
for the manifest columns) plus the sidecar ``wham_prep.json``.

Command line::

    python -m data_prep.wham --data_folder /data/WHAM --save_folder results/prep \\
        [--sample_rate 8000] [--mode min] [--task sep_noisy] [--skip_bad_files]
"""

import argparse
import logging
import sys
from pathlib import Path

from data_prep.common import (
    TASKS,
    check_choice,
    check_layout,
    manifest_header,
    prepare_manifests,
    run_cli,
    scan_split,
    task_folders,
)

logger = logging.getLogger(__name__)

LABEL = "WHAM!"
PREFIX = "wham"
#: Manifest split name -> WHAM! folder name.
SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}
SAMPLE_RATES = (8000, 16000)
MODES = ("min", "max")
N_SPKS = 2


def wham_manifest_paths(save_folder):
    """Paths of the three WHAM! manifests.

    Example
    -------
    >>> {k: Path(v).name for k, v in wham_manifest_paths("/s").items()}
    {'train': 'wham_tr.csv', 'valid': 'wham_cv.csv', 'test': 'wham_tt.csv'}
    """
    return {split: Path(save_folder) / f"{PREFIX}_{name}.csv" for split, name in SPLITS.items()}


def prepare_wham(
    data_folder,
    save_folder,
    sample_rate=8000,
    mode="min",
    task="sep_noisy",
    skip_prep=False,
    skip_bad_files=False,
):
    """Write the WHAM! manifests ``wham_tr.csv``, ``wham_cv.csv``, ``wham_tt.csv``.

    Arguments
    ---------
    data_folder : str or Path
        WHAM! root, the folder that contains ``wav8k/`` and/or ``wav16k/``.
    save_folder : str or Path
        Where the manifests and ``wham_prep.json`` are written.
    sample_rate : int
        8000 or 16000 (selects ``wav8k`` or ``wav16k``).
    mode : str
        ``"min"`` or ``"max"``.
    task : str
        ``"sep_noisy"`` (``mix_both``; s1, s2, noise), ``"sep_clean"``
        (``mix_clean``; s1, s2) or ``"enh_single"`` (``mix_single``; s1, noise).
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/wham_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder, mixtures without sources, wrong sample
        rate, unreadable WAV file, bad audio content (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_wham
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_wham(tmp, n_train=2, n_valid=1, n_test=1,
    ...                       sample_rates=(8000,), modes=("min",))
    >>> paths = prepare_wham(root, f"{tmp}/prep", task="sep_clean")
    >>> Path(paths["valid"]).name
    'wham_cv.csv'
    >>> print(Path(paths["valid"]).read_text().splitlines()[0])
    ID,duration,mix_wav,mix_wav_format,mix_wav_opts,s1_wav,s1_wav_format,s1_wav_opts,s2_wav,s2_wav_format,s2_wav_opts
    """
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    mode = check_choice("mode", mode, MODES)
    task = check_choice("task", task, tuple(TASKS))
    manifests = wham_manifest_paths(save_folder)
    folders = task_folders(task, N_SPKS)
    header = manifest_header(folders)
    options = {
        "dataset": "wham",
        "data_folder": str(Path(data_folder).resolve()),
        "sample_rate": sample_rate,
        "mode": mode,
        "task": task,
    }
    rel_prefix = f"wav{sample_rate // 1000}k/{mode}"

    def scan():
        """Checks the WHAM! layout and returns the manifest rows of every split."""
        check_layout(
            data_folder,
            rel_prefix,
            tuple(SPLITS.values()),
            tuple(folders.values()),
            LABEL,
            task=task,
            n_spks=N_SPKS,
        )
        return {
            split: scan_split(
                data_folder,
                f"{rel_prefix}/{name}",
                folders,
                sample_rate,
                desc=f"{LABEL} {rel_prefix}/{name}",
            )
            for split, name in SPLITS.items()
        }

    return prepare_manifests(
        save_folder,
        PREFIX,
        options,
        manifests,
        header,
        scan,
        LABEL,
        skip_prep=skip_prep,
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.wham``.

    Example
    -------
    >>> build_parser().parse_args(["--data_folder", "d", "--save_folder", "s"]).mode
    'min'
    """
    parser = argparse.ArgumentParser(prog="python -m data_prep.wham", description="Write WHAM! CSV manifests.")
    parser.add_argument("--data_folder", required=True, help="WHAM! root (contains wav8k/)")
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--sample_rate", type=int, default=8000, choices=SAMPLE_RATES)
    parser.add_argument("--mode", default="min", choices=MODES)
    parser.add_argument("--task", default="sep_noisy", choices=tuple(TASKS))
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/wham_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.wham``; returns the exit status."""
    return run_cli(build_parser(), prepare_wham, argv)


if __name__ == "__main__":
    sys.exit(main())
