"""DPCCN's paper tables through ``python -m modules.reproduce``: Table 3 run with ``--tiny`` and collected,
and Table 1 (the setup of the cross-domain tasks, no results) checked against what the preparations write."""

import csv
import json
from pathlib import Path

import pytest
import ruamel.yaml

from modules.reproduce import compose, load_rows, main, select

REGISTRY = Path(__file__).resolve().parents[1] / "modules" / "paper_tables" / "3_dpccn.yaml"


def _table1():
    tables = ruamel.yaml.YAML(typ="safe").load(REGISTRY.read_text())["tables"]
    return next(t for t in tables if t["title"].startswith("DPCCN, Table 1"))


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def _lines(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table1_is_the_setup_with_no_result_rows():
    """Table 1 reports no results: registered as a table without rows (nothing to run, nothing listed for it),
    its six lines (the paper's numbers) kept for reading."""
    table = _table1()
    assert table["rows"] == [] and table["metrics"] == []
    setup = {(line["dataset"].split()[0], line["split"]): line for line in table["setup"]}
    assert len(setup) == 6
    assert [setup[("Libri2Mix", s)]["uts"] for s in ("train", "dev", "test")] == [13900, 3000, 3000]
    assert [setup[("Aishell2Mix", s)]["uts"] for s in ("train", "dev", "test")] == [10000, 3000, 3000]
    assert not any(r.paper == "DPCCN" and r.table == "1" for r in load_rows())


@pytest.mark.slow
def test_table1_oracle_and_enroll_columns_are_what_the_remix_recipe_prepares(tmp_path):
    """The Mixture-Remix yaml's own Aishell2Mix preparation (its extra test set's ``prepare``, which writes
    tr, cv and tt) on a mini corpus: references ("Oracle") only for tt, as Table 1 says, one manifest row
    per config-list line (the #Uts the sidecar records), and an enrollment for tt."""
    from data_prep.mini import make_mini_aishell2mix

    row = next(r for r in select(load_rows(), "DPCCN:4") if r.run is not None and r.run.yaml == "sdpccn_remix.yaml")
    root = make_mini_aishell2mix(tmp_path / "corpora", n_train=3, n_valid=2, n_test=2)
    assert root == tmp_path / "corpora" / "Aishell2Mix"  # the stand-in folder compose gives aishell2mix_folder
    hparams = compose(row.run, tmp_path)
    prepare = hparams["extra_test_sets"]["aishell2mix"]["prepare"]
    manifests = prepare(save_folder=tmp_path / "prep", cfg_folder=root / "lst")
    sidecar = json.loads((tmp_path / "prep" / "aishell2mix_prep.json").read_text())

    oracle = {line["split"]: line["oracle"] for line in _table1()["setup"] if line["dataset"].startswith("Aishell")}
    assert sidecar["supervised"] == {"train": oracle["train"], "valid": oracle["dev"], "test": oracle["test"]}
    for split, name in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        listed = len((root / "lst" / f"{name}_cfg.lst").read_text().splitlines())
        assert sidecar["rows"][split] == len(_lines(manifests[split])) == listed
        assert ("s1_wav" in _header(manifests[split])) == sidecar["supervised"][split]
    assert "enroll_wav" in _header(manifests["test"])


@pytest.mark.slow
def test_run_tiny_then_collect_fills_every_row_of_table3(tmp_path):
    """DPCCN Table 3 (Conv-TasNet, DPCCN, TD-SpeakerBeam, sDPCCN trained on Libri2Mix, each tested on Libri2Mix
    and Aishell2Mix) end to end on the mini corpora that run --tiny writes, then collected: every row has its
    measured SI-SNR and SI-SNRi on both sets. Libri2Mix has references and (TSE) enrollments in every split,
    as Table 1 says."""
    results = tmp_path / "results"
    # --tiny gives the TSE runs the LibriSpeech the mini LibriMix is made of (its enrollment lists name those
    # utterances), as a real LibriMix is made of the LibriSpeech given, not the separate mini LibriSpeech
    assert main(["run", "DPCCN:3", "--tiny", "--seeds", "1", "--results", str(results)]) == 0
    assert main(["collect", "DPCCN:3", str(results), "--output_folder", str(tmp_path / "table")]) == 0
    lines = _lines(tmp_path / "table" / "table.csv")
    assert [line["row"] for line in lines] == ["SS Conv-TasNet", "SS DPCCN", "TSE TD-SpeakerBeam", "TSE sDPCCN"]
    for line in lines:
        for test_set in ("test", "aishell2mix"):
            for metric in ("si-snr", "si-snr_i"):
                assert line[f"{test_set} {metric} measured"] != "missing", line
                assert line[f"{test_set} {metric} runs"] == "1", line
    for yaml in ("td_speakerbeam", "sdpccn"):
        save = results / "LibriMix" / "dpccn" / yaml / "1" / "save"
        for split in ("train-100", "dev", "test"):
            header = _header(save / f"libri2mix_{split}.csv")
            assert {"s1_wav", "s2_wav", "enroll_wav"} <= set(header), (yaml, split, header)
