"""CSV manifests for WSJ0-2mix and WSJ0-3mix (the corpora of SADDEL's paper).

Reads the layout the MERL generation scripts (``create_wav_2speakers.m``,
``create_wav_3speakers.m``) write and SpeechBrain's ``recipes/WSJ0Mix`` reads::

    <root>/{2speakers,3speakers}/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/<name>.wav

with names joining the WSJ0 utterance ids and their relative levels in dB
(``01aa010k_1.3053_01po0310_-1.3053.wav``), 20,000 / 5,000 / 3,000 mixtures,
16-bit PCM. The corpus has no noise: a mixture is the sum of its sources.

``data_folder`` may be ``<root>`` (the scripts' output folder, holding
``2speakers``/``3speakers``), ``<root>/{n}speakers`` (where SpeechBrain's
WSJ0Mix recipe points), or one of its ``wav{8,16}k`` or ``wav{8,16}k/{min,max}``
folders; a folder name that contradicts ``n_spks``, ``sample_rate`` or ``mode``
is an error naming the folder to point at instead
(:func:`find_wsj0mix_prefix`). Manifest paths are relative to ``data_folder``.

Writes ``<save_folder>/wsj0{n}mix_{tr,cv,tt}.csv`` (keys ``train``, ``valid``,
``test``; columns ``ID, duration, mix_wav, s1_wav, s2_wav[, s3_wav]`` with
their ``_format``/``_opts``, see :mod:`data_prep.common`) and the sidecar
``wsj0{n}mix_prep.json``, after the same header and content checks as the
other corpora (sample rate, every mixture with its sources, non-finite
samples, silence, sources as long as their mixture).

Command line::

    python -m data_prep.wsj0mix --data_folder /data/wsj0-mix --save_folder results/prep \\
        [--n_spks 2] [--sample_rate 8000] [--mode min] [--splits tr cv tt] [--skip_bad_files]
"""

import argparse
import logging
import re
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

LABEL = "WSJ0-mix"
SPLITS = tuple(WSJ_SPLITS.values())
SAMPLE_RATES = (8000, 16000)
MODES = ("min", "max")
N_SPKS = (2, 3)

#: The folder levels below the scripts' output folder: option, folder name pattern, value of a match.
_LEVELS = (
    ("n_spks", re.compile(r"(\d)speakers"), int),
    ("sample_rate", re.compile(r"wav(\d+)k"), lambda k: int(k) * 1000),
    ("mode", re.compile(r"(min|max)"), str),
)


def wsj0mix_prefix(n_spks):
    """Manifest and sidecar prefix of a speaker count.

    Example
    -------
    >>> wsj0mix_prefix(3)
    'wsj03mix'
    """
    return f"wsj0{int(n_spks)}mix"


def wsj0mix_folders(n_spks):
    """Manifest audio keys and the folders they read: ``mix``, ``s1`` ... ``s{n}``.

    Example
    -------
    >>> dict(wsj0mix_folders(3))
    {'mix': 'mix', 's1': 's1', 's2': 's2', 's3': 's3'}
    """
    folders = OrderedDict(mix="mix")
    for k in range(1, int(n_spks) + 1):
        folders[f"s{k}"] = f"s{k}"
    return folders


def wsj0mix_manifest_paths(save_folder, n_spks=2, splits=SPLITS):
    """Paths of the WSJ0-mix manifests of the requested splits.

    Example
    -------
    >>> {k: Path(v).name for k, v in wsj0mix_manifest_paths("/s", 3).items()}
    {'train': 'wsj03mix_tr.csv', 'valid': 'wsj03mix_cv.csv', 'test': 'wsj03mix_tt.csv'}
    """
    prefix = wsj0mix_prefix(n_spks)
    return OrderedDict(
        (key, Path(save_folder) / f"{prefix}_{name}.csv") for key, name in WSJ_SPLITS.items() if name in splits
    )


def _level_names(n_spks, sample_rate, mode):
    """Folder names of the three levels for these options."""
    return [f"{n_spks}speakers", f"wav{sample_rate // 1000}k", mode]


