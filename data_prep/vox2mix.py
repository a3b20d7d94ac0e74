"""CSV manifests for Vox2Mix (two-speaker mixtures of VoxCeleb2), with its simulator.

Two incompatible public variants exist; both are read.

**VoxCeleb2-2Mix** (``variant="2mix"``): ``<data_folder>/{tr,cv,tt}/{mix,s1,s2}/<name>.wav``,
16 kHz, wsj0-style names such as ``id08696_ttUSQacqnRA_00472_2.73233_..._-2.73233.wav``.
Scanned as it is.

**DIP co-author variant** (``variant="dip"``): the VoxCeleb2 tree
``<data_folder>/audio_clean/{train,test}/idXXXXX/<video>/<utt>.wav`` (16 kHz)
and the mixtures below ``<data_folder>/audio_mixture``, in one of the public layouts:

* ``audio_mixture/<mix_folder>/{train,val,test}/<name>.wav``, mixtures only, as the
  official mixing script writes them; ``<mix_folder>`` is a variable of that script:
  ``2_mix_min_800`` (zexupan/reentry), ``2_mix_min_pretrain`` (zexupan/USEV's README);
* ``audio_mixture[/<mix_folder>]/{train,val,test}/{mix,s1,s2}/<name>.wav``, mixtures with
  their sources (mrjunjieli/ActiveExtract, which mixes by its own rule); the manifests
  then have references.

``mix_folder`` (``--mix_folder``) names the folder below ``audio_mixture`` (``"."``:
``audio_mixture`` itself); by default the single ``2_mix_*`` folder is used, or
``audio_mixture`` itself when it holds the set folders (several candidates are an
error naming them). The mixtures are made from a mixing list CSV whose rows read
(no header)::

    train,train,id08108,RCODGWdfzdY/00197,0,train,id07077,oi72_HHDWY4/00288,0.8977,4.096

The ten fields, in order (as the authors' list script ``1_create_mixture_list.py`` writes them):

1. the set the mixture belongs to (``train``, ``val`` or ``test``; the folder
   ``audio_mixture/<mix_folder>/<set>``, manifest split ``tr``/``cv``/``tt``);
2. the VoxCeleb2 subset of the target (``train`` or ``test``: ``audio_clean/<subset>``);
3. the target speaker (``id08108``);
4. the target utterance, ``<video>/<utt>`` (``RCODGWdfzdY/00197``);
5. the target gain in dB (always ``0`` in the authors' lists; the mixing script does not read it);
6. - 8. subset, speaker and utterance of the interferer;
9. the interferer gain in dB (``0.8977``, drawn in U(-10, 10) by the authors);
10. the duration in seconds of the shorter utterance (``4.096``; not read by the mixing script).

The mixture file name is the row with ``,`` and ``/`` replaced by ``_``, plus
``.wav``. The official variant ships mixtures only, so:

* **without** ``mixing_list``, the manifests are read from ``audio_mixture`` as
  found (mixture-only in the first layout, see below);
* **with** ``mixing_list``, the mixtures and their sources are simulated from
  ``audio_clean`` into ``sim_folder`` (default ``<data_folder>/Vox2Mix/wav16k``) in the
  VoxCeleb2-2Mix layout ``{tr,cv,tt}/{mix,s1,s2}`` with wsj0-style names
  ``<spk1>_<video1>_<utt1>_<gain1>_<spk2>_<video2>_<utt2>_<gain2>.wav``
  (gains as listed), and the manifests have references.

**Mixing rule** (:func:`mix_sources`), that of the official script
``data/voxceleb2/2_create_mixture.py`` (zexupan/USEV; the same file is
``data/speaker_extraction/2_create_mixture.py`` in zexupan/reentry):

1. the power (mean square) of the target and of the interferer is computed over
   each **whole** utterance, before anything is cut;
2. the interferer is multiplied by ``10 ** (g / 20) * sqrt(P_target / P_interferer)``
   with ``g`` its listed gain (field 9); the target is not scaled (field 5 is not read);
3. both are cut to the shorter one and added;
4. the mixture is divided by its peak ``max |mix|``, so that it peaks at exactly 1.0
   (also when it was below 1); the sources are not normalised with it;
5. the mixture is written as 16-bit PCM: ``x * 32767`` truncated toward zero
   (:func:`official_pcm16`), so the peak sample is ±32767.

The simulated ``mix`` file holds the same samples as the published mixture made
from the same ``audio_clean`` files (up to floating-point rounding at exact
truncation ties). Our ``s1`` and ``s2`` are the two terms of that sum, the target
and the scaled interferer cut to the mixture length and divided by the same
mixture peak, times 32767/32768 so that they are on the scale of the mixture file
as read back (libsndfile reads an int16 ``k`` as ``k / 32768``): read back,
``s1 + s2`` equals ``mix`` to within one int16 step (the truncation of step 5).
They are 32-bit float WAVs because either can exceed 1.0 where the two voices
partly cancel at the mixture's peak.

Where we depart from the official script, and why:

* file names and layout: wsj0-style names in ``{tr,cv,tt}/{mix,s1,s2}`` instead of
  ``<set>/<row name>.wav`` (manifests with references need the sources);
* the sources are written (the official script writes only the mixtures);
* ``sample_rate=8000``: both utterances are resampled (polyphase) before step 1;
  the official data exist at 16 kHz only;
* the listed duration (field 10) is only checked: a row whose duration differs
  from the shorter utterance on disk by more than 10 ms is reported in a warning
  (the ``audio_clean`` files are then not those the list was made from, and the
  mixtures will not match the published ones); the mixture is cut to the shorter
  utterance as the official script does;
* a silent utterance (zero power) is an error naming the list line, where the
  official script would divide by zero;
* resumption: a mixture counts as done only when its three files are complete
  (the official script skips any existing mixture file, even a truncated one).

The simulation is resumable. Every file is written to a temporary name in
its folder and renamed (``os.replace``), so a file with its final name is
always complete; a mixture counts as done when its three files have the
expected sample rate, length and subtype (read from the headers; libsndfile reports the
frames actually present, so a truncated file is redone); temporary files left
by an interrupted run are deleted. A rerun therefore redoes only what is
missing or damaged, and leaves completed mixtures untouched.

Manifests ``<save_folder>/vox2mix_{tr,cv,tt}.csv`` (keys ``train``, ``valid``,
``test``), columns ``ID, duration, mix_wav(+_format, _opts), s1_wav, s2_wav``
(the source triples only when supervised), sidecar ``vox2mix_prep.json``. Paths
are ``$data_root/...`` relative to ``data_folder`` (a ``sim_folder`` outside it
is reached through ``..``).

**Unsupervised manifests.** A mixture-only manifest has no ``s1_wav``/``s2_wav``
columns, and the sidecar records ``"supervised": {"train": false, ...}``; a
recipe checks either (:func:`data_prep.common.is_supervised` reads the header).

Command line::

    python -m data_prep.vox2mix --data_folder /data/VoxCeleb2 --save_folder results/prep \\
        [--variant auto|2mix|dip] [--mix_folder 2_mix_min_800] [--mixing_list lists/*.csv] \\
        [--sim_folder DIR] [--sample_rate 16000] [--splits tr cv tt] [--skip_bad_files]
"""

