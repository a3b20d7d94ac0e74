"""SADDEL against its paper's separation baseline bl.SS, on mini WSJ0-mix + MUSAN, in and out of domain.

::

    python tests/benchmarks/bench_saddel_vs_baseline.py [--seeds 1 2 3] [--work_dir DIR] [--json OUT]

The two systems are the real recipe (``recipes/WSJ0Mix/saddel/train.py``, prep -> step1 ->
unrolled -> test, as a user runs it) with two of its yamls:

* **bl.SS** (``bl_ss.yaml``, the baseline): the same one-and-rest Conv-TasNet, recursion, flag
  and two stages, trained on the noisy separation scenarios only (2sp+n, 3sp+n);
* **SADDEL** (``saddel.yaml``): the same, trained on all five scenarios (1sp+n, 2sp, 3sp, 2sp+n,
  3sp+n), the paper's multitask criterion.

bl.SS is the comparison that isolates what the paper proposes (multitask training data for one
model): same model, cost and schedule, only the training scenarios differ. The paper's other
systems (cascade, A2PIT, bl.SD) change the model or the output layout as well; one baseline fits
the time budget.

Both take ``hparams/cpu_small.yaml`` (its small Conv-TasNet, fp32) and the same extra settings
(:data:`COMMON`): batches of 5 one-second crops, an encoder of kernel 32 and stride 16 (as the
SADDEL learning test; half the frames of the recipe's 16 / 8), 100 mixtures an epoch for both
(so both make the same number of updates; SADDEL spreads them over five scenarios, bl.SS over
two), ``EPOCHS`` epochs in each of the two stages, 6 test mixtures per scenario, Fig. 2 off (not
reported here). Seeds 1 2 3.

Test sets (every one scored on the five scenarios, SI-SNRi with the estimated speaker count, as
the paper's tables; the report gives each scenario and their mean):

* in domain: the recipe's main test set, mini WSJ0-mix ``tt`` + MUSAN test noise (Table 1's
  condition);
* out of domain: ``librispeech_musan``, mini Librispeech-mix (LibriSpeech ``test-clean``
  speakers and text, the paper's Table 2 L condition) with MUSAN test noise.

The mini corpora are procedural (synthetic voices and noises, :mod:`data_prep.mini`), the models
small and the training a few CPU epochs: the figures say nothing about full scale.

Measured wall time of one full run (3 seeds, both systems, one thread, 5 + 5 epochs): 562 s
(9.4 minutes; 84-102 s a run, 538 s of user CPU) on this project's 2-core machine shared with
other jobs. The figures are in recipes/WSJ0Mix/saddel/README.md ("Method vs baseline on mini
corpora").

This wraps the shared harness (``tests/benchmarks/method_vs_baseline.py``: corpora, runs, report)
rather than calling its ``main``: the harness reports one top-level number per summary file, and
SADDEL's tables are per scenario, so each scenario of a summary is reported as its own row
(:func:`scenario_view`).
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from method_vs_baseline import System, format_report, make_corpora, run_system

SCENARIOS = ("1sp+n", "2sp", "3sp", "2sp+n", "3sp+n")
METRIC = "si-snr_i"
EPOCHS = 5  # per stage (step1, then unrolled)
OVERRIDES_FILE = "hparams/cpu_small.yaml"
CORPORA = {
    "wsj0mix": {"n_train": 40, "n_valid": 3, "n_test": 6, "sample_rates": (8000,), "modes": ("min",)},
    "musan": {"n_train": 16, "n_valid": 2, "n_test": 2},
    "librispeech": {"n_train": 6, "n_valid": 6, "n_test": 18},
}
#: Settings of both systems (sizes and schedule, never a switch of one method).
COMMON = (
    "--batch_size=5",
    "--training_signal_len=8000",
    "--backbone={kernel_size: 32, kernel_stride: 16}",
    "--scenario_epoch_size=100",
    "--valid_items_per_scenario=3",
    "--n_test=6",
    "--figure2=False",
    "--n_audio_to_save=0",
    "--save_audio=False",
)
DATA = {"data_folder": "wsj0mix", "musan_folder": "musan", "librispeech_folder": "librispeech"}
SETS = {
    "WSJ0-mix + MUSAN (in domain)": "unrolled/test_summary.json",
    "Librispeech-mix + MUSAN (out of domain)": "unrolled/test_summary_librispeech_musan.json",
}
SYSTEMS = [
    System("bl.SS", "recipes/WSJ0Mix/saddel", "bl_ss.yaml", DATA, SETS, COMMON, baseline=True),
    System("SADDEL", "recipes/WSJ0Mix/saddel", "saddel.yaml", DATA, SETS, COMMON),
]


def scenario_view(summaries, metric=METRIC):
    """``{set: summary}`` -> ``{"<set>, <scenario>": {metric: value}}`` per scenario, and ``"<set>, mean"``.

    The mean is over the five scenarios' means (each scenario weighs the same, whatever its count).

    Example
    -------
    >>> view = scenario_view({"in": {"scenarios": {"2sp": {"si-snr_i": 4.0}, "3sp": {"si-snr_i": 2.0}}}})
    >>> view["in, 2sp"], view["in, mean"]
    ({'si-snr_i': 4.0}, {'si-snr_i': 3.0})
    """
    out = {}
    for label, summary in summaries.items():
        values = []
        for scenario, entry in summary.get("scenarios", {}).items():
            if metric in entry:
                out[f"{label}, {scenario}"] = {metric: float(entry[metric])}
                values.append(float(entry[metric]))
        if values:
            out[f"{label}, mean"] = {metric: sum(values) / len(values)}
    return out


def _report_systems(systems):
    """The systems with one report set per test set and scenario (what :func:`scenario_view` writes)."""
    labels = {f"{s}, {c}": None for s in SETS for c in (*SCENARIOS, "mean")}
    return [System(s.name, s.recipe, s.yaml, s.data, labels, s.overrides, s.baseline) for s in systems]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"N_epochs of each stage (default {EPOCHS})")
    parser.add_argument("--work_dir", default=None, help="keep corpora and runs here (a rerun resumes)")
    parser.add_argument("--json", default=None, help="write every per-seed figure to this file")
    args = parser.parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_saddel_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        folders = make_corpora(work / "corpora", CORPORA)
        results, seconds = {}, {}
        for seed in args.seeds:
            for system in SYSTEMS:
                out = work / "runs" / system.name.replace(".", "_") / str(seed)
                summaries, took = run_system(system, folders, out, seed, OVERRIDES_FILE, epochs=args.epochs)
                results.setdefault(system.name, {})[seed] = scenario_view(summaries)
                seconds.setdefault(system.name, []).append(took)
                shown = ", ".join(f"{k}: {v[METRIC]:.2f}" for k, v in results[system.name][seed].items() if "mean" in k)
                print(f"seed {seed} {system.name}: {shown} ({took:.0f} s)", flush=True)
        print()
        title = f"{len(args.seeds)} seeds, {OVERRIDES_FILE}, {args.epochs} + {args.epochs} epochs; SI-SNRi (dB)"
        print(format_report(results, _report_systems(SYSTEMS), METRIC, title=title))
        print(f"\nwall time: {time.time() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps({"metric": METRIC, "results": results, "seconds": seconds}, indent=1))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
