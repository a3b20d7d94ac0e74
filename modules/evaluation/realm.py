"""Reference-free evaluation on REAL-M: WER, DNSMOS and the blind SI-SNR estimate, systems side by side.

Reads a manifest that ``data_prep.realm`` writes (``realm_test.csv``: ``ID``,
``mix_wav``, ``sentence1``, ``sentence2``, optionally REAL-M's own SepFormer
separations ``sep1_wav``, ``sep2_wav``) and scores *systems*:

``mixture``
    the unprocessed mixture (the papers' first row): one transcript against
    both transcriptions; its DNSMOS; no SI-SNR estimate (it needs a separated
    signal).
``reference``
    the separations shipped with REAL-M (``--with_separations`` at prep time).
``NAME=FOLDER``
    a trained run or an exported model folder (separated here with
    :func:`modules.inference.separate_signal`, written to
    ``<output_folder>/NAME/separations/<ID>_s<k>.wav`` and reused by later
    evaluations), or a folder that already holds ``<ID>_s1.wav``,
    ``<ID>_s2.wav``, ... (e.g. a run's ``separations_<set>/`` from a
    mixture-only test set).

Per system it writes ``results.csv`` (one row per mixture: for each ASR the
words, errors and WER of the best stream-to-transcription assignment and the
transcripts; DNSMOS SIG/BAK/OVRL/P808 averaged over the streams; the
estimated SI-SNR averaged over the streams), ``summary.json`` and
``summary.md``; and for all systems ``comparison.md`` / ``comparison.csv``
(WER over the corpus: total errors over total reference words; DNSMOS and
SI-SNR estimates averaged over mixtures). See :mod:`modules.evaluation.wer`
for the assignment and the text normalisation, :mod:`modules.evaluation.dnsmos`
for resampling and levels, :mod:`modules.evaluation.asr` for the recognisers.

Recognisers (``--asr``, repeatable; :func:`modules.evaluation.asr.make_asr`):
``pocketsphinx`` (the offline default) or ``[NAME=][INTERFACE:]SOURCE``, a
SpeechBrain ``EncoderASR`` / ``EncoderDecoderASR`` / ``WhisperASR`` model
folder or hub id; each gives the columns ``<NAME>_wer`` etc.

Command line::

    python -m modules.evaluation.realm --manifest results/prep/realm_test.csv --data_folder /data/REAL-M-v0.1.0 \\
        --system convtasnet=results/LibriMix/baseline/convtasnet_librimix_sep_clean/1234 --system reference \\
        --asr e2e=speechbrain/asr-transformer-transformerlm-librispeech --asr pocketsphinx \\
        --dnsmos --estimator /models/REAL-M-sisnr-estimator --output_folder results/REALM/eval

``--config <yaml>`` reads the same options from a yaml file (keys are the
option names, ``asr`` and ``system`` lists; options on the command line win),
e.g. ``recipes/REALM/evaluate/asr_papers.yaml`` for the papers' recognisers.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

from modules.audio import resample
from modules.evaluation.wer import assign_transcripts, corpus_wer, mixture_errors
from modules.files import write_csv_atomic, write_text_atomic

__all__ = [
    "build_parser",
    "evaluate_separations",
    "evaluate_systems",
    "evaluate_test_stage",
    "main",
    "read_manifest",
    "read_options",
    "summarise",
]

logger = logging.getLogger(__name__)

DNSMOS_KEYS = ("sig", "bak", "ovrl", "p808")


def read_manifest(path, data_folder=None, limit=None):
    """Rows of a REAL-M manifest with ``$data_root`` replaced by ``data_folder``.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(f, "w").write("ID,duration,mix_wav,sentence1,sentence2\\na,1.0,$data_root/x.wav,hi,yo\\n")
    >>> read_manifest(f, "/data")[0]["mix_wav"]
    '/data/x.wav'
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        for key, value in row.items():
            if "$data_root" in value:
                if data_folder is None:
                    raise ValueError(f"{path}: paths use $data_root: give --data_folder")
                row[key] = value.replace("$data_root", str(data_folder))
    missing = [c for c in ("ID", "mix_wav", "sentence1", "sentence2") if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: not a REAL-M manifest (no {missing} column)")
    return rows[:limit] if limit else rows


def _read_mono(path):
    signal, rate = soundfile.read(path, dtype="float64", always_2d=True)
    return signal.mean(axis=1), rate


class System:
    """A source of separated streams per mixture."""

    def __init__(self, name):
        self.name = name

    def streams(self, row, mixture, rate):
        """``[signal, ...]`` (mono arrays at ``rate``) for a manifest row."""
        raise NotImplementedError


class MixtureSystem(System):
    """The unprocessed mixture as one stream (the papers' first row)."""

    def streams(self, row, mixture, rate):
        """The signals of this system for one REAL-M mixture."""
        return [mixture]


class ReferenceSystem(System):
    """The separations shipped with REAL-M (``sep1_wav``, ``sep2_wav`` of the manifest)."""

    def streams(self, row, mixture, rate):
        """The signals of this system for one REAL-M mixture."""
        if not row.get("sep1_wav"):
            raise ValueError("the manifest has no sep1_wav/sep2_wav: prepare with --with_separations")
        return [_read_mono(row[f"sep{k}_wav"])[0] for k in (1, 2)]


class FolderSystem(System):
    """A folder of ``<ID>_s<k>.wav``, at any rate (brought to the mixture's)."""

    def __init__(self, name, folder):
        super().__init__(name)
        self.folder = Path(folder)

    def streams(self, row, mixture, rate):
        """The signals of this system for one REAL-M mixture."""
        files = sorted(self.folder.glob(f"{row['ID']}_s[0-9]*.wav"), key=lambda p: int(p.stem.rsplit("_s", 1)[1]))
        if not files:
            raise FileNotFoundError(f"{self.folder}: no {row['ID']}_s1.wav")
        streams = [_read_mono(p) for p in files]
        # a recipe separates at its own rate (e.g. REAL-M's 8 kHz brought to 16 kHz): back to the mixture's
        return [s if r == rate else resample(s, r, rate) for s, r in streams]


class ModelSystem(System):
    """Separates with a trained run or an export; keeps the separations for later evaluations."""

    def __init__(self, name, source, folder, device="cpu", **options):
        super().__init__(name)
        from modules.inference import load_model

        self.model = load_model(source, device=device)
        self.folder = Path(folder)
        self.options = options

    def streams(self, row, mixture, rate):
        """The signals of this system for one REAL-M mixture."""
        from modules.inference import separate_signal

        cached = FolderSystem(self.name, self.folder)
        try:
            return cached.streams(row, mixture, rate)
        except FileNotFoundError:
            pass
        out = separate_signal(self.model, mixture, rate, **self.options)
        self.folder.mkdir(parents=True, exist_ok=True)
        for k in range(out.speakers.shape[1]):
            soundfile.write(self.folder / f"{row['ID']}_s{k + 1}.wav", out.speakers[:, k], rate, subtype="FLOAT")
        return [out.speakers[:, k] for k in range(out.speakers.shape[1])]


def make_system(spec, output_folder, device="cpu", **options):
    """``mixture``, ``reference``, or ``NAME=FOLDER`` (a run, an export, or a folder of ``<ID>_s<k>.wav``)."""
    if spec in ("mixture", "reference"):
        return MixtureSystem(spec) if spec == "mixture" else ReferenceSystem(spec)
    if "=" not in spec:
        raise ValueError(f"--system {spec!r}: use mixture, reference or NAME=FOLDER")
    name, folder = spec.split("=", 1)
    path = Path(folder)
    if (path / "hyperparams.yaml").is_file() or (path / "export_info.json").is_file():
        return ModelSystem(name, path, Path(output_folder) / name / "separations", device=device, **options)
    if path.is_dir():
        return FolderSystem(name, path)
    raise FileNotFoundError(f"--system {spec}: {folder} is not a folder")


def evaluate_row(system, row, asrs, use_dnsmos, estimator):
    """The metrics of one mixture for one system (a dict, one CSV row)."""
    mixture, rate = _read_mono(row["mix_wav"])
    streams = system.streams(row, mixture, rate)
    references = [row["sentence1"], row["sentence2"]]
    out = {"ID": row["ID"], "n_streams": len(streams)}
    for asr in asrs:
        hyps = [asr.transcribe(s, rate) for s in streams]
        if isinstance(system, MixtureSystem):
            errors, words = mixture_errors(hyps[0], references)
            out[f"{asr.name}_hyp"] = hyps[0]
        else:
            assigned = assign_transcripts(hyps, references)
            errors = sum(a["errors"] for a in assigned)
            words = sum(a["words"] for a in assigned)
            out[f"{asr.name}_hyp"] = " | ".join(hyps[a["stream"]] if a["stream"] is not None else "" for a in assigned)
        out[f"{asr.name}_errors"], out[f"{asr.name}_words"] = errors, words
        out[f"{asr.name}_wer"] = corpus_wer([errors], [words])
    if use_dnsmos:
        from modules.evaluation.dnsmos import dnsmos

        scores = [dnsmos(s, rate) for s in streams]
        for key in DNSMOS_KEYS:
            out[f"dnsmos_{key}"] = float(np.mean([s[key] for s in scores]))
    if estimator is not None:
        if isinstance(system, MixtureSystem):
            out["sisnr_hat"] = float("nan")
        else:
            n = min(len(mixture), *(len(s) for s in streams))
            sep = torch.as_tensor(np.stack([s[:n] for s in streams]), dtype=torch.float32)
            mix = torch.as_tensor(mixture[:n], dtype=torch.float32).expand_as(sep)
            with torch.no_grad():
                out["sisnr_hat"] = float(estimator(sep, mix).mean())
    return out


def summarise(rows, asr_names):
    """Means over mixtures; WER over the corpus (errors / words, in percent)."""
    summary = {"n_mixtures": len(rows)}
    for name in asr_names:
        summary[f"{name}_wer"] = round(
            corpus_wer([r[f"{name}_errors"] for r in rows], [r[f"{name}_words"] for r in rows]), 2
        )
    for key in [f"dnsmos_{k}" for k in DNSMOS_KEYS] + ["sisnr_hat"]:
        values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
        if any(key in r for r in rows):
            summary[key] = round(float(np.mean(values)), 3) if values else float("nan")
    return summary


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else value


def evaluate_systems(manifest, systems, output_folder, data_folder=None, asr=("pocketsphinx",), use_dnsmos=True,
                     estimator=None, device="cpu", limit=None, progress=False, asr_savedir=None,
                     **options):  # fmt: skip
    """Scores systems on a REAL-M manifest and writes their results and the comparison table.

    Arguments
    ---------
    manifest : str
    systems : list of str
        :func:`make_system` specs.
    output_folder : str
    data_folder : str, optional
        Replaces ``$data_root`` in the manifest.
    asr : list of str or ASR
        :func:`modules.evaluation.asr.make_asr` specs or recognisers already
        loaded (empty: no WER); their names must differ (they name the columns).
    use_dnsmos : bool
    estimator : str, optional
        A checkpoint folder for :class:`~modules.evaluation.sisnr_estimator.BlindSISNREstimator`.
    device : str
    limit : int, optional
        Only the first mixtures.
    progress : bool
    asr_savedir : str, optional
        SpeechBrain's ``from_hparams`` ``savedir`` is ``<asr_savedir>/<name>`` per recogniser.
    **options
        For :func:`modules.inference.separate_signal` (``chunk_seconds``, ...).

    Returns
    -------
    dict
        ``{system: summary}``.
    """
    from modules.evaluation.asr import make_asr

    output_folder = Path(output_folder)
    rows = read_manifest(manifest, data_folder, limit)
    asrs = [spec if hasattr(spec, "transcribe") else make_asr(spec, device=device, savedir=asr_savedir) for spec in asr]
    names = [a.name for a in asrs]
    if len(set(names)) < len(names):
        raise ValueError(f"--asr: two recognisers are named alike ({names}): give NAME=... to one of them")
    est = None
    if estimator:
        from modules.evaluation.sisnr_estimator import BlindSISNREstimator

        est = BlindSISNREstimator().load_speechbrain(estimator)
    summaries = {}
    for spec in systems:
        system = make_system(spec, output_folder, device=device, **options)
        iterator = rows
        if progress:
            from tqdm import tqdm

            iterator = tqdm(rows, desc=system.name, unit="mixture")
        results = [evaluate_row(system, row, asrs, use_dnsmos, est) for row in iterator]
        folder = output_folder / system.name
        folder.mkdir(parents=True, exist_ok=True)
        header = list(dict.fromkeys(k for r in results for k in r))
        write_csv_atomic(folder / "results.csv", header, [{k: _fmt(v) for k, v in r.items()} for r in results])
        summary = {"system": system.name, **summarise(results, [a.name for a in asrs])}
        write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_text_atomic(folder / "summary.md", comparison_table({system.name: summary}))
        summaries[system.name] = summary
    write_text_atomic(output_folder / "comparison.md", comparison_table(summaries))
    columns = list(dict.fromkeys(k for s in summaries.values() for k in s))
    write_csv_atomic(
        output_folder / "comparison.csv", columns, [{k: _fmt(v) for k, v in s.items()} for s in summaries.values()]
    )
    return summaries


def evaluate_separations(manifest, separations, output_folder, name="separated", **kwargs):
    """Scores one folder of ``<ID>_s<k>.wav`` (a run's ``separations_<set>/``); returns its summary dict.

    What ``python -m modules.evaluation.realm --no_mixture --system NAME=FOLDER``
    does, in process: ``<output_folder>/<name>/results.csv`` (one row per
    mixture), ``summary.json`` and the comparison table are written. The
    keyword arguments are :func:`evaluate_systems`' (``data_folder``, ``asr``,
    ``use_dnsmos``, ``estimator``, ``device``, ...).

    Returns
    -------
    dict
        ``n_mixtures``, ``<asr>_wer`` per recogniser, ``dnsmos_*`` with DNSMOS,
        ``sisnr_hat`` with an estimator.
    """
    if not Path(separations).is_dir():
        raise FileNotFoundError(f"{separations}: no folder of separations")
    summary = evaluate_systems(manifest, [f"{name}={separations}"], output_folder, **kwargs)[name]
    return {k: v for k, v in summary.items() if k != "system"}


def evaluate_test_stage(brain, written, set_name="realm"):
    """The REAL-M test stage of a recipe: scores the separations it wrote and adds the scores to its summary.

    Called from a Brain's ``on_tested`` (main process) once ``test_results_<set_name>.csv``
    was written. Reads, from the yaml (``brain.hparams``):

    ``realm_eval`` (default True)
        False: separations only, as before.
    ``realm_asr`` (default ``[pocketsphinx]``)
        :func:`modules.evaluation.asr.make_asr` specs, e.g. ``e2e=speechbrain/asr-...``
        (the column is ``<name>_wer``; the paper tables read ``e2e_wer``, ``w2v_wer``,
        ``wavlm_wer``, the names of ``recipes/REALM/evaluate/asr_papers.yaml``); ``[]``: no WER.
    ``realm_asr_savedir`` (default None)
        Where SpeechBrain links each recogniser's files.
    ``realm_dnsmos`` (default True)
        DNSMOS SIG/BAK/OVRL/P808 (``dnsmos_*``).
    ``realm_estimator`` (default None)
        A trained blind SI-SNR estimator folder (``sisnr_hat``); none: no estimate.

    The manifest is the test set's (``extra_test_sets[set_name]``: ``manifest``,
    ``data_folder``); separations come from ``<output_folder>/separations_<set_name>/``
    and are brought back to the mixture's rate. Writes
    ``<output_folder>/evaluation_<set_name>/separated/results.csv`` (one row per mixture)
    and adds the scores to ``test_summary_<set_name>.json`` / ``.md`` (where
    ``python -m modules.results tables`` reads them).

    Returns
    -------
    dict or None
        The scores, or None when nothing was evaluated (off, no such set, or a
        recogniser that could not be loaded: logged as an error with the command to
        run it by hand).
    """
    from modules.evaluation.asr import ASRLoadError

    hparams = vars(brain.hparams)  # hparams.get("key": the spelling upstream's line-based check of a yaml's keys sees
    out = Path(hparams["output_folder"])
    spec = (hparams.get("extra_test_sets") or {}).get(set_name)
    if not hparams.get("realm_eval", True) or spec is None or f"test_results_{set_name}.csv" not in written:
        return None
    separations = out / f"separations_{set_name}"
    if not separations.is_dir():  # e.g. a --debug run on a stand-in set whose items have references
        logger.warning("%s: no separations written (the set has references?): no REAL-M scores", separations)
        return None
    asr = hparams.get("realm_asr", ["pocketsphinx"]) or []
    asr = [asr] if isinstance(asr, str) else list(asr)
    options = {
        "data_folder": spec["data_folder"],
        "asr": asr,
        "use_dnsmos": bool(hparams.get("realm_dnsmos", True)),
        "estimator": hparams.get("realm_estimator"),
        "asr_savedir": hparams.get("realm_asr_savedir"),
        "device": str(getattr(brain, "device", "cpu")),
    }
    try:
        scores = evaluate_separations(spec["manifest"], separations, out / f"evaluation_{set_name}", **options)
    except (ASRLoadError, FileNotFoundError, ValueError) as err:
        logger.error(
            "REAL-M evaluation of %s not done (%s); run it by hand: python -m modules.evaluation.realm "
            "--manifest %s --data_folder %s --no_mixture --system run=%s --asr ...",
            separations, err, spec["manifest"], spec["data_folder"], separations,
        )  # fmt: skip
        return None
    path = out / f"test_summary_{set_name}.json"
    summary = json.loads(path.read_text()) if path.is_file() else {"test_set": set_name}
    summary.update({k: v for k, v in scores.items() if k != "n_mixtures"})
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    md = path.with_suffix(".md")
    text = md.read_text() if md.is_file() else ""
    table = comparison_table({"separated": scores})
    write_text_atomic(md, f"{text}\nReference-free scores (modules.evaluation.realm; WER in %):\n\n{table}")
    logger.info("REAL-M scores added to %s", path)
    return scores


def comparison_table(summaries):
    """Markdown table, one row per system.

    Example
    -------
    >>> print(comparison_table({"mixture": {"system": "mixture", "n_mixtures": 2, "pocketsphinx_wer": 110.5}}))
    | system | mixtures | WER pocketsphinx (%) |
    |---|---|---|
    | mixture | 2 | 110.50 |
    <BLANKLINE>
    """
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s if k not in ("system", "n_mixtures")))
    names = {f"dnsmos_{k}": f"DNSMOS {k.upper()}" for k in DNSMOS_KEYS}
    names["sisnr_hat"] = "SI-SNR estimate (dB)"
    labels = [names.get(k, f"WER {k[:-4]} (%)" if k.endswith("_wer") else k) for k in keys]
    lines = ["| system | mixtures | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(keys)]
    for name, s in summaries.items():
        values = [f"{s[k]:.2f}" if isinstance(s.get(k), float) else str(s.get(k, "")) for k in keys]
        lines.append(f"| {name} | {s.get('n_mixtures', '')} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def build_parser():
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(description="Reference-free evaluation on REAL-M (WER, DNSMOS, SI-SNR estimate)")
    parser.add_argument("--config", default=None, help="a yaml file with any of these options (command line wins)")
    parser.add_argument("--manifest", default=None, help="realm_test.csv (or realm_pretrain.csv) from data_prep.realm")
    parser.add_argument("--data_folder", default=None, help="the REAL-M root ($data_root in the manifest)")
    systems_help = "mixture, reference, or NAME=FOLDER (a run, an export or separations); repeatable"
    parser.add_argument("--system", action="append", default=None, help=systems_help)
    parser.add_argument("--no_mixture", action="store_true", default=None, help="leave out the unprocessed mixture")
    asr_help = (
        "pocketsphinx (default), or [NAME=][INTERFACE:]SOURCE: a SpeechBrain ASR folder or hub id, INTERFACE one of "
        "encoder, encoder_decoder, whisper (default: read from its hyperparams.yaml); repeatable, one WER column "
        "each; 'none' for no WER"
    )
    parser.add_argument("--asr", action="append", default=None, help=asr_help)
    savedir_help = "where SpeechBrain links each recogniser's files (<dir>/<name>); default: used in place / HF cache"
    parser.add_argument("--asr_savedir", default=None, help=savedir_help)
    parser.add_argument("--dnsmos", action="store_true", default=None, help="DNSMOS SIG/BAK/OVRL (speechmos)")
    parser.add_argument("--estimator", default=None, help="SI-SNR estimator checkpoint folder (SpeechBrain format)")
    parser.add_argument("--output_folder", default=None, help="default: results/REALM/evaluation")
    parser.add_argument("--device", default=None, help="default: cpu")
    parser.add_argument("--limit", type=int, default=None, help="only the first N mixtures")
    parser.add_argument("--chunk_seconds", type=float, default=None, help="default: 10")
    parser.add_argument("--noprogressbar", action="store_true", default=None)
    return parser


#: Values of options given neither on the command line nor in ``--config``.
DEFAULTS = {"output_folder": "results/REALM/evaluation", "device": "cpu", "chunk_seconds": 10.0}


def read_options(argv=None):
    """The options of :func:`main`: the command line over ``--config`` over :data:`DEFAULTS`.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "c.yaml")
    >>> _ = open(f, "w").write("manifest: m.csv\\nasr: [pocketsphinx, e2e=encoder_decoder:/m]\\ndevice: cuda\\n")
    >>> o = read_options(["--config", f, "--device", "cpu"])
    >>> o.manifest, o.asr, o.device, o.output_folder
    ('m.csv', ['pocketsphinx', 'e2e=encoder_decoder:/m'], 'cpu', 'results/REALM/evaluation')
    """
    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    config = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        known = {a.dest for a in parser._actions} - {"help", "config"}
        unknown = sorted(set(config) - known) if isinstance(config, dict) else ["(not a mapping)"]
        if unknown:
            parser.error(f"{args.config}: unknown options {unknown} (known: {sorted(known)})")
        for key in ("asr", "system"):
            if isinstance(config.get(key), str):
                config[key] = [config[key]]
    for key, value in vars(args).items():
        if value is None:
            setattr(args, key, config.get(key, DEFAULTS.get(key)))
    if not args.manifest:
        parser.error("--manifest is required (on the command line or in --config)")
    return args


def main(argv=None):
    """``python -m modules.evaluation.realm``; returns the exit code."""
    from modules.evaluation.asr import ASRLoadError

    args = read_options(argv)
    systems = ([] if args.no_mixture else ["mixture"]) + list(args.system or [])
    asr = [] if list(args.asr or []) == ["none"] else list(args.asr or ["pocketsphinx"])
    try:
        summaries = evaluate_systems(
            args.manifest, systems, args.output_folder, data_folder=args.data_folder, asr=asr,
            use_dnsmos=bool(args.dnsmos), estimator=args.estimator, device=args.device, limit=args.limit,
            progress=not args.noprogressbar, chunk_seconds=args.chunk_seconds, asr_savedir=args.asr_savedir,
        )  # fmt: skip
    except (ASRLoadError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(comparison_table(summaries))
    print(f"Written to {args.output_folder}/ (comparison.md, comparison.csv, <system>/results.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