import argparse
import csv
import logging
import math
import sys
from collections import OrderedDict, namedtuple
from pathlib import Path

import numpy as np

from data_prep.common import (
    SUPERVISED_KEY,
    WSJ_SPLITS,
    PrepError,
    build_row,
    check_choice,
    check_layout,
    file_digest,
    list_error,
    manifest_header,
    prepare_manifests,
    read_wav,
    read_wav_info,
    rel_to_root,
    remove_stale_temps,
    run_cli,
    run_simulation,
    scan_split,
    select_splits,
    wav_is_complete,
    write_wav_atomic,
)
from data_prep.enrollment import resampled_length
from modules.audio import resample

logger = logging.getLogger(__name__)

LABEL = "Vox2Mix"
PREFIX = "vox2mix"
VARIANTS = ("auto", "2mix", "dip")
SAMPLE_RATES = (16000, 8000)
SPLITS = tuple(WSJ_SPLITS.values())
#: wsj0-style split folder -> set name of the DIP variant.
DIP_SPLITS = OrderedDict([("tr", "train"), ("cv", "val"), ("tt", "test")])
DIP_SETS = tuple(DIP_SPLITS.values())
#: Folder of the DIP variant's mixtures, below the data folder.
DIP_MIX_ROOT = "audio_mixture"
#: Mixture folder name of zexupan/reentry (zexupan/USEV's README says ``2_mix_min_pretrain``).
DIP_MIX_FOLDER = "2_mix_min_800"
#: Where the mini corpus writes its DIP mixtures.
DIP_MIX_DIR = f"{DIP_MIX_ROOT}/{DIP_MIX_FOLDER}"
#: Names of the mixture folders looked for when ``mix_folder`` is not given.
MIX_FOLDER_GLOB = "2_mix_*"
DIP_SRC_DIR = "audio_clean"
#: VoxCeleb2 subsets of ``audio_clean``.
VOX_SUBSETS = ("train", "test")
#: Sample rate of the VoxCeleb2 sources.
SOURCE_RATE = 16000
#: Full scale of the official int16 conversion (``x * 32767``, truncated).
OFFICIAL_FULL_SCALE = 32767
#: How far (seconds) a listed duration may be from the shorter source without a warning.
DURATION_TOLERANCE = 0.01
SIM_FOLDERS = ("mix", "s1", "s2")
#: WAV subtype of each simulated folder: the mixture as the official int16, the
#: sources as float (they may exceed 1.0, see the module docstring).
SIM_SUBTYPES = OrderedDict([("mix", "PCM_16"), ("s1", "FLOAT"), ("s2", "FLOAT")])
#: Recorded in the sidecar, so that manifests of an earlier rule are not reused.
MIXING_RULE = "zexupan/USEV 2_create_mixture.py"

