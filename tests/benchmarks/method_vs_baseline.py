"""Shared harness of the method-versus-baseline benchmarks (``tests/benchmarks/bench_*_vs_baseline.py``).

Each benchmark script trains a method and its paper's baseline side by side with the
real recipes (``train.py``, prep -> train -> test, as a user runs them) on the same mini
corpora (:mod:`data_prep.mini`) and the same seeds, tests both in domain and out of
domain, and prints, per test set, mean +- standard deviation over the seeds for each
system and the paired difference (method minus baseline, seed by seed). Nothing is tuned
for the method: both systems take the same overrides file (``hparams/cpu_small.yaml``
unless a script says otherwise), epochs and seeds.

A script declares its corpora and its systems and calls :func:`main`::

    CORPORA = {"wham": {"n_train": 200, ...}}           # data_prep.mini writers and their sizes
    SYSTEMS = [
        System("baseline", "recipes/WHAM/baseline", "convtasnet.yaml", data={"data_folder": "wham"},
               sets={"WHAM! (in domain)": "test_summary.json"}),
        System("NASS", ...),
    ]
    main(__doc__, CORPORA, SYSTEMS, metric="si-snr_i")

Runs are kept in ``--work_dir`` (default: a folder under the system's temp dir that is
removed at exit unless ``--keep``); a run whose summaries exist is not run again, so a
killed benchmark resumes where it stopped when given the same ``--work_dir``.
``--json`` writes every per-seed figure, for the recipe README's table.

The runs are single-threaded (``OMP_NUM_THREADS=1``), so that two benchmarks, or a
benchmark and the test suite, can share a 2-core machine without changing the figures.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

__all__ = ["System", "format_report", "main", "make_corpora", "paired_differences", "run_system"]


@dataclass
class System:
    """One trained system of a benchmark.

    Arguments
    ---------
    name : str
        Label in the report (``"baseline"``, ``"NASS"``).
    recipe : str
        Recipe folder relative to the repository root (``recipes/WHAM/nass``).
    yaml : str
        The recipe's hparams file (``convtasnet_nass.yaml``).
    data : dict
        Recipe option -> corpus name of the script's ``CORPORA`` (``{"data_folder": "wham"}``), or
        ``(corpus name, sub-path)`` for a folder inside a corpus root.
    sets : dict
        Report label -> summary file relative to the run's output folder
        (``{"Libri2Mix (in domain)": "test_summary.json", "LRS2Mix": "test_summary_lrs2mix.json"}``).
    overrides : tuple
        Extra ``--key=value`` options of this system (the method's switches, never a tuning of it).
    baseline : bool
        Whether this is the reference the other systems are compared with (one per script).
    """

    name: str
    recipe: str
    yaml: str
    data: dict
    sets: dict
    overrides: tuple = ()
    baseline: bool = False


def make_corpora(root, corpora, seed=0):
    """Writes each mini corpus once under ``root``: ``{name: writer kwargs}`` -> ``{name: corpus root}``."""
    from data_prep.mini import make_mini

    folders = {}
    for name, kwargs in corpora.items():
        marker = Path(root) / f".{name}.done.json"
        if marker.is_file():
            folders[name] = Path(json.loads(marker.read_text())["root"])
            continue
        made = make_mini(name, root, seed=seed, **kwargs)
        folders[name] = Path(made[name])
        marker.write_text(json.dumps({"root": str(folders[name])}))
    return folders


def _folder(spec, corpora):
    if isinstance(spec, (tuple, list)):
        name, sub = spec
        return corpora[name] / sub
    return corpora[spec]


def run_system(system, corpora, out, seed, overrides_file, epochs=None, threads=1, timeout=7200):
    """Trains and tests ``system`` with ``seed`` into ``out`` (skipped when its summaries exist).

    Returns ``{set label: summary dict}`` and the seconds the run took (0 for a finished one).
    """
    out = Path(out)
    paths = {label: out / rel for label, rel in system.sets.items()}
    started, ran = time.time(), False
    if not all(p.is_file() for p in paths.values()):
        ran = True
        cmd = [
            sys.executable,
            f"{system.recipe}/train.py",
            f"hparams/{system.yaml}",
            *(f"--{key}={_folder(spec, corpora)}" for key, spec in system.data.items()),
            f"--output_folder={out}",
            f"--overrides_file={overrides_file}",
            f"--seed={seed}",
            "--device=cpu",
            "--noprogressbar",
            *([f"--N_epochs={epochs}"] if epochs else []),
            *system.overrides,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "benchmark_stdout.txt", "w") as log:
            proc = subprocess.run(
                cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if proc.returncode != 0:
            tail = (out / "benchmark_stdout.txt").read_text()[-4000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise RuntimeError(f"{system.name}: the run wrote no {', '.join(missing)}")
    return {label: json.loads(p.read_text()) for label, p in paths.items()}, (time.time() - started if ran else 0.0)


def _mean_std(values):
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_differences(results, method, baseline, label, metric):
    """Seed-by-seed ``method - baseline`` of ``metric`` on set ``label`` (seeds both systems ran)."""
    a, b = results[method], results[baseline]
    return [a[s][label][metric] - b[s][label][metric] for s in sorted(set(a) & set(b))]


def format_report(results, systems, metric, title=""):
    """A markdown table: per test set and system, mean +- std over seeds, the per-seed values, and the
    paired difference of each non-baseline system from the baseline.

    ``results``: ``{system name: {seed: {set label: summary}}}``.

    Example
    -------
    >>> s = [System("base", "r", "a.yaml", {}, {"in": "x"}, baseline=True)]
    >>> s.append(System("new", "r", "b.yaml", {}, {"in": "x"}))
    >>> res = {"base": {1: {"in": {"m": 1.0}}, 2: {"in": {"m": 3.0}}}}
    >>> res["new"] = {1: {"in": {"m": 2.0}}, 2: {"in": {"m": 5.0}}}
    >>> print(format_report(res, s, "m"))
    | test set | system | m mean +- std (dB) | seeds | per seed | minus base (paired) |
    |---|---|---|---|---|---|
    | in | base | 2.00 +- 1.41 | 2 | 1.00, 3.00 | — |
    | in | new | 3.50 +- 2.12 | 2 | 2.00, 5.00 | +1.50 +- 0.71 |
    """
    base = next(s.name for s in systems if s.baseline)
    labels = []
    for system in systems:
        labels += [label for label in system.sets if label not in labels]
    lines = [f"{title}\n" if title else ""]
    lines[0] += f"| test set | system | {metric} mean +- std (dB) | seeds | per seed | minus {base} (paired) |\n"
    lines[0] += "|---|---|---|---|---|---|"
    for label in labels:
        for system in systems:
            runs = results.get(system.name, {})
            values = [runs[s][label][metric] for s in sorted(runs) if label in runs[s]]
            if not values:
                continue
            mean, std = _mean_std(values)
            diff = "—"
            if not system.baseline and label in base_sets(systems, base):
                d_mean, d_std = _mean_std(paired_differences(results, system.name, base, label, metric))
                diff = f"{d_mean:+.2f} +- {d_std:.2f}"
            per_seed = ", ".join(f"{v:.2f}" for v in values)
            lines.append(f"| {label} | {system.name} | {mean:.2f} +- {std:.2f} | {len(values)} | {per_seed} | {diff} |")
    return "\n".join(lines)


def base_sets(systems, base):
    """The set labels of the baseline system."""
    return next(s.sets for s in systems if s.name == base)


def main(doc, corpora, systems, metric="si-snr_i", argv=None, overrides_file="hparams/cpu_small.yaml"):
    """Command line of a benchmark script: builds the corpora, runs every system and seed, prints the report."""
    if sum(s.baseline for s in systems) != 1:
        raise ValueError("a benchmark has exactly one baseline system")
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds (default 1 2 3)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="N_epochs of every run (default: the overrides file's)"
    )
    parser.add_argument("--work_dir", default=None, help="keep corpora and runs here (a rerun resumes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of each run (default 1)")
    parser.add_argument("--systems", nargs="+", default=None, help="run only these systems (names)")
    parser.add_argument("--json", default=None, help="write every per-seed summary to this file")
    parser.add_argument("--overrides_file", default=overrides_file, help=f"(default {overrides_file})")
    args = parser.parse_args(argv)
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench_vs_baseline_"))
    chosen = [s for s in systems if args.systems is None or s.name in args.systems or s.baseline]
    try:
        folders = make_corpora(work / "corpora", corpora)
        results, seconds = {}, {}
        for seed in args.seeds:
            for system in chosen:
                out = work / "runs" / system.name.replace(" ", "_").replace("/", "_") / str(seed)
                summaries, took = run_system(
                    system, folders, out, seed, args.overrides_file, epochs=args.epochs, threads=args.threads
                )
                results.setdefault(system.name, {})[seed] = summaries
                seconds.setdefault(system.name, []).append(took)
                shown = ", ".join(f"{k}: {v.get(metric, float('nan')):.2f}" for k, v in summaries.items())
                print(f"seed {seed} {system.name}: {shown} ({took:.0f} s)", flush=True)
        print()
        print(format_report(results, chosen, metric, title=f"{len(args.seeds)} seeds, {args.overrides_file}"))
        if args.json:
            Path(args.json).write_text(json.dumps({"metric": metric, "results": results, "seconds": seconds}, indent=1))
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0
