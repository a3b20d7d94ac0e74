"""CSV manifests for Aishell2Mix, with the published simulator (jyhan03/icassp22-dataset).

Aishell2Mix is simulated from Aishell-1 with the published config lists
``{tr,cv,tt}_cfg.lst``, one line per mixture::

    /data_aishell/wav/dev/S0755/BAC009S0755W0139.wav 1550 33550 \\
        /data_aishell/wav/dev/S0743/BAC009S0743W0267.wav 1952 33952 4.0702829

(one line in the file; broken here for width).

The simulator writes ``<data_folder>/{tr,cv,tt}/{mix,spk1,spk2}/<utt1>_<utt2>_<snr>.wav``
(8 kHz, 16-bit PCM), e.g. ``BAC009S0002W0122_BAC009S0355W0276_0.6303.wav``,
the SNR rounded to 4 decimals as ``str(numpy.round(snr, 4))`` prints it.

Rules of one mixture, in the order of the published ``data_simu.py``:

1. each Aishell-1 utterance (16 kHz) is resampled **as a whole** to 8 kHz;
2. ``[start, end)`` is cut from it; start and end are **8 kHz sample
   indices** (the published generator draws them on audio already read at
   8 kHz: ``end - start = 32000`` = 4 s at 8 kHz, ``start`` in
   ``[0, len % 32000]``). Resampling first, then cutting, is therefore the
   only order that reproduces the published segments;
3. spk2 is rescaled relative to spk1 to the listed SNR, each signal's power
   being the mean of ``x**2`` over the samples within 50 dB of its peak
   power (``k = sqrt(P1 / (10**(snr / 10) * P2))``);
4. both are truncated to the shorter one (normally 32000 samples) and
   ``mix = spk1 + spk2``;
5. the three signals are divided by the largest peak among them and
   multiplied by 0.9 (so the loudest of the three peaks at 0.9).

We resample with a polyphase filter (``scipy.signal.resample_poly``) where
the authors used ``librosa.resample``; sample values differ slightly, the
lengths, segments, SNRs and peaks follow the same rules.

The simulation is resumable (temporary file + ``os.replace`` per file; a
mixture is done when its three files have the expected length, read from the
headers; temporary files of an interrupted run are removed), like
:mod:`data_prep.vox2mix`. Without ``cfg_folder`` an already simulated dump in
``data_folder`` is read as it is.

**Supervision.** Only ``tt`` is used with references in the DPCCN paper; ``tr``
and ``cv`` serve as unsupervised target-domain mixtures (Mixture-Remix). By
default (``unsupervised=("tr", "cv")``) their manifests are mixture-only: no
``s1_wav``/``s2_wav`` columns, and the sidecar ``aishell2mix_prep.json`` records
``"supervised": {"train": false, "valid": false, "test": true}``
(:func:`data_prep.common.is_supervised` reads the header). Pass
``unsupervised=()`` for references everywhere.

**Enrollment** (``enrollment=True``, target = spk1): from the published aux
lists ``<aux_folder>/{tr,cv,tt}_aux.lst`` (``<mixture>.wav<TAB>../<set>/<spk>/<utt>.wav``)
when ``aux_folder`` is given, else drawn by seed among the other Aishell-1
utterances of spk1 (or, without Aishell-1, among the other dumped segments of
spk1); see :mod:`data_prep.enrollment`. Aishell-1 utterances are copied at
8 kHz to ``<data_folder>/enroll/<utt>.wav``. Column ``enroll_wav`` (+ format, opts).

Manifests ``<save_folder>/aishell2mix_{tr,cv,tt}.csv`` (keys ``train``,
``valid``, ``test``): ``ID, duration, mix_wav(+_format, _opts)``, then
``s1_wav``/``s2_wav`` (the ``spk1``/``spk2`` dumps) for supervised splits, then
``enroll_wav`` if asked.

Command line::

    python -m data_prep.aishell2mix --data_folder /data/Aishell2Mix --save_folder results/prep \\
        [--cfg_folder lst/aishell2mix] [--aishell_folder /data/aishell] [--aux_folder lst/aishell2mix] \\
        [--enrollment] [--enroll_seed 0] [--splits tr cv tt] [--unsupervised tr cv] [--skip_bad_files]
"""