#: One parsed mixing-list row.
MixingRow = namedtuple(
    "MixingRow",
    [
        "split",
        "subset1",
        "spk1",
        "utt1",
        "gain1",
        "gain1_txt",
        "subset2",
        "spk2",
        "utt2",
        "gain2",
        "gain2_txt",
        "duration",
        "text",
        "path",
        "lineno",
    ],
)

_FIELDS = (
    "mixture set, target subset, target speaker, target <video>/<utt>, target gain (dB), "
    "interferer subset, interferer speaker, interferer <video>/<utt>, interferer gain (dB), duration (s)"
)


def _float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_mixing_row(fields, path="<list>", lineno=1):
    """Parse the fields of one mixing-list row (see the module docstring).

    Arguments
    ---------
    fields : sequence of str
        The comma-separated fields.
    path : str
        List file, for messages.
    lineno : int
        Line number, for messages.

    Returns
    -------
    MixingRow

    Raises
    ------
    PrepError
        Naming ``<path>:<lineno>`` and what is wrong.

    Example
    -------
    >>> row = parse_mixing_row(
    ...     "train,train,id08108,RCODGWdfzdY/00197,0,train,id07077,oi72_HHDWY4/00288,0.8977,4.096".split(","))
    >>> row.split, row.spk2, row.utt2, row.gain2, row.duration
    ('train', 'id07077', 'oi72_HHDWY4/00288', 0.8977, 4.096)
    >>> parse_mixing_row(["train", "train", "id1"], "l.csv", 7)
    Traceback (most recent call last):
    ...
    modules.files.PrepError: l.csv:7: expected 10 comma-separated fields (mixture set, ...), found 3
    """
    fields = [f.strip() for f in fields]
    if len(fields) != 10:
        raise list_error(
            path, lineno, f"expected 10 comma-separated fields ({_FIELDS.split(',')[0]}, ...), found {len(fields)}"
        )
    split, sub1, spk1, utt1, g1, sub2, spk2, utt2, g2, dur = fields
    if split not in DIP_SPLITS.values():
        raise list_error(path, lineno, f"unknown mixture set {split!r} (expected train, val or test)")
    for sub in (sub1, sub2):
        if sub not in VOX_SUBSETS:
            raise list_error(path, lineno, f"unknown VoxCeleb2 subset {sub!r} (expected train or test)")
    for spk in (spk1, spk2):
        if not (spk.startswith("id") and spk[2:].isdigit()):
            raise list_error(path, lineno, f"malformed speaker id {spk!r} (expected e.g. id08108)")
    for utt in (utt1, utt2):
        parts = utt.split("/")
        if len(parts) != 2 or not all(parts):
            raise list_error(path, lineno, f"malformed utterance {utt!r} (expected <video>/<utt>)")
    try:
        gain1, gain2 = _float(g1), _float(g2)
    except ValueError:
        raise list_error(path, lineno, f"malformed gain {g1!r} or {g2!r} (expected dB values)") from None
    try:
        duration = _float(dur)
    except ValueError:
        raise list_error(path, lineno, f"malformed duration {dur!r} (expected seconds)") from None
    if duration <= 0:
        raise list_error(path, lineno, f"non-positive duration {dur!r}")
    if (spk1, utt1) == (spk2, utt2):
        raise list_error(path, lineno, "the target and the interferer are the same utterance")
    return MixingRow(
        split, sub1, spk1, utt1, gain1, g1, sub2, spk2, utt2, gain2, g2, duration, ",".join(fields), str(path), lineno
    )


def read_mixing_lists(paths):
    """Read mixing-list CSV files: ``{set: [MixingRow, ...]}`` (``train``/``val``/``test``).

    A first line whose gain fields are not numbers is taken for a header.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "test.csv"
    >>> _ = path.write_text("test,test,id1,v/00001,0,test,id2,w/00002,-3.5,4.5\\n")
    >>> rows = read_mixing_lists([path])
    >>> list(rows), rows["test"][0].gain2
    (['test'], -3.5)
    """
    rows = OrderedDict()
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise PrepError(f"{LABEL} mixing list not found: {path}")
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                lines = list(csv.reader(fh))
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            raise PrepError(f"cannot read {LABEL} mixing list {path} ({err})") from None
        for lineno, fields in enumerate(lines, 1):
            if not fields or not "".join(fields).strip():
                continue
            if lineno == 1 and len(fields) == 10:
                try:
                    _float(fields[4]), _float(fields[8])
                except ValueError:
                    continue  # header
            row = parse_mixing_row(fields, path, lineno)
            rows.setdefault(row.split, []).append(row)
    return rows


