"""``python -m modules.reproduce run Context-aware:II --tiny`` end to end on the mini corpora, then ``collect``.

Table II (six rows: Conv-TasNet, DPRNN and MossFormer, each end to end and two-stage with hybrid HuBERT
targets, tested on LRS2Mix) is the smallest context-aware table whose rows all have a command. Its
two-stage rows run both stages with the tiny random-weight teacher that ``--tiny`` gives a group stage
(``--ssl_loader=torchaudio --ssl_size=tiny``: nothing downloaded), and their targets go to the one teacher
cache of the results folder (``<results>/teacher_cache``, one sub-folder per teacher), which the three
two-stage systems share.
"""

import csv

import pytest

from modules.reproduce import main


@pytest.mark.slow
def test_run_tiny_then_collect_fills_every_row_of_table_two(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["run", "Context-aware:II", "--tiny", "--seeds", "1", "--results", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6 of 6 runs finished" in out and out.count("--teacher_cache_folder=") == 3
    teachers = [p for p in (results / "teacher_cache").iterdir() if p.is_dir()]
    assert len(teachers) == 1 and (teachers[0] / "teacher.json").is_file()  # one teacher, shared by three systems
    for system in ("convtasnet", "dprnn", "mossformer"):
        run = results / "LibriMix" / "context_aware" / f"{system}__ssl_model-hubert__target-hybrid" / "1"
        assert (run / "group" / "stage_done.json").is_file()
        assert (run / "segregate" / "test_summary_lrs2mix.json").is_file()
        assert not (run / "group" / "teacher_cache").exists()
    assert main(argv) == 0  # a rerun: every run (both stages of the systems) is finished
    rerun = capsys.readouterr().out
    assert rerun.count("[done]") == 6 and "[run]" not in rerun

    assert main(["collect", "Context-aware:II", str(results), "--output_folder", str(tmp_path / "table")]) == 0
    with open(tmp_path / "table" / "table.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 6
    for line in lines:
        for metric in ("si-snr_i", "sdr_i"):
            assert line[f"{metric} measured"] != "missing" and line[f"{metric} runs"] == "1", line
