"""Results across runs: the README's tables (paper number beside measured) and per-utterance distributions.

Every run writes ``test_summary.json`` (and ``test_summary_<set>.json`` for its
extra test sets) and ``test_results[_<set>].csv`` (one row per test mixture).
This module reads many runs at once:

* ``python -m modules.results tables RUN_OR_FOLDER ... [--spec SPEC.yaml] --output_folder OUT``
  finds every run below the paths given, and writes ``runs.md`` / ``runs.csv``
  (every run and test set side by side) and, from a table specification
  (default: :data:`DEFAULT_SPEC`, the folder `modules/paper_tables/`), ``tables.md`` /
  ``tables.csv`` with the paper's number beside the measured one for each
  row and test set. A row's runs are those whose metadata match its
  ``match`` (the recipe's dataset, method and yaml, read from the header of the
  run's ``hyperparams.yaml``, and any plain hyperparameter such as ``task``,
  ``num_spks`` or ``pcl_weight``); several matching runs (seeds) are averaged
  and counted.
* ``python -m modules.results histogram RUN ... --labels A B --output fig.png``
  draws the per-utterance SI-SNRi of several runs in one figure, counts per
  1 dB bin, one colour per run, as the DIP paper's Fig. 4 (baseline against
  DIP).

A table specification::

    tables:
      - title: Baselines (NASS paper, Tables 3 and 4)
        metrics: [si-snr_i, sdr_i]
        rows:
          - label: WHAM! SepFormer
            match: {dataset: WHAM, method: baseline, hparams: sepformer, task: sep_noisy}
            test_set: test            # the label in test_summary*.json (extra sets: their name)
            paper: {si-snr_i: 14.4, sdr_i: 15.0}
            source: NASS paper, Table 4

A table of one metric per scenario (SADDEL's tables: a column per scenario)
names its columns ``scenarios: [1sp+n, 2sp, ...]`` and its ``metric``; a row's
``paper`` then maps scenarios to numbers, and the measured value of a column is
the run's mean over that scenario's mixtures (``scenarios`` of its
``test_summary*.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from modules.files import write_csv_atomic, write_text_atomic

__all__ = [
    "DEFAULT_SPEC",
    "collect_runs",
    "fill_tables",
    "histogram_figure",
    "load_spec",
    "main",
    "run_metadata",
    "runs_table",
]

#: The registry of the five papers' result rows and their paper numbers: one yaml per paper in this folder.
DEFAULT_SPEC_FOLDER = Path(__file__).with_name("paper_tables")
#: The default table specification (the folder :data:`DEFAULT_SPEC_FOLDER`).
DEFAULT_SPEC = DEFAULT_SPEC_FOLDER


def load_spec(path=None):
    """A table specification from a yaml file, or from a folder of them (their ``tables`` in file-name order).

    ``None``: the folder :data:`DEFAULT_SPEC_FOLDER` (one file per paper).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "b.yaml").write_text("tables: [{title: B, rows: []}]")
    >>> _ = (folder / "a.yaml").write_text("tables: [{title: A, rows: []}]")
    >>> [t["title"] for t in load_spec(folder)["tables"]]
    ['A', 'B']
    """
    import ruamel.yaml

    if path is None:
        path = DEFAULT_SPEC_FOLDER
    path = Path(path)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no table specification (*.yaml) in {path}")
    tables = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            data = ruamel.yaml.YAML(typ="safe", pure=True).load(f) or {}
        if not isinstance(data, dict) or not isinstance(data.get("tables", []), list):
            raise ValueError(f"{file}: a table specification is a mapping with a list `tables`")
        tables += data.get("tables") or []
    return {"tables": tables}


def run_metadata(run_folder):
    """What identifies a run: dataset, method and yaml of its recipe, and its plain top-level hyperparameters.

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "hyperparams.yaml").write_text("# Generated\\n# /x/recipes/WHAM/nass/hparams/dprnn_nass.yaml\\n"
    ...                                          "task: sep_noisy\\nnum_spks: 2\\nmodules: !new:dict\\n")
    >>> meta = run_metadata(run)
    >>> meta["dataset"], meta["method"], meta["hparams"], meta["task"], "modules" in meta
    ('WHAM', 'nass', 'dprnn_nass', 'sep_noisy', False)
    """
    import ruamel.yaml

    run_folder = Path(run_folder)
    meta = {"run": str(run_folder)}
    yaml_path = run_folder / "hyperparams.yaml"
    if not yaml_path.is_file():
        return meta
    text = yaml_path.read_text(encoding="utf-8")
    for line in text.splitlines()[:3]:
        match = re.search(r"recipes/([^/]+)/([^/]+)/hparams/(.+)\.ya?ml\s*$", line)
        if match:
            meta.update(dataset=match.group(1), method=match.group(2), hparams=match.group(3))
    data = ruamel.yaml.YAML().load(text) or {}  # round-trip: tagged nodes stay objects, nothing is built
    for key, value in data.items():
        plain = isinstance(value, str | int | float | bool) and not getattr(getattr(value, "tag", None), "value", None)
        if plain and key not in meta and not str(key).startswith("__"):
            meta[key] = next(t(value) for t in (bool, int, float, str) if isinstance(value, t))  # builtin types
    return meta


def collect_runs(paths):
    """Every (run, test set) below ``paths``: ``[{**metadata, "test_set", "summary": {...}, "results_csv"}]``."""
    records = []
    seen = set()
    for item in paths:
        path = Path(item)
        summaries = [path] if path.is_file() else sorted(path.rglob("test_summary*.json"))
        for summary_path in summaries:
            if summary_path.resolve() in seen:
                continue
            seen.add(summary_path.resolve())
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            suffix = summary_path.stem[len("test_summary") :]
            record = run_metadata(summary_path.parent)
            record["test_set"] = summary.get("test_set", suffix.lstrip("_") or "test")
            record["summary"] = summary
            record["results_csv"] = str(summary_path.with_name(f"test_results{suffix}.csv"))
            records.append(record)
    return records


def _matches(record, match):
    return all(str(record.get(key)) == str(value) for key, value in (match or {}).items())


def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def fill_tables(spec, records):
    """The rows of each table of ``spec`` with their measured means: ``[(title, metrics, [row dict])]``."""
    out = []
    for table in spec.get("tables", []):
        scenarios = table.get("scenarios")
        metrics = list(scenarios or table.get("metrics", ["si-snr_i", "sdr_i"]))
        metric = table.get("metric", "si-snr_i")
        rows = []
        for row in table.get("rows", []):
            test_set = row.get("test_set", "test")
            runs = [r for r in records if r["test_set"] == test_set and _matches(r, row.get("match"))]
            filled = {"label": row["label"], "test_set": test_set, "n_runs": len(runs), "source": row.get("source", "")}
            for column in metrics:
                if scenarios:
                    per = [r["summary"].get("scenarios", {}).get(column, {}) for r in runs]
                    values = [float(p[metric]) for p in per if metric in p]
                else:
                    values = [float(r["summary"][column]) for r in runs if column in r["summary"]]
                filled[f"{column} paper"] = (row.get("paper") or {}).get(column)
                filled[f"{column} measured"] = float(np.mean(values)) if values else None
                filled[f"{column} std"] = float(np.std(values)) if len(values) > 1 else None
                paper = filled[f"{column} paper"]
                measured = filled[f"{column} measured"]
                filled[f"{column} diff"] = measured - float(paper) if None not in (paper, measured) else None
            filled["runs"] = " ".join(r["run"] for r in runs)
            rows.append(filled)
        title = table.get("title", "")
        out.append((f"{title} ({metric} per scenario)" if scenarios else title, metrics, rows))
    return out


def tables_markdown(filled):
    """Markdown of :func:`fill_tables`: paper beside measured for each metric."""
    parts = []
    for title, metrics, rows in filled:
        header = ["Row", "Test set", *[f"{m} {k}" for m in metrics for k in ("paper", "measured")], "Runs", "Source"]
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [row["label"], row["test_set"]]
            for m in metrics:
                measured = _fmt(row[f"{m} measured"])
                if row[f"{m} std"] is not None:
                    measured += f" ± {row[f'{m} std']:.2f}"
                cells += [_fmt(row[f"{m} paper"]), measured]
            cells += [str(row["n_runs"]), row["source"]]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def runs_table(records, metrics=None):
    """Every run and test set side by side: ``(header, rows)``.

    Example
    -------
    >>> recs = [{"run": "r1", "dataset": "WHAM", "method": "nass", "hparams": "x", "test_set": "test",
    ...          "summary": {"n_scored": 3, "si-snr_i": 4.0}}]
    >>> runs_table(recs)[1][0]["si-snr_i"]
    4.0
    """
    metrics = metrics or list(
        dict.fromkeys(
            k for r in records for k, v in r["summary"].items() if isinstance(v, float | int) and k != "n_mixtures"
        )
    )
    header = ["run", "dataset", "method", "hparams", "test_set", *metrics]
    rows = [{**{k: r.get(k, "") for k in header[:5]}, **{m: r["summary"].get(m) for m in metrics}} for r in records]
    return header, rows


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(row.get(h)) for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tables(paths, output_folder, spec=None):
    """Collects runs below ``paths`` and writes ``runs.{md,csv}`` and ``tables.{md,csv}``; returns the filled tables.

    ``spec``: a yaml file or a folder of them (:func:`load_spec`; default the README's tables).
    """
    records = collect_runs(paths)
    if not records:
        raise FileNotFoundError(f"no test_summary*.json below {', '.join(map(str, paths))}")
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    header, rows = runs_table(records)
    write_text_atomic(output_folder / "runs.md", _markdown(header, rows))
    write_csv_atomic(output_folder / "runs.csv", header, [{k: _fmt(v, 4) for k, v in r.items()} for r in rows])
    filled = fill_tables(load_spec(spec), records)
    write_text_atomic(output_folder / "tables.md", tables_markdown(filled))
    csv_rows = [{"table": title, **row} for title, _, table_rows in filled for row in table_rows]
    csv_header = list(dict.fromkeys(k for r in csv_rows for k in r)) or ["table"]
    write_csv_atomic(
        output_folder / "tables.csv", csv_header, [{k: _fmt(v, 4) for k, v in r.items()} for r in csv_rows]
    )
    return filled


def per_utterance(results_csv, metric="si-snr_i"):
    """The per-mixture values of ``metric`` in a ``test_results*.csv`` (scored rows, not the ``avg`` row)."""
    with open(results_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("snt_id") != "avg" and r.get("scored", "1") != "0"]
    if rows and metric not in rows[0]:
        raise KeyError(f"{results_csv} has no column {metric!r} (has {sorted(rows[0])})")
    return np.array([float(r[metric]) for r in rows])


def histogram_figure(runs, output, labels=None, test_set=None, metric="si-snr_i", bin_width=1.0, title=None):
    """Per-utterance ``metric`` of several runs in one PNG: counts per ``bin_width`` dB bin (DIP paper, Fig. 4).

    Arguments
    ---------
    runs : list of str
        Run folders (or ``test_results*.csv`` files).
    output : str
        The PNG to write.
    labels : list of str, optional
        Legend labels (default: the folder names).
    test_set : str, optional
        Extra test set name (``test_results_<name>.csv``); default the main one.
    metric : str
    bin_width : float

    Returns
    -------
    dict
        ``{label: values}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = [
        Path(r) if Path(r).is_file() else Path(r) / f"test_results{'_' + test_set if test_set else ''}.csv"
        for r in runs
    ]
    labels = list(labels or [Path(r).name for r in runs])
    if len(labels) != len(files):
        raise ValueError(f"{len(labels)} labels for {len(files)} runs")
    data = {label: per_utterance(f, metric) for label, f in zip(labels, files)}
    values = np.concatenate([v for v in data.values() if len(v)]) if data else np.zeros(0)
    if values.size == 0:
        raise ValueError("no per-utterance values to draw")
    low = math.floor(values.min() / bin_width) * bin_width
    high = math.ceil(values.max() / bin_width) * bin_width + bin_width
    bins = np.arange(low, high + bin_width / 2, bin_width)
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for i, (label, v) in enumerate(data.items()):
        ax.hist(
            v, bins=bins, alpha=0.5, color=colors[i % len(colors)], label=f"{label} (mean {v.mean():.2f} dB, {len(v)})"
        )
    ax.set_xlabel(f"{metric.replace('si-snr_i', 'SI-SNRi').replace('sdr_i', 'SDRi')} (dB)")
    ax.set_ylabel("Number of mixtures")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(title or "Per-utterance scores")
    ax.legend()
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return data


def main(argv=None):
    """``python -m modules.results {tables,histogram}``; returns the exit code."""
    parser = argparse.ArgumentParser(description="Results across runs: tables and per-utterance distributions")
    sub = parser.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="collect test_summary*.json into runs.md/csv and tables.md/csv")
    tables.add_argument("paths", nargs="+", help="run folders, or folders to search for runs")
    tables.add_argument(
        "--spec",
        default=None,
        help="table specification, a yaml or a folder of them (default: modules/paper_tables/, one yaml per paper)",
    )
    tables.add_argument("--output_folder", default="results/tables")
    hist = sub.add_parser("histogram", help="per-utterance SI-SNRi of several runs in one PNG")
    hist.add_argument("runs", nargs="+", help="run folders (or test_results*.csv files)")
    hist.add_argument("--labels", nargs="+", default=None)
    hist.add_argument("--test_set", default=None, help="an extra test set's name (default: the main test set)")
    hist.add_argument("--metric", default="si-snr_i")
    hist.add_argument("--bin_width", type=float, default=1.0)
    hist.add_argument("--title", default=None)
    hist.add_argument("--output", default="results/si-snr_i_histogram.png")
    args = parser.parse_args(argv)
    try:
        if args.command == "tables":
            filled = write_tables(args.paths, args.output_folder, args.spec)
            print(tables_markdown(filled))
            print(f"Written: {args.output_folder}/tables.md, tables.csv, runs.md, runs.csv")
        else:
            data = histogram_figure(args.runs, args.output, args.labels, args.test_set, args.metric, args.bin_width,
                                    args.title)  # fmt: skip
            print(f"{args.output}: {', '.join(f'{k} ({len(v)} mixtures)' for k, v in data.items())}")
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