def dip_mixture_name(row):
    """File name of a mixture in ``audio_mixture`` (the row, ``,`` and ``/`` -> ``_``).

    Example
    -------
    >>> dip_mixture_name(parse_mixing_row(
    ...     "train,train,id08108,RCODGWdfzdY/00197,0,train,id07077,oi72_HHDWY4/00288,0.8977,4.096".split(",")))
    'train_train_id08108_RCODGWdfzdY_00197_0_train_id07077_oi72_HHDWY4_00288_0.8977_4.096.wav'
    """
    return row.text.replace(",", "_").replace("/", "_") + ".wav"


def wsj_mixture_name(row):
    """wsj0-style name of a simulated mixture: ``<utt1>_<gain1>_<utt2>_<gain2>.wav``.

    Example
    -------
    >>> wsj_mixture_name(parse_mixing_row(
    ...     "train,train,id08108,RCODGWdfzdY/00197,0,train,id07077,oi72_HHDWY4/00288,0.8977,4.096".split(",")))
    'id08108_RCODGWdfzdY_00197_0_id07077_oi72_HHDWY4_00288_0.8977.wav'
    """
    u1 = f"{row.spk1}_{row.utt1.replace('/', '_')}"
    u2 = f"{row.spk2}_{row.utt2.replace('/', '_')}"
    return f"{u1}_{row.gain1_txt}_{u2}_{row.gain2_txt}.wav"


def source_paths(row):
    """Paths (relative to the data folder) of the two sources of a row.

    Example
    -------
    >>> source_paths(parse_mixing_row(
    ...     "val,train,id1,v/00001,0,train,id2,w/00002,1,4".split(",")))
    ('audio_clean/train/id1/v/00001.wav', 'audio_clean/train/id2/w/00002.wav')
    """
    return (
        f"{DIP_SRC_DIR}/{row.subset1}/{row.spk1}/{row.utt1}.wav",
        f"{DIP_SRC_DIR}/{row.subset2}/{row.spk2}/{row.utt2}.wav",
    )


def _power(x):
    """Mean square of a whole signal."""
    return float(np.linalg.norm(x) ** 2 / len(x))


def mix_sources(target, interferer, gain_db):
    """Mix two utterances by the rule of the official mixing script (see the module docstring).

    Arguments
    ---------
    target, interferer : numpy.ndarray
        The two whole utterances (not cut: their powers are computed over all of them).
    gain_db : float
        The interferer's listed gain (dB; field 9 of a mixing-list row). The
        target's listed gain is not an argument: the official script ignores it.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mix, s1, s2)``, float64, as long as the shorter utterance: ``mix``
        peaks at exactly 1.0 and is what :func:`official_pcm16` quantises;
        ``s1`` and ``s2`` are its two terms (target, scaled interferer), divided
        by the same peak, so ``mix == s1 + s2`` (to rounding) and they may
        exceed 1.0.

    Raises
    ------
    PrepError
        When either utterance is silent (zero power) or the mixture is.

    Example
    -------
    >>> t = np.array([0.1, -0.1, 0.3, -0.3])  # power 0.05 over all 4 samples
    >>> i = np.array([0.2, 0.2])  # power 0.04
    >>> mix, s1, s2 = mix_sources(t, i, 0.0)  # interferer x sqrt(0.05 / 0.04), then cut to 2 samples
    >>> mix.round(4).tolist(), s1.round(4).tolist()
    ([1.0, 0.382], [0.309, -0.309])
    """
    t = np.asarray(target, dtype=np.float64)
    i = np.asarray(interferer, dtype=np.float64)
    if len(t) == 0 or len(i) == 0:
        raise PrepError("empty utterance: cannot mix")
    p_t, p_i = _power(t), _power(i)
    if p_t <= 0 or p_i <= 0:
        raise PrepError("silent utterance: cannot set the interferer level relative to the target")
    i = i * (10 ** (float(gain_db) / 20) * np.sqrt(p_t / p_i))
    n = min(len(t), len(i))
    t, i = t[:n], i[:n]
    peak = np.max(np.abs(t + i))
    if not peak > 0:
        raise PrepError("the two utterances cancel out: the mixture is silent")
    return np.divide(t + i, peak), t / peak, i / peak


