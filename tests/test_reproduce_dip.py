"""``python -m modules.reproduce run DIP:fig3 --tiny`` end to end on the mini corpora, then ``collect`` (issue 24).

DIP's Fig. 3 is the smallest DIP table whose rows all run on the mini corpora: four runs, MixIT and
MixCycle (``recipes/Vox2Mix/unsupervised``), the Conv-TasNet baseline and Conv-TasNet + DIP system 3
(``recipes/LibriMix/dip``, stages pretrain -> separate). The same runs then draw a Fig. 4-style histogram
(``modules.results.histogram_figure``), the way the Fig. 4 rows of ``modules/paper_tables/4_dip.yaml``
say the figure is drawn from the baseline's and the DIP run's per-mixture scores.
"""

import csv
from pathlib import Path

import pytest

from modules.reproduce import load_rows, main, select


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_fig4_rows_are_the_table_v_runs_on_the_lrs2mix_test_set():
    """Fig. 4 has the baseline and system 13 of Table V (the same runs), on LRS2Mix, with no paper number."""
    rows = load_rows()
    fig4 = select(rows, "DIP:fig4")
    table5 = {r.label: r for r in select(rows, "DIP:V")}
    assert len(fig4) == 2 and all(r.test_set == "lrs2mix" and r.run is not None for r in fig4), fig4
    baseline, dip = fig4
    assert baseline.run.key() == table5["N/A (no frontend)"].run.key()
    assert dip.run.key() == table5["DIP (Mixture 500h, Sys. 13)"].run.key()
    assert not any((r.spec.get("paper") or {}) for r in fig4)  # a histogram: no number to put beside the measured


@pytest.mark.slow
def test_run_dip_fig3_tiny_then_collect_fills_every_row(tmp_path, capsys):
    """Four tiny runs on mini Vox2Mix / LibriMix / LRS2Mix / REAL-M, collected into Fig. 3's four rows."""
    results = tmp_path / "results"
    assert main(["run", "DIP:fig3", "--tiny", "--seeds", "1", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.count("[run]") == 4, out
    assert main(["run", "DIP:fig3", "--tiny", "--seeds", "1", "--results", str(results)]) == 0  # nothing left to run
    rerun = capsys.readouterr().out
    assert "4 of 4 runs finished" in rerun and "[run]" not in rerun, rerun
    assert main(["collect", "DIP:fig3", str(results), "--output_folder", str(tmp_path / "table")]) == 0
    lines = read_csv(tmp_path / "table" / "table.csv")
    assert len(lines) == 4
    for line in lines:
        assert line["si-snr_i measured"] != "missing" and line["si-snr_i runs"] == "1", line
    # Fig. 4 from the same kind of runs: the baseline's and the DIP run's per-mixture SI-SNRi on an extra test set
    from modules.results import histogram_figure

    dip_runs = results / "LibriMix" / "dip"
    baseline = next(p for p in dip_runs.glob("convtasnet_baseline*/1") if p.is_dir())
    dip = next(p for p in dip_runs.glob("convtasnet_dip*/1/separate") if p.is_dir())
    n_test = len(read_csv(baseline / "test_results_vox2mix.csv")) - 1  # the last line is the average
    data = histogram_figure([baseline, dip], tmp_path / "fig4.png", ["ConvTasNet", "ConvTasNet + DIP"], "vox2mix")
    assert [len(v) for v in data.values()] == [n_test, n_test] and n_test > 0
    assert Path(tmp_path / "fig4.png").stat().st_size > 1000