import argparse
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
from data_prep.enrollment import (
    ENROLL_KEY,
    Candidate,
    add_enrollment_column,
    choose_enrollment,
    materialise_enrollment,
    read_aux_list,
    resampled_length,
    resolve_listed_path,
    search_roots,
)
from modules.audio import resample

logger = logging.getLogger(__name__)

LABEL = "Aishell2Mix"
PREFIX = "aishell2mix"
SPLITS = tuple(WSJ_SPLITS.values())
#: Aishell2Mix split -> Aishell-1 set.
AISHELL_SETS = OrderedDict([("tr", "train"), ("cv", "dev"), ("tt", "test")])
SAMPLE_RATE = 8000
SOURCE_RATE = 16000
SEGMENT = 32000
PEAK = 0.9
ACTIVE_RANGE_DB = 50.0
#: The published simulator floors powers at float32's machine epsilon.
EPS = float(np.finfo(np.float32).eps)
#: Manifest key -> dump folder.
DUMP_FOLDERS = OrderedDict([("mix", "mix"), ("s1", "spk1"), ("s2", "spk2")])
DEFAULT_UNSUPERVISED = ("tr", "cv")

#: One parsed config line.
CfgLine = namedtuple("CfgLine", ["path1", "start1", "end1", "path2", "start2", "end2", "snr", "name", "src", "lineno"])


def utterance_id(path):
    """Aishell-1 utterance id of a path (``BAC009S0755W0139``).

    Example
    -------
    >>> utterance_id("/data_aishell/wav/dev/S0755/BAC009S0755W0139.wav")
    'BAC009S0755W0139'
    """
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".wav") else name


def speaker_id(utt):
    """Aishell-1 speaker of an utterance id (characters 6-11, ``S0755``).

    Example
    -------
    >>> speaker_id("BAC009S0755W0139")
    'S0755'
    """
    return utt[6:11]


def mixture_name(path1, path2, snr):
    """Output file name of a mixture, as the published simulator writes it.

    Example
    -------
    >>> mixture_name("/a/BAC009S0002W0122.wav", "/b/BAC009S0355W0276.wav", 0.63028)
    'BAC009S0002W0122_BAC009S0355W0276_0.6303.wav'
    >>> mixture_name("/a/x.wav", "/b/y.wav", "3.95400001")
    'x_y_3.954.wav'
    """
    return f"{utterance_id(path1)}_{utterance_id(path2)}_{float(np.round(float(snr), 4))!r}.wav"


def parse_cfg_line(line, path="<cfg>", lineno=1):
    """Parse one config line ``path1 start end path2 start end snr``.

    Example
    -------
    >>> cfg = parse_cfg_line(
    ...     "/w/dev/S1/BAC009S0755W0139.wav 1550 33550 /w/dev/S2/BAC009S0743W0267.wav 1952 33952 4.0702829")
    >>> cfg.start1, cfg.end2, cfg.name
    (1550, 33952, 'BAC009S0755W0139_BAC009S0743W0267_4.0703.wav')
    >>> parse_cfg_line("/a.wav 0 10 /b.wav 0 x 1.0", "tt_cfg.lst", 12)
    Traceback (most recent call last):
    ...
    modules.files.PrepError: tt_cfg.lst:12: malformed start/end '0', 'x' of /b.wav (expected sample ...)
    """
    fields = line.split()
    if len(fields) != 7:
        raise list_error(path, lineno, f"expected 7 fields 'path1 start end path2 start end snr', found {len(fields)}")
    p1, a1, b1, p2, a2, b2, snr = fields
    bounds = []
    for p, a, b in ((p1, a1, b1), (p2, a2, b2)):
        try:
            start, end = int(a), int(b)
        except ValueError:
            start, end = -1, -1
        if start < 0 or end <= start:
            raise list_error(
                path, lineno, f"malformed start/end {a!r}, {b!r} of {p} (expected sample indices, start < end)"
            )
        bounds += [start, end]
    try:
        value = float(snr)
        if not math.isfinite(value):
            raise ValueError(snr)
    except ValueError:
        raise list_error(path, lineno, f"malformed SNR {snr!r}") from None
    name = mixture_name(p1, p2, snr)
    return CfgLine(p1, bounds[0], bounds[1], p2, bounds[2], bounds[3], value, name, str(path), lineno)