def official_pcm16(x):
    """What a reader gets from the official script's int16 file of ``x``.

    The official script writes ``x * 32767`` truncated toward zero as int16;
    libsndfile reads an int16 ``k`` back as ``k / 32768``. Writing the returned
    values as PCM_16 stores exactly those integers.

    Example
    -------
    >>> (official_pcm16(np.array([1.0, -1.0, 0.5, 1e-5])) * 32768).tolist()
    [32767.0, -32767.0, 16383.0, 0.0]
    """
    x = np.asarray(x, dtype=np.float64)
    return np.trunc(x * OFFICIAL_FULL_SCALE) / 32768


def detect_variant(data_folder, splits=SPLITS):
    """``"2mix"`` if ``<split>/mix`` exists, ``"dip"`` if ``audio_clean``/``audio_mixture`` does.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "audio_clean").mkdir()
    >>> detect_variant(root)
    'dip'
    """
    data_folder = Path(data_folder)
    if any((data_folder / split / "mix").is_dir() for split in splits):
        return "2mix"
    if (data_folder / DIP_SRC_DIR).is_dir() or (data_folder / "audio_mixture").is_dir():
        return "dip"
    raise PrepError(
        f"{LABEL} layout not recognised in {data_folder}: expected <data_folder>/{{tr,cv,tt}}/{{mix,s1,s2}} "
        f"(VoxCeleb2-2Mix) or <data_folder>/{DIP_SRC_DIR}/... and/or <data_folder>/{DIP_MIX_ROOT}/... "
        f"(DIP variant); it contains: {_listing(data_folder)}"
    )


def _listing(folder, limit=8):
    """Short listing of a folder's entries, for messages."""
    names = sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(empty)"


def find_dip_mixtures(data_folder, mix_folder=None, sets=DIP_SETS):
    """Locate the DIP variant's mixtures below ``<data_folder>/audio_mixture``.

    Arguments
    ---------
    data_folder : str or Path
        The DIP root (contains ``audio_mixture/``).
    mix_folder : str, optional
        Folder below ``audio_mixture`` that holds the set folders (``"."`` or
        ``""``: ``audio_mixture`` itself). Default: the single ``2_mix_*``
        folder, or ``audio_mixture`` itself when it holds set folders.
    sets : sequence of str
        The sets needed (``train``, ``val``, ``test``), to tell the layouts apart.

    Returns
    -------
    tuple
        ``(rel, with_sources)``: the path of the folder holding the set folders,
        relative to ``data_folder``, and whether the sets have
        ``{mix,s1,s2}`` folders (ActiveExtract layout) rather than the
        mixtures themselves (official layout).

    Raises
    ------
    PrepError
        No ``audio_mixture``, no candidate or several (named), or the given
        ``mix_folder`` missing (with what ``audio_mixture`` contains).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "audio_mixture" / "2_mix_min_pretrain" / "test").mkdir(parents=True)
    >>> find_dip_mixtures(root)
    ('audio_mixture/2_mix_min_pretrain', False)
    >>> (root / "audio_mixture" / "2_mix_min_800").mkdir()
    >>> find_dip_mixtures(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modules.files.PrepError: several Vox2Mix mixture folders in .../audio_mixture: 2_mix_min_800, \
2_mix_min_pretrain; choose one with mix_folder (--mix_folder)
    >>> find_dip_mixtures(root, "2_mix_min_800")
    ('audio_mixture/2_mix_min_800', False)
    """
    data_folder = Path(data_folder)
    root = data_folder / DIP_MIX_ROOT
    layouts = (
        f"<data_folder>/{DIP_MIX_ROOT}/{MIX_FOLDER_GLOB}/{{train,val,test}}/*.wav or "
        f"<data_folder>/{DIP_MIX_ROOT}/{{train,val,test}}/{{mix,s1,s2}}/*.wav"
    )
    if not root.is_dir():
        raise PrepError(
            f"{LABEL} mixtures not found: {root} (expected {layouts}, or give mixing_list to simulate them "
            f"from {DIP_SRC_DIR}); {data_folder} contains: {_listing(data_folder)}"
        )
    if mix_folder is None:
        candidates = sorted(p.name for p in root.glob(MIX_FOLDER_GLOB) if p.is_dir())
        if any((root / s).is_dir() for s in DIP_SETS):
            candidates.insert(0, ".")
        if not candidates:
            raise PrepError(
                f"no {LABEL} mixture folder in {root} (expected {layouts}; "
                f"or name it with mix_folder); it contains: {_listing(root)}"
            )
        if len(candidates) > 1:
            raise PrepError(
                f"several {LABEL} mixture folders in {root}: {', '.join(candidates)}; "
                "choose one with mix_folder (--mix_folder)"
            )
        mix_folder = candidates[0]
    name = str(mix_folder).strip().strip("/")
    name = "" if name in ("", ".") else name
    folder = root / name if name else root
    if not folder.is_dir():
        raise PrepError(
            f"{LABEL} mix_folder not found: {folder} (mix_folder={mix_folder!r}); {root} contains: {_listing(root)}"
        )
    rel = f"{DIP_MIX_ROOT}/{name}" if name else DIP_MIX_ROOT
    return rel, any((folder / s / "mix").is_dir() for s in sets)


