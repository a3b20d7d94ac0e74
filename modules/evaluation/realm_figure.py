"""The context-aware paper's Fig. 2: REAL-M WER bars of the runs found under results folders.

Every run whose REAL-M test stage scored its separations
(:func:`modules.evaluation.realm.evaluate_test_stage`) has ``<name>_wer`` keys in
its ``test_summary_realm.json``; this draws one group of bars per run (its
system: yaml stem, target and SSL model) and one bar per recogniser::

    python -m modules.evaluation.realm_figure results/LibriMix/context_aware --output fig2_realm_wer.png

``--metric e2e_wer`` keeps one recogniser (the figure's ESPnet stand-in,
``recipes/REALM/evaluate/asr_papers.yaml``'s ``e2e``). The context-aware
segregate stage also draws this figure for its own run at test time
(``<output_folder>/realm_wer.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["draw_realm_figure", "main"]


def _label(record):
    name = record.get("hparams") or Path(record["run"]).name
    target, ssl = record.get("target"), record.get("ssl_model")
    if target in (None, "None"):
        return name
    if target in ("none", "signal", "mel"):
        return f"{name} ({target})"
    return f"{name} ({target}, {ssl})"


def draw_realm_figure(paths, output, metrics=None, test_set="realm"):
    """Writes the bars of every run below ``paths`` with REAL-M WERs to ``output``; returns ``{label: {metric: v}}``.

    Arguments
    ---------
    paths : list of str
        Results folders (searched for ``test_summary_<test_set>.json``) or summary files.
    output : str
        The PNG.
    metrics : list of str, optional
        The ``*_wer`` keys to draw (default: all found).
    test_set : str

    Raises
    ------
    FileNotFoundError
        When no run below ``paths`` has a WER.
    """
    from modules.plotting import bar_chart
    from modules.results import collect_runs

    records = [r for r in collect_runs(paths) if r["test_set"] == test_set]
    bars = {}
    for record in records:
        found = {k: v for k, v in record["summary"].items() if k.endswith("_wer") and (not metrics or k in metrics)}
        if found:
            label = _label(record)
            while label in bars:  # two runs of one system (seeds): keep both
                label += "'"
            bars[label] = found
    if not bars:
        raise FileNotFoundError(f"no test_summary_{test_set}.json with a WER below {', '.join(map(str, paths))}")
    names = list(dict.fromkeys(k for v in bars.values() for k in v))
    series = {name: [v.get(name, float("nan")) for v in bars.values()] for name in names}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    bar_chart(output, list(bars), series, "WER (%)", "REAL-M WER (context-aware paper, Fig. 2)")
    return bars


def main(argv=None):
    """``python -m modules.evaluation.realm_figure``; returns the exit code."""
    parser = argparse.ArgumentParser(description="REAL-M WER bars (Fig. 2) of the runs below results folders")
    parser.add_argument("paths", nargs="+", help="results folders or test_summary_realm.json files")
    parser.add_argument("--output", default="realm_wer.png", help="the PNG (default: realm_wer.png)")
    parser.add_argument("--metric", action="append", default=None, help="a *_wer key to draw; repeatable")
    args = parser.parse_args(argv)
    try:
        bars = draw_realm_figure(args.paths, args.output, args.metric)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for label, values in bars.items():
        print(label, " ".join(f"{k}={v:.2f}" for k, v in values.items()))
    print(f"Written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