def read_cfg(path):
    """Read a config list; duplicate mixtures (same output name) are kept once.

    Example
    -------
    >>> import tempfile
    >>> lst = Path(tempfile.mkdtemp()) / "tt_cfg.lst"
    >>> _ = lst.write_text("/a/x.wav 0 32000 /b/y.wav 5 32005 1.5\\n")
    >>> [c.name for c in read_cfg(lst)]
    ['x_y_1.5.wav']
    """
    path = Path(path)
    if not path.is_file():
        raise PrepError(f"{LABEL} config list not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PrepError(f"cannot read {LABEL} config list {path} ({err})") from None
    out, seen = [], {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cfg = parse_cfg_line(line, path, lineno)
        if cfg.name in seen:
            logger.warning("%s: %s:%d repeats the mixture of line %d; kept once", LABEL, path, lineno, seen[cfg.name])
            continue
        seen[cfg.name] = lineno
        out.append(cfg)
    if not out:
        raise PrepError(f"{LABEL} config list is empty: {path}")
    return out


def active_power(x, range_db=ACTIVE_RANGE_DB):
    """Mean of ``x**2`` over the samples within ``range_db`` dB of the peak power.

    This is the published simulator's ``rms`` (a power, despite its name).

    Example
    -------
    >>> float(active_power(np.array([1.0, -1.0, 1e-4, 0.0])))
    1.0
    """
    energy = np.asarray(x, dtype=float) ** 2
    threshold = energy.max() * 10 ** (-range_db / 10)
    return float(np.mean(energy[energy >= threshold]))


def snr_db(s1, s2, range_db=ACTIVE_RANGE_DB):
    """SNR of ``s1`` over ``s2`` with :func:`active_power` (to check a mixture).

    Example
    -------
    >>> round(snr_db(np.ones(10), 0.5 * np.ones(10)), 4)
    6.0206
    """
    return float(10 * np.log10(active_power(s1, range_db) / active_power(s2, range_db)))


def simulate_mixture(x1, x2, cfg):
    """Cut, scale, mix and normalise one mixture (signals already at 8 kHz).

    Arguments
    ---------
    x1, x2 : numpy.ndarray
        Whole utterances at 8 kHz.
    cfg : CfgLine
        The config line.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mix, spk1, spk2)``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> cfg = parse_cfg_line("/a/x.wav 10 32010 /b/y.wav 0 32000 2.5")
    >>> mix, s1, s2 = simulate_mixture(rng.standard_normal(40000), rng.standard_normal(33000), cfg)
    >>> len(mix), round(snr_db(s1, s2), 6), round(float(max(abs(mix).max(), abs(s1).max(), abs(s2).max())), 6)
    (32000, 2.5, 0.9)
    """
    s1 = np.asarray(x1, dtype=float)[cfg.start1 : cfg.end1]
    s2 = np.asarray(x2, dtype=float)[cfg.start2 : cfg.end2]
    p1 = max(active_power(s1), EPS)
    p2 = max(active_power(s2), EPS)
    s2 = s2 * math.sqrt(p1 / (10 ** (cfg.snr / 10) * p2))
    end = min(len(s1), len(s2))
    s1, s2 = s1[:end], s2[:end]
    mix = s1 + s2
    scale = PEAK / max(np.max(np.abs(mix)), np.max(np.abs(s1)), np.max(np.abs(s2)))
    return mix * scale, s1 * scale, s2 * scale


class _Job(namedtuple("_Job", ["cfg", "src", "frames"])):
    """One mixture to simulate: its config line, resolved sources and length."""


def _plan_jobs(cfgs, roots):
    jobs, short = [], 0
    where = ", ".join(str(r) for r in roots)
    for cfg in cfgs:
        src, segs = [], []
        for listed, start, end in ((cfg.path1, cfg.start1, cfg.end1), (cfg.path2, cfg.start2, cfg.end2)):
            path = resolve_listed_path(listed, roots)
            if path is None:
                raise list_error(cfg.src, cfg.lineno, f"source not found: {listed} (searched under {where})")
            try:
                info = read_wav_info(path, SOURCE_RATE)
            except PrepError as err:
                raise list_error(cfg.src, cfg.lineno, str(err)) from None
            n = resampled_length(info.frames, info.samplerate, SAMPLE_RATE)
            if start >= n:
                raise list_error(
                    cfg.src,
                    cfg.lineno,
                    f"segment [{start}, {end}) starts after the end of {path} ({n} samples at 8 kHz)",
                )
            src.append(path)
            segs.append(min(end, n) - start)
        frames = min(segs)
        short += frames < min(cfg.end1 - cfg.start1, cfg.end2 - cfg.start2)
        jobs.append(_Job(cfg, tuple(src), frames))
    if short:
        logger.warning("%s: %d mixtures are shorter than their listed segments (sources too short)", LABEL, short)
    return jobs


def _simulate(jobs, out_dir):
    out_dir = Path(out_dir)
    folders = [out_dir / f for f in DUMP_FOLDERS.values()]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folders)

    def is_done(job):
        """Whether the mixture and both sources of ``job`` are complete files already."""
        return all(wav_is_complete(f / job.cfg.name, job.frames, SAMPLE_RATE, "PCM_16") for f in folders)

    def make(job):
        """Simulates the mixture of ``job`` and writes ``spk1``, ``spk2`` and ``mix`` atomically."""
        x = []
        for path in job.src:
            data, rate = read_wav(path, SOURCE_RATE)
            x.append(resample(data, rate, SAMPLE_RATE))
        mix, s1, s2 = simulate_mixture(x[0], x[1], job.cfg)
        for folder, signal in (("spk1", s1), ("spk2", s2), ("mix", mix)):
            write_wav_atomic(out_dir / folder / job.cfg.name, signal, SAMPLE_RATE, "PCM_16")

    made, kept = run_simulation(jobs, is_done, make, f"{LABEL} simulate {out_dir.name}")
    logger.info("%s %s: %d mixtures simulated, %d kept from an earlier run", LABEL, out_dir.name, made, kept)


def aishell2mix_manifest_paths(save_folder, splits=SPLITS):
    """Paths of the Aishell2Mix manifests of the requested splits.

    Example
    -------
    >>> {k: Path(v).name for k, v in aishell2mix_manifest_paths("/s").items()}
    {'train': 'aishell2mix_tr.csv', 'valid': 'aishell2mix_cv.csv', 'test': 'aishell2mix_tt.csv'}
    """
    return OrderedDict(
        (key, Path(save_folder) / f"{PREFIX}_{name}.csv") for key, name in WSJ_SPLITS.items() if name in splits
    )


def _speaker_dirs(roots, speakers):
    """Aishell-1 folder of each speaker (``<wav root>/<set>/<spk>``) that exists."""
    found = {}
    for spk in speakers:
        for root in roots:
            for aset in AISHELL_SETS.values():
                if (root / aset / spk).is_dir():
                    found[spk] = root / aset / spk
                    break
            if spk in found:
                break
    return found


def prepare_aishell2mix(
    data_folder,
    save_folder,
    cfg_folder=None,
    aishell_folder=None,
    aux_folder=None,
    enrollment=False,
    enroll_seed=0,
    splits=SPLITS,
    unsupervised=DEFAULT_UNSUPERVISED,
    skip_prep=False,
    skip_bad_files=False,
):
    """Write the Aishell2Mix manifests ``aishell2mix_{tr,cv,tt}.csv`` (simulating if asked).

    Arguments
    ---------
    data_folder : str or Path
        Aishell2Mix root: holds (or receives) ``{tr,cv,tt}/{mix,spk1,spk2}``;
        manifest paths are relative to it.
    save_folder : str or Path
        Where the manifests and ``aishell2mix_prep.json`` are written.
    cfg_folder : str or Path, optional
        Folder of ``{tr,cv,tt}_cfg.lst``: simulate the listed mixtures that
        are not complete in ``data_folder`` yet, and list exactly those.
        Without it, the dump in ``data_folder`` is read as it is.
    aishell_folder : str or Path, optional
        Aishell-1 root (containing ``data_aishell/wav``, or that folder);
        default ``data_folder``. The listed paths are matched by their trailing
        components.
    aux_folder : str or Path, optional
        Folder of ``{tr,cv,tt}_aux.lst`` (enrollment lists).
    enrollment : bool
        Add the ``enroll_wav`` column (target = spk1).
    enroll_seed : int
        Seed of the enrollment draw when no aux list is given.
    splits : sequence of str
        Subset of ``("tr", "cv", "tt")``.
    unsupervised : sequence of str
        Splits written mixture-only (default ``("tr", "cv")``).
    skip_prep : bool
        If True, return the manifest paths without checking anything.
    skip_bad_files : bool
        Leave out of the manifests the mixtures whose audio fails the content
        check (unreadable, non-finite samples, silent, a length that differs
        from the mixture's; see :func:`data_prep.common.check_audio_content`)
        instead of raising; every bad file is listed in
        ``<save_folder>/aishell2mix_rejected.csv``.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}`` (requested splits).

    Raises
    ------
    data_prep.common.PrepError
        Missing folder, list or source (naming the list line), malformed
        list line, wrong sample rate, unreadable WAV file, bad audio content
        (unless ``skip_bad_files``).

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_aishell2mix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_aishell2mix(tmp, n_train=1, n_valid=1, n_test=1)
    >>> paths = prepare_aishell2mix(root, f"{tmp}/prep", cfg_folder=root / "lst")
    >>> Path(paths["train"]).read_text().splitlines()[0]
    'ID,duration,mix_wav,mix_wav_format,mix_wav_opts'
    >>> Path(paths["test"]).read_text().splitlines()[1].split(",")[1]
    '4.0'
    """
    splits = select_splits(splits, SPLITS)
    unsupervised = select_splits(unsupervised, SPLITS, "unsupervised") if unsupervised else ()
    manifests = aishell2mix_manifest_paths(save_folder, splits)
    if skip_prep:
        return {k: str(v) for k, v in manifests.items()}
    data_folder = Path(data_folder)
    split_of = {name: key for key, name in WSJ_SPLITS.items()}
    supervised = {split_of[name]: name not in unsupervised for name in splits}
    keys = {}
    for name in splits:
        keys[split_of[name]] = ["mix"] + (["s1", "s2"] if supervised[split_of[name]] else [])
        keys[split_of[name]] += [ENROLL_KEY] if enrollment else []
    header = {key: manifest_header(k) for key, k in keys.items()}
    aishell_root = Path(aishell_folder) if aishell_folder is not None else data_folder
    options = {
        "dataset": PREFIX,
        "data_folder": str(data_folder.resolve()),
        "splits": list(splits),
        "unsupervised": list(unsupervised),
        "enrollment": bool(enrollment),
    }
    cfg_files = aux_files = None
    if cfg_folder is not None:
        cfg_files = {name: Path(cfg_folder) / f"{name}_cfg.lst" for name in splits}
        options["cfg"] = {n: file_digest(p) if p.is_file() else None for n, p in cfg_files.items()}
        options["aishell_folder"] = str(aishell_root.resolve())
    if enrollment:
        if aux_folder is not None:
            aux_files = {name: Path(aux_folder) / f"{name}_aux.lst" for name in splits}
            options["aux"] = {n: file_digest(p) if p.is_file() else None for n, p in aux_files.items()}
        else:
            options["enroll_seed"] = int(enroll_seed)
        options["aishell_folder"] = str(aishell_root.resolve())
    extra = {SUPERVISED_KEY: supervised, "enrollment": {}}

    def roots():
        """The Aishell-1 folders the config lists' utterances are looked up in (a PrepError if none)."""
        found = search_roots(aishell_root)
        if not found:
            raise PrepError(
                f"Aishell-1 folder not found: {aishell_root} (expected <aishell_folder>/data_aishell/wav/"
                "{train,dev,test}/SXXXX/BAC009SXXXXWXXXX.wav)"
            )
        return found

    def scan():
        """Manifest rows per split: from the dump, or simulated from Aishell-1 and the config lists."""
        if aishell_folder is not None and not Path(aishell_folder).is_dir():
            raise PrepError(f"Aishell-1 folder not found: {aishell_folder}")
        rows = {}
        for name in splits:
            key = split_of[name]
            folders = OrderedDict((k, DUMP_FOLDERS[k]) for k in keys[key] if k != ENROLL_KEY)
            if cfg_files is not None:
                if not cfg_files[name].is_file():
                    raise PrepError(
                        f"{LABEL} config list not found: {cfg_files[name]} (expected <cfg_folder>/{{tr,cv,tt}}_cfg.lst)"
                    )
                jobs = _plan_jobs(read_cfg(cfg_files[name]), roots())
                rows[key] = (name, jobs)
            else:
                check_layout(data_folder, "", (name,), tuple(folders.values()), LABEL)
                rows[key] = (name, None)
        out = {}
        for key, (name, jobs) in rows.items():
            folders = OrderedDict((k, DUMP_FOLDERS[k]) for k in keys[key] if k != ENROLL_KEY)
            if jobs is None:
                out[key] = scan_split(data_folder, name, folders, SAMPLE_RATE, desc=f"{LABEL} {name}")
                continue
            _simulate(jobs, data_folder / name)
            built = []
            for job in jobs:
                audio = OrderedDict(
                    (k, rel_to_root(data_folder / name / f / job.cfg.name, data_folder)) for k, f in folders.items()
                )
                built.append(build_row(job.cfg.name[:-4], job.frames / SAMPLE_RATE, audio))
            out[key] = sorted(built, key=lambda r: r["ID"])
        if enrollment:
            for key in list(out):
                out[key] = _add_enrollment(out[key], WSJ_SPLITS[key], key)
        return out

    def _add_enrollment(split_rows, name, key):
        mixed = {r["ID"]: r["ID"].split("_")[:2] for r in split_rows}
        enroll_dir = data_folder / "enroll"
        if aux_files is not None:
            entries = read_aux_list(aux_files[name])
            missing = [i for i in mixed if i not in entries]
            if missing:
                raise PrepError(
                    f"{len(missing)} mixtures of {name} have no line in {aux_files[name]} "
                    f"(e.g. {', '.join(sorted(missing)[:3])})"
                )
            search = roots()
            for row in split_rows:
                entry = entries[row["ID"]]
                path = resolve_listed_path(entry.listed, search)
                if path is None:
                    raise list_error(entry.path, entry.lineno, f"enrollment utterance not found: {entry.listed}")
                utt, target = utterance_id(path.with_suffix(".wav")), mixed[row["ID"]][0]
                if utt == target:
                    raise list_error(entry.path, entry.lineno, f"the enrollment is the mixed utterance {target}")
                if speaker_id(utt) != speaker_id(target):
                    raise list_error(
                        entry.path,
                        entry.lineno,
                        f"enrollment speaker {speaker_id(utt)} is not spk1 {speaker_id(target)}",
                    )
                materialise_enrollment(path, enroll_dir / f"{utt}.wav", SAMPLE_RATE)
                add_enrollment_column(row, rel_to_root(enroll_dir / f"{utt}.wav", data_folder))
            extra["enrollment"][key] = {"source": "aux_list", "dropped": 0}
            return split_rows
        targets = [(i, speaker_id(u[0]), set(u)) for i, u in mixed.items()]
        needed = {spk for _, spk, _ in targets}
        search = search_roots(aishell_root)
        dirs = _speaker_dirs(search, needed)
        if dirs:
            source = "aishell1"
            candidates = {spk: [Candidate(p.stem, p) for p in sorted(d.glob("*.wav"))] for spk, d in dirs.items()}
        else:
            source = "corpus"
            candidates = {}
            for folder in ("spk1", "spk2"):
                base = data_folder / name / folder
                index = 0 if folder == "spk1" else 1
                for wav in sorted(base.glob("*.wav")) if base.is_dir() else ():
                    utt = wav.stem.split("_")[index]
                    candidates.setdefault(speaker_id(utt), []).append(Candidate(utt, rel_to_root(wav, data_folder)))
        chosen, missing = choose_enrollment(targets, candidates, enroll_seed)
        if missing:
            logger.warning(
                "%s %s: %d mixtures left out, their target speaker has no other utterance (e.g. %s)",
                LABEL,
                name,
                len(missing),
                ", ".join(missing[:3]),
            )
        kept = []
        for row in split_rows:
            cand = chosen.get(row["ID"])
            if cand is None:
                continue
            if source == "aishell1":
                materialise_enrollment(cand.ref, enroll_dir / f"{cand.utt_id}.wav", SAMPLE_RATE)
                rel = rel_to_root(enroll_dir / f"{cand.utt_id}.wav", data_folder)
            else:
                rel = cand.ref
            kept.append(add_enrollment_column(row, rel))
        if not kept:
            raise PrepError(f"no enrollment utterance for any mixture of {name}: give aux lists (aux_folder)")
        extra["enrollment"][key] = {"source": source, "dropped": len(missing)}
        return kept

    if cfg_files is None and not data_folder.is_dir():
        raise PrepError(f"{LABEL} data_folder not found: {data_folder}")
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
    """Command-line parser of ``python -m data_prep.aishell2mix``.

    Example
    -------
    >>> args = build_parser().parse_args(["--data_folder", "d", "--save_folder", "s", "--unsupervised"])
    >>> args.unsupervised, args.enrollment
    ([], False)
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.aishell2mix",
        description="Write Aishell2Mix CSV manifests (simulating from Aishell-1 with the published lists).",
    )
    parser.add_argument("--data_folder", required=True, help="Aishell2Mix root ({tr,cv,tt}/{mix,spk1,spk2})")
    parser.add_argument("--save_folder", required=True, help="output folder of the manifests")
    parser.add_argument("--cfg_folder", default=None, help="folder of {tr,cv,tt}_cfg.lst: simulate")
    parser.add_argument("--aishell_folder", default=None, help="Aishell-1 root (default: data_folder)")
    parser.add_argument("--aux_folder", default=None, help="folder of {tr,cv,tt}_aux.lst (enrollment)")
    parser.add_argument("--enrollment", action="store_true", help="add the enroll_wav column")
    parser.add_argument("--enroll_seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument(
        "--unsupervised",
        nargs="*",
        default=list(DEFAULT_UNSUPERVISED),
        choices=SPLITS,
        help="splits written mixture-only (default: tr cv; give none for references everywhere)",
    )
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    parser.add_argument(
        "--skip_bad_files",
        action="store_true",
        help="leave out mixtures with bad audio (non-finite, silent, wrong length), listed in "
        "<save_folder>/aishell2mix_rejected.csv",
    )
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.aishell2mix``; returns the exit status."""
    return run_cli(build_parser(), prepare_aishell2mix, argv)


if __name__ == "__main__":
    sys.exit(main())
