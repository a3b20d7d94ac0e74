"""DPCCN against the DPCCN paper's separation baseline, Conv-TasNet (Table 3), on mini corpora.

Both systems are the real recipe ``recipes/LibriMix/dpccn`` (``convtasnet.yaml``: the
Conv-TasNet paper's configuration with skip paths; ``dpccn.yaml``), trained on the same mini
Libri2Mix (8 kHz, min, clean; :func:`data_prep.mini.make_mini_librimix`) with the same seeds
and the same overrides file (``hparams/cpu_small.yaml``: the small Conv-TasNet and DPCCN sizes,
4 epochs of 2 s crops, batches of 4, Adam 1e-3), and each run tests

* in domain: the mini Libri2Mix test set (speakers unseen in training);
* out of domain: the mini Aishell2Mix test set (``data_prep.mini.make_mini_aishell2mix``:
  tonal, Mandarin-like procedural speakers in a small reverberant room with mains hum), the
  recipe's ``aishell2mix`` extra test set, simulated by the recipe's own preparation from the
  published-format config list -- the paper's Table 3 cross-domain column.

The report gives SI-SNRi per test set, mean +- std over the seeds, and the paired difference
DPCCN minus Conv-TasNet, seed by seed (:mod:`method_vs_baseline`).

``--section tse`` runs the paper's extraction pair instead (sDPCCN against TD-SpeakerBeam,
``sdpccn.yaml`` / ``td_speakerbeam.yaml``, enrollments from the mini corpora's published-format
aux lists), ``--section both`` runs the two one after the other (two reports). The TSE section
is not part of the measured default run: it doubles the time. It was run once to check that it
runs (seed 1, ``--epochs 2``: 87 s); its 3-seed figures are not measured.

Epochs: 10 for both systems unless ``--epochs`` says otherwise (``cpu_small.yaml``'s 4 leave
DPCCN at its initial state: -0.27 +- 0.04 dB SI-SNRi in domain over 3 seeds, Conv-TasNet
2.10 +- 0.30 dB).

Run (one core, single-threaded runs)::

    python tests/benchmarks/bench_dpccn_vs_baseline.py --work_dir /tmp/bench_dpccn --json /tmp/bench_dpccn.json

Measured wall time on one core of the 2-core development machine (corpora included, the other
core busy): 538 s (9.0 min) for the default run (``--section ss``, 3 seeds, both systems, 10 epochs),
257 s with ``--epochs 4``. The figures are in the recipe README
(``recipes/LibriMix/dpccn/README.md``, "Method vs baseline on mini corpora").

The harness (:mod:`method_vs_baseline`) takes one baseline per call; the two sections are two
calls of its ``main`` sharing the corpora and the work folder (this script's wrapper; the
harness is unchanged).

Procedural mini corpora, small models and a few CPU epochs: what this shows says nothing about
the paper's full-scale numbers.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from method_vs_baseline import System, main

RECIPE = "recipes/LibriMix/dpccn"
#: N_epochs of both systems unless --epochs is given (shared: never a setting of one system).
DEFAULT_EPOCHS = 10

#: Mini corpora (data_prep.mini writers and their sizes): Libri2Mix 8k min clean with the
#: enrollment lists and LibriSpeech utterances the TSE section needs (the rest of the corpus is
#: byte-identical without them), and the Aishell2Mix simulator inputs (only ``tt`` is used).
CORPORA = {
    "librimix": {
        "n_train": 96,
        "n_valid": 8,
        "n_test": 16,
        "sample_rates": (8000,),
        "modes": ("min",),
        "n_spks": (2,),
        "mix_types": ("mix_clean",),
        "enrollment": True,
    },
    "aishell2mix": {"n_train": 1, "n_valid": 1, "n_test": 16},
}

#: Recipe option -> corpus (or a folder inside one).
DATA = {
    "data_folder": "librimix",
    "aishell2mix_folder": "aishell2mix",
    "aishell2mix_cfg_folder": ("aishell2mix", "lst"),
}
#: The TSE yamls' enrollment lists (published format, written by the mini corpora).
TSE_DATA = {**DATA, "aux_list": ("librimix", "lists/libri2mix"), "aishell2mix_aux_folder": ("aishell2mix", "lst")}

SETS = {
    "Libri2Mix test (in domain)": "test_summary.json",
    "Aishell2Mix test (out of domain)": "test_summary_aishell2mix.json",
}

SECTIONS = {
    "ss": [
        System("Conv-TasNet", RECIPE, "convtasnet.yaml", data=DATA, sets=SETS, baseline=True),
        System("DPCCN", RECIPE, "dpccn.yaml", data=DATA, sets=SETS),
    ],
    "tse": [
        System("TD-SpeakerBeam", RECIPE, "td_speakerbeam.yaml", data=TSE_DATA, sets=SETS, baseline=True),
        System("sDPCCN", RECIPE, "sdpccn.yaml", data=TSE_DATA, sets=SETS),
    ],
}


def _with_suffix(path, suffix):
    path = Path(path)
    return str(path.with_name(f"{path.stem}_{suffix}{path.suffix}"))


def run(argv=None):
    """``--section ss|tse|both``; the other options are the harness's (``--seeds``, ``--work_dir``, ``--json``...)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--section", choices=("ss", "tse", "both"), default="ss")
    parser.add_argument("--work_dir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true")
    args, rest = parser.parse_known_args(argv)
    if not any(a == "--epochs" or a.startswith("--epochs=") for a in rest):
        rest = ["--epochs", str(DEFAULT_EPOCHS), *rest]
    if "-h" in rest or "--help" in rest:
        print("--section {ss,tse,both}: the separation pair (default), the extraction pair, or both\n")
        return main(__doc__, CORPORA, SECTIONS["ss"], argv=rest)
    sections = ["ss", "tse"] if args.section == "both" else [args.section]
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_dpccn_"))
    try:
        for section in sections:
            extra = ["--work_dir", str(work)]
            if args.json:
                extra += ["--json", args.json if len(sections) == 1 else _with_suffix(args.json, section)]
            print(f"## {section.upper()}: {' vs '.join(s.name for s in SECTIONS[section])}", flush=True)
            status = main(__doc__, CORPORA, SECTIONS[section], argv=[*rest, *extra])
            if status:
                return status
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