def _depth(folder, n_spks):
    """Level of ``folder`` below the output folder (0 to 3), or ``None`` if it is none of them.

    A level is told by the folder's own name or by what it holds: ``wav{8,16}k``
    folders in a ``{n}speakers`` folder, ``min``/``max`` in a rate folder, the
    split folders in a mode folder.
    """
    if (folder / f"{n_spks}speakers").is_dir():
        return 0
    children = [p.name for p in folder.iterdir() if p.is_dir()]
    held = [pattern for _, pattern, _ in _LEVELS[1:]] + [re.compile("|".join(SPLITS))]
    for depth in (3, 2, 1):
        if _LEVELS[depth - 1][1].fullmatch(folder.name) or any(held[depth - 1].fullmatch(c) for c in children):
            return depth
    return None


def find_wsj0mix_prefix(data_folder, n_spks=2, sample_rate=8000, mode="min"):
    """Path from ``data_folder`` to the split folders of ``{n}speakers/wav{8,16}k/{min,max}``.

    ``data_folder`` may be the scripts' output folder (holding ``2speakers``),
    ``2speakers`` itself, ``2speakers/wav8k`` or ``2speakers/wav8k/min``; the
    folder names it passes must agree with the options.

    Arguments
    ---------
    data_folder : str or Path
        Where the user points.
    n_spks : int
        2 or 3.
    sample_rate : int
        8000 or 16000.
    mode : str
        ``"min"`` or ``"max"``.

    Returns
    -------
    str
        The relative path (``""`` when ``data_folder`` holds the split folders).

    Raises
    ------
    PrepError
        ``data_folder`` missing, not a WSJ0-mix folder, or a level whose name
        contradicts ``n_spks``, ``sample_rate`` or ``mode`` (naming the folder
        to point at instead).

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> (tmp / "2speakers" / "wav8k" / "max" / "tt").mkdir(parents=True)
    >>> [find_wsj0mix_prefix(tmp / p, 2, 8000, "max") for p in ("", "2speakers", "2speakers/wav8k")]
    ['2speakers/wav8k/max', 'wav8k/max', 'max']
    >>> find_wsj0mix_prefix(tmp / "2speakers/wav8k/max", 2, 8000, "max")
    ''
    >>> find_wsj0mix_prefix(tmp / "2speakers/wav8k/max", 2, 8000, "min")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: WSJ0-mix data_folder .../2speakers/wav8k/max is a max folder but mode='min' \
(point at .../2speakers/wav8k/min or set mode='max')
    """
    folder = Path(data_folder)
    if not folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {folder}")
    wanted = _level_names(n_spks, sample_rate, mode)
    depth = _depth(folder, n_spks)
    if depth is None:
        found = sorted(p.name for p in folder.iterdir() if _LEVELS[0][1].fullmatch(p.name))
        raise PrepError(
            f"{LABEL} folder not found: {folder / wanted[0]} (expected <data_folder>/{'/'.join(wanted)}/"
            f"{{tr,cv,tt}}/{{mix,s1,...}} or data_folder=<...>/{wanted[0]}); {folder} contains: "
            f"{', '.join(found) or 'no {2,3}speakers folder'}"
        )
    chain = [folder, *folder.parents][:depth][::-1]  # the folders of levels 1 .. depth
    options = {"n_spks": n_spks, "sample_rate": sample_rate, "mode": mode}
    for level, ((option, pattern, value_of), path) in enumerate(zip(_LEVELS, chain)):
        match = pattern.fullmatch(path.name)
        if match is None or path.name == wanted[level]:
            continue
        value = value_of(match.group(1))
        what = f"is a {path.name} folder" if path == folder else f"is in a {path.name} folder"
        expected = chain[0].parent.joinpath(*wanted[:depth])
        raise PrepError(
            f"{LABEL} data_folder {folder} {what} but {option}={options[option]!r} "
            f"(point at {expected} or set {option}={value!r})"
        )
    return "/".join(wanted[depth:])