def _mixing_list_files(mixing_list):
    if isinstance(mixing_list, (str, Path)):
        mixing_list = [mixing_list]
    files = []
    for name in mixing_list:
        item = Path(name)
        if item.is_dir():
            found = sorted(item.glob("*.csv"))
            if not found:
                raise PrepError(f"no .csv mixing list in {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise PrepError(f"{LABEL} mixing list not found: {item}")
    if not files:
        raise PrepError("mixing_list is empty")
    return files


def vox2mix_manifest_paths(save_folder, splits=SPLITS):
    """Paths of the Vox2Mix manifests of the requested splits.

    Example
    -------
    >>> {k: Path(v).name for k, v in vox2mix_manifest_paths("/s", ("tt",)).items()}
    {'test': 'vox2mix_tt.csv'}
    """
    return OrderedDict(
        (key, Path(save_folder) / f"{PREFIX}_{name}.csv") for key, name in WSJ_SPLITS.items() if name in splits
    )


class _Job(namedtuple("_Job", ["row", "name", "src", "frames"])):
    """One mixture to simulate: its row, output name, source paths and length."""


def _plan_jobs(data_folder, rows, sample_rate):
    """Check every source of the rows (headers only) and compute the lengths (the shorter source)."""
    jobs, names, off = [], {}, []
    for row in rows:
        name = wsj_mixture_name(row)
        if name in names:
            logger.warning(
                "%s: %s:%d repeats the mixture of line %d; kept once", LABEL, row.path, row.lineno, names[name]
            )
            continue
        names[name] = row.lineno
        src, frames = [], []
        for rel in source_paths(row):
            path = Path(data_folder) / rel
            if not path.is_file():
                raise list_error(row.path, row.lineno, f"source not found: {path}")
            try:
                info = read_wav_info(path, SOURCE_RATE)
            except PrepError as err:
                raise list_error(row.path, row.lineno, str(err)) from None
            src.append(path)
            frames.append(resampled_length(info.frames, info.samplerate, sample_rate))
        shorter = min(frames)
        if abs(row.duration * sample_rate - shorter) > DURATION_TOLERANCE * sample_rate:
            off.append(
                f"{row.path}:{row.lineno} lists {row.duration:g} s, the shorter source has {shorter / sample_rate:g} s"
            )
        jobs.append(_Job(row, name, tuple(src), shorter))
    if off:
        logger.warning(
            "%s: %d mixing-list rows give a duration that is not that of the shorter source on disk (e.g. %s); "
            "the mixtures are cut to the shorter source as the official script does, but these audio_clean files "
            "differ from those the list was made from",
            LABEL,
            len(off),
            off[0],
        )
    return jobs


def _simulate_jobs(jobs, out_dir, sample_rate, desc=None):
    """Simulate planned mixtures into ``out_dir/{mix,s1,s2}``, skipping complete ones (resumable).

    Returns the ``(name, frames)`` of every job, in list order.
    """
    out_dir = Path(out_dir)
    folders = [out_dir / f for f in SIM_FOLDERS]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temps(folders)
    if removed:
        logger.info("%s: removed %d temporary files of an interrupted run in %s", LABEL, removed, out_dir)

    def is_done(job):
        """Whether the mixture and both sources of ``job`` are complete files already."""
        return all(
            wav_is_complete(out_dir / key / job.name, job.frames, sample_rate, subtype)
            for key, subtype in SIM_SUBTYPES.items()
        )

    def make(job):
        """Mixes the two utterances of ``job`` by the official rule and writes ``s1``, ``s2``, ``mix``."""
        signals = []
        for path in job.src:
            x, rate = read_wav(path, SOURCE_RATE)
            signals.append(resample(x, rate, sample_rate) if rate != sample_rate else x)
        try:
            mix, s1, s2 = mix_sources(signals[0], signals[1], job.row.gain2)
        except PrepError as err:
            raise list_error(job.row.path, job.row.lineno, str(err)) from None
        # the sources on the scale of the mixture file as read back (int16 k -> k / 32768)
        to_file = OFFICIAL_FULL_SCALE / 32768
        out = {"mix": official_pcm16(mix), "s1": s1 * to_file, "s2": s2 * to_file}
        # sources first, mixture last: the mixture's presence is the sign of a
        # finished mixture for a human looking at the folder (headers decide).
        for key in ("s1", "s2", "mix"):
            write_wav_atomic(out_dir / key / job.name, out[key], sample_rate, SIM_SUBTYPES[key])

    made, kept = run_simulation(jobs, is_done, make, desc or f"{LABEL} {out_dir.name}")
    logger.info("%s %s: %d mixtures simulated, %d kept from an earlier run", LABEL, out_dir.name, made, kept)
    return [(job.name, job.frames) for job in jobs]


def prepare_vox2mix(
    data_folder,
    save_folder,
    variant="auto",
    mixing_list=None,
    sim_folder=None,
    sample_rate=16000,
    splits=SPLITS,
    skip_prep=False,
    mix_folder=None,
    skip_bad_files=False,
):
    """Write the Vox2Mix manifests ``vox2mix_{tr,cv,tt}.csv`` (simulating if asked).

    Arguments
    ---------
    data_folder : str or Path
        VoxCeleb2-2Mix root (``{tr,cv,tt}/{mix,s1,s2}``) or DIP root
        (``audio_clean/``, ``audio_mixture/``); manifest paths are relative to it.
    save_folder : str or Path
        Where the manifests and ``vox2mix_prep.json`` are written.
    variant : str
        ``"auto"`` (detect), ``"2mix"`` or ``"dip"``.
    mixing_list : str, Path or sequence, optional
        DIP variant: mixing-list CSV file(s), or a folder of them; the
        mixtures and sources are then simulated and the manifests are
        supervised. Without it the DIP manifests are read from ``audio_mixture``.
    sim_folder : str or Path, optional
        Where the simulation writes ``{tr,cv,tt}/{mix,s1,s2}`` (default
        ``<data_folder>/Vox2Mix/wav16k``, or ``wav8k``).
    sample_rate : int
        16000 (the corpus rate) or 8000 (simulation only: sources resampled).
    splits : sequence of str
        Subset of ``("tr", "cv", "tt")``.
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    mix_folder : str, optional
        DIP variant without ``mixing_list``: the folder below ``audio_mixture``
        holding ``{train,val,test}`` (e.g. ``2_mix_min_800``,
        ``2_mix_min_pretrain``; ``"."`` for ``audio_mixture`` itself). Default:
        detected (see :func:`find_dip_mixtures`).
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/vox2mix_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}`` (requested splits).

    Raises
    ------
    data_prep.common.PrepError
        Invalid option, missing folder or source, several or no mixture
        folder, malformed mixing-list line (with its line number), silent
        source, wrong sample rate, unreadable WAV file, bad audio content
        (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_vox2mix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_vox2mix(tmp, n_train=1, n_valid=1, n_test=1)
    >>> paths = prepare_vox2mix(root / "DIP", f"{tmp}/prep", mixing_list=root / "DIP" / "lists")
    >>> print(Path(paths["test"]).read_text().splitlines()[1][:60])  # doctest: +ELLIPSIS
    id0..._0_id0...
    """
    splits = select_splits(splits, SPLITS)
    variant = check_choice("variant", variant, VARIANTS)
    sample_rate = check_choice("sample_rate", sample_rate, SAMPLE_RATES)
    manifests = vox2mix_manifest_paths(save_folder, splits)
    if skip_prep:
        return {k: str(v) for k, v in manifests.items()}
    data_folder = Path(data_folder)
    if not data_folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {data_folder}")
    if variant == "auto":
        variant = detect_variant(data_folder, splits)
    list_files = _mixing_list_files(mixing_list) if mixing_list is not None else None
    if variant == "2mix" and list_files:
        raise PrepError("mixing_list is only used by the DIP variant (the 2mix variant has its sources on disk)")
    sets = [DIP_SPLITS[name] for name in splits]
    mix_rel, with_sources = None, False
    if variant == "dip" and not list_files:
        mix_rel, with_sources = find_dip_mixtures(data_folder, mix_folder, sets)
    supervised = variant == "2mix" or list_files is not None or with_sources
    sim_root = Path(sim_folder) if sim_folder else data_folder / LABEL / f"wav{sample_rate // 1000}k"
    options = {
        "dataset": PREFIX,
        "data_folder": str(data_folder.resolve()),
        "variant": variant,
        "sample_rate": sample_rate,
        "splits": list(splits),
    }
    if mix_rel is not None:
        options["mix_folder"] = mix_rel
    if list_files:
        options["mixing_list"] = {str(p.resolve()): file_digest(p) for p in list_files}
        options["sim_folder"] = str(sim_root.resolve())
        options["mixing_rule"] = MIXING_RULE
    keys = ["mix", "s1", "s2"] if supervised else ["mix"]
    header = manifest_header(keys)
    extra = {SUPERVISED_KEY: dict.fromkeys(manifests, supervised), "variant": variant}
    split_of = {name: key for key, name in WSJ_SPLITS.items()}

    def scan_2mix():
        """Manifest rows of a VoxCeleb2-2Mix copy (``{tr,cv,tt}/{mix,s1,s2}``)."""
        if sample_rate != 16000:
            logger.info("%s: reading the 2mix variant at %d Hz", LABEL, sample_rate)
        check_layout(data_folder, "", splits, SIM_FOLDERS, f"{LABEL} (VoxCeleb2-2Mix)")
        return {
            split_of[name]: scan_split(
                data_folder, name, OrderedDict((k, k) for k in SIM_FOLDERS), sample_rate, desc=f"{LABEL} {name}"
            )
            for name in splits
        }

    def scan_dip_mixtures():
        """Manifest rows of the published DIP mixtures (with sources where the layout has them)."""
        folders = OrderedDict((k, k) for k in SIM_FOLDERS) if with_sources else OrderedDict(mix="")
        check_layout(data_folder, mix_rel, sets, tuple(folders.values()), f"{LABEL} (DIP)")
        return {
            split_of[name]: scan_split(
                data_folder, f"{mix_rel}/{DIP_SPLITS[name]}", folders, sample_rate, desc=f"{LABEL} {name}"
            )
            for name in splits
        }

    def scan_dip_simulated():
        """Simulates the mixtures of the DIP mixing lists (resumably) and returns their manifest rows."""
        rows_by_set = read_mixing_lists(list_files)
        if not (data_folder / DIP_SRC_DIR).is_dir():
            raise PrepError(
                f"{LABEL} sources not found: {data_folder / DIP_SRC_DIR} (expected "
                f"<data_folder>/{DIP_SRC_DIR}/{{train,test}}/idXXXXX/<video>/<utt>.wav, needed by the mixing list)"
            )
        for name in splits:
            if not rows_by_set.get(DIP_SPLITS[name]):
                raise PrepError(
                    f"no mixing-list row for set '{DIP_SPLITS[name]}' (split {name}) in "
                    f"{', '.join(str(p) for p in list_files)}; sets found: {', '.join(rows_by_set) or 'none'}"
                )
        # Check every source of every split before writing anything.
        plans = {name: _plan_jobs(data_folder, rows_by_set[DIP_SPLITS[name]], sample_rate) for name in splits}
        manifest_rows = {}
        for name in splits:
            done = _simulate_jobs(plans[name], sim_root / name, sample_rate, desc=f"{LABEL} simulate {name}")
            out = []
            for file_name, frames in done:
                audio = OrderedDict((k, rel_to_root(sim_root / name / k / file_name, data_folder)) for k in SIM_FOLDERS)
                out.append(build_row(file_name[:-4], frames / sample_rate, audio))
            manifest_rows[split_of[name]] = sorted(out, key=lambda r: r["ID"])
        return manifest_rows

    if variant == "2mix":
        scan = scan_2mix
    elif list_files:
        scan = scan_dip_simulated
    else:
        scan = scan_dip_mixtures
    return prepare_manifests(
        save_folder,
        PREFIX,
        options,
        manifests,
        header,
        scan,
        LABEL,
        skip_prep=False,
        extra_record=extra,
        data_folder=data_folder,
        skip_bad_files=skip_bad_files,
    )


def build_parser():
    """Command-line parser of ``python -m data_prep.vox2mix``.

    Example
    -------
    >>> args = build_parser().parse_args(["--data_folder", "d", "--save_folder", "s"])
    >>> args.variant, args.splits, args.mixing_list, args.mix_folder
    ('auto', ['tr', 'cv', 'tt'], None, None)
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.vox2mix",
        description="Write Vox2Mix CSV manifests (simulating the DIP variant's sources from a mixing list).",
    )
    parser.add_argument("--data_folder", required=True, help="VoxCeleb2-2Mix root or DIP (VoxCeleb2) root")
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--variant", default="auto", choices=VARIANTS)
    parser.add_argument(
        "--mix_folder",
        default=None,
        help="DIP variant: folder below audio_mixture holding {train,val,test} (e.g. 2_mix_min_800; "
        "default: the single 2_mix_* folder, or audio_mixture itself)",
    )
    parser.add_argument("--mixing_list", nargs="+", default=None, help="DIP mixing-list CSV file(s) or folder")
    parser.add_argument("--sim_folder", default=None, help="output of the simulation (default <data_folder>/Vox2Mix)")
    parser.add_argument("--sample_rate", type=int, default=16000, choices=SAMPLE_RATES)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/vox2mix_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.vox2mix``; returns the exit status."""
    return run_cli(build_parser(), prepare_vox2mix, argv)


if __name__ == "__main__":
    sys.exit(main())