def prepare_wsj0mix(
    data_folder,
    save_folder,
    n_spks=2,
    sample_rate=8000,
    mode="min",
    splits=SPLITS,
    skip_prep=False,
    skip_bad_files=False,
):
    """Write the WSJ0-mix manifests ``wsj0{n}mix_{tr,cv,tt}.csv``.

    Arguments
    ---------
    data_folder : str or Path
        The MERL scripts' output folder (holding ``2speakers``/``3speakers``),
        ``{n}speakers`` itself, or its ``wav{8,16}k`` or ``wav{8,16}k/{min,max}``
        folder (matching the options); manifest paths are relative to it.
    save_folder : str or Path
        Where the manifests and ``wsj0{n}mix_prep.json`` are written.
    n_spks : int
        2 (WSJ0-2mix) or 3 (WSJ0-3mix).
    sample_rate : int
        8000 or 16000 (selects ``wav8k`` or ``wav16k``); every file must have it.
    mode : str
        ``"min"`` (mixtures as long as the shorter utterance) or ``"max"``
        (the longer one, the others zero-padded).
    splits : sequence of str
        Subset of ``("tr", "cv", "tt")`` (manifest keys ``train``, ``valid``,
        ``test``); each must be there with all its folders.
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/wsj0{n}mix_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}`` (requested splits).

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder (a split, a source folder, the other
        ``mode`` or rate only), a data folder whose name contradicts the
        options, mixtures without sources, wrong sample rate, unreadable WAV
        file, bad audio content (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_wsj0mix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_wsj0mix(tmp, n_train=1, n_valid=1, n_test=2, sample_rates=(8000,), modes=("max",))
    >>> paths = prepare_wsj0mix(root, f"{tmp}/prep", n_spks=3, mode="max", splits=("tt",))
    >>> list(paths), Path(paths["test"]).name
    (['test'], 'wsj03mix_tt.csv')
    >>> lines = Path(paths["test"]).read_text().splitlines()
    >>> len(lines), lines[1].split(",")[2]  # doctest: +ELLIPSIS
    (3, '$data_root/3speakers/wav8k/max/tt/mix/...wav')
    """
    n_spks = check_choice("n_spks", n_spks, N_SPKS)
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    mode = check_choice("mode", mode, MODES)
    splits = select_splits(splits, SPLITS)
    prefix = wsj0mix_prefix(n_spks)
    manifests = wsj0mix_manifest_paths(save_folder, n_spks, splits)
    folders = wsj0mix_folders(n_spks)
    split_of = {name: key for key, name in WSJ_SPLITS.items()}
    label = f"WSJ0-{n_spks}mix"
    options = {
        "dataset": "wsj0mix",
        "data_folder": str(Path(data_folder).resolve()),
        "n_spks": n_spks,
        "sample_rate": sample_rate,
        "mode": mode,
        "splits": list(splits),
    }

    def scan():
        """Checks the WSJ0-mix layout and returns the manifest rows of every requested split."""
        rel = find_wsj0mix_prefix(data_folder, n_spks, sample_rate, mode)
        check_layout(data_folder, rel, splits, tuple(folders.values()), label)
        short = f"{n_spks}speakers wav{sample_rate // 1000}k/{mode}"
        return {
            split_of[name]: scan_split(
                data_folder, f"{rel}/{name}" if rel else name, folders, sample_rate, desc=f"{short}/{name}"
            )
            for name in splits
        }

    return prepare_manifests(
        save_folder,
        prefix,
        options,
        manifests,
        manifest_header(folders),
        scan,
        label,
        skip_prep=skip_prep,
        extra_record={SUPERVISED_KEY: dict.fromkeys(manifests, True)},
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.wsj0mix``.

    Example
    -------
    >>> args = build_parser().parse_args(["--data_folder", "d", "--save_folder", "s", "--n_spks", "3"])
    >>> args.n_spks, args.mode, args.splits
    (3, 'min', ['tr', 'cv', 'tt'])
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.wsj0mix", description="Write WSJ0-2mix / WSJ0-3mix CSV manifests."
    )
    parser.add_argument(
        "--data_folder",
        required=True,
        help="the MERL scripts' output folder (holding 2speakers/3speakers), {n}speakers, or its wav8k[/min] level",
    )
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--n_spks", type=int, default=2, choices=N_SPKS)
    parser.add_argument("--sample_rate", type=int, default=8000, choices=SAMPLE_RATES)
    parser.add_argument("--mode", default="min", choices=MODES)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/wsj0{n}mix_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.wsj0mix``; returns the exit status."""
    return run_cli(build_parser(), prepare_wsj0mix, argv)


if __name__ == "__main__":
    sys.exit(main())
