"""Results across runs: the collector reproduces a table from two tiny runs; the distribution figure."""

import csv
import json
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import ruamel.yaml
from tiny_runs import tiny_run

from modules.results import DEFAULT_SPEC, collect_runs, main, run_metadata


def _registry():
    """The registry's tables, read file by file (not through ``load_spec``)."""
    tables = []
    for file in sorted(DEFAULT_SPEC.glob("*.yaml")):
        tables += ruamel.yaml.YAML(typ="safe").load(file.read_text())["tables"]
    return {"tables": tables}


SPEC = """
tables:
  - title: Mini WHAM! baselines
    metrics: [si-snr_i, sdr_i]
    rows:
      - label: Conv-TasNet
        match: {dataset: WHAM, method: baseline, hparams: convtasnet, task: sep_noisy}
        test_set: test
        paper: {si-snr_i: 8.8, sdr_i: 9.4}
        source: a paper
      - label: DPRNN
        match: {dataset: WHAM, method: baseline, hparams: dprnn}
        paper: {si-snr_i: 12.8}
      - label: SepFormer (not run)
        match: {dataset: WHAM, hparams: sepformer_big}
        paper: {si-snr_i: 14.4, sdr_i: 15.0}
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The tiny Conv-TasNet and DPRNN runs, and a copy of the Conv-TasNet run as a second seed."""
    root = tmp_path_factory.mktemp("results")
    runs = {"convtasnet": tiny_run("convtasnet"), "dprnn": tiny_run("dprnn")}
    for name, run in runs.items():
        shutil.copytree(run, root / name / "1234", ignore=shutil.ignore_patterns("save"))
    seed2 = root / "convtasnet" / "5678"
    shutil.copytree(root / "convtasnet" / "1234", seed2)
    summary = json.loads((seed2 / "test_summary.json").read_text())
    summary["si-snr_i"] += 1.0
    (seed2 / "test_summary.json").write_text(json.dumps(summary))
    return root


def test_collector_reproduces_a_table_from_two_runs(two_runs, tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert main(["tables", str(two_runs), "--spec", str(tmp_path / "spec.yaml"), "--output_folder", str(tmp_path)]) == 0
    ctn = [json.loads((two_runs / "convtasnet" / s / "test_summary.json").read_text()) for s in ("1234", "5678")]
    dprnn = json.loads((two_runs / "dprnn" / "1234" / "test_summary.json").read_text())
    with open(tmp_path / "tables.csv", newline="") as f:
        rows = {r["label"]: r for r in csv.DictReader(f)}
    assert rows["Conv-TasNet"]["n_runs"] == "2"  # both seeds, averaged
    assert float(rows["Conv-TasNet"]["si-snr_i measured"]) == pytest.approx(
        (ctn[0]["si-snr_i"] + ctn[1]["si-snr_i"]) / 2, abs=1e-3
    )
    assert float(rows["Conv-TasNet"]["si-snr_i std"]) == pytest.approx(0.5, abs=1e-3)
    assert float(rows["Conv-TasNet"]["sdr_i measured"]) == pytest.approx(ctn[0]["sdr_i"], abs=1e-3)
    assert float(rows["Conv-TasNet"]["si-snr_i paper"]) == 8.8
    assert float(rows["DPRNN"]["si-snr_i measured"]) == pytest.approx(dprnn["si-snr_i"], abs=1e-3)
    assert rows["DPRNN"]["n_runs"] == "1" and rows["DPRNN"]["sdr_i paper"] == "—"
    assert rows["SepFormer (not run)"]["n_runs"] == "0" and rows["SepFormer (not run)"]["si-snr_i measured"] == "—"
    markdown = (tmp_path / "tables.md").read_text().splitlines()
    assert markdown[0] == "### Mini WHAM! baselines"
    assert markdown[2].startswith(
        "| Row | Test set | si-snr_i paper | si-snr_i measured | sdr_i paper | sdr_i measured |"
    )
    assert markdown[4].startswith(
        f"| Conv-TasNet | test | 8.80 | {(ctn[0]['si-snr_i'] + ctn[1]['si-snr_i']) / 2:.2f} ± 0.50 |"
    )
    runs_md = (tmp_path / "runs.md").read_text()
    assert runs_md.count("| WHAM | baseline |") == 3


def test_metadata_and_default_spec(two_runs):
    meta = run_metadata(two_runs / "dprnn" / "1234")
    assert (meta["dataset"], meta["method"], meta["hparams"], meta["num_spks"]) == ("WHAM", "baseline", "dprnn", 2)
    records = collect_runs([two_runs])
    assert sorted(r["test_set"] for r in records) == ["test", "test", "test"]
    assert sorted(DEFAULT_SPEC.glob("*.yaml"))  # the registry, one yaml per paper; rows without runs read "—"
    assert main(["tables", str(two_runs / "nothing_here"), "--output_folder", str(two_runs / "out")]) == 2


def test_histogram_of_several_runs(two_runs, tmp_path):
    out = tmp_path / "fig.png"
    args = ["histogram", str(two_runs / "convtasnet" / "1234"), str(two_runs / "dprnn" / "1234"), "--output", str(out)]
    assert main([*args, "--labels", "baseline", "DIP"]) == 0
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert main([*args, "--labels", "only one"]) == 2
    assert main([*args, "--metric", "nope"]) == 2


def test_scenario_tables_read_the_per_scenario_means(tmp_path):
    """SADDEL's tables (a column per scenario) in the default spec, filled from a run's ``scenarios`` means; the
    first stage of a two-stage system (``train_steps: first``) is not mistaken for the system."""
    for stage, steps, shift in (("unrolled", "oracle", 0.0), ("step1", "first", 5.0)):
        run = tmp_path / "saddel" / "1234" / stage
        run.mkdir(parents=True)
        (run / "hyperparams.yaml").write_text(
            f"# Generated\n# /x/recipes/WSJ0Mix/saddel/hparams/saddel.yaml\ntrain_steps: {steps}\n"
        )
        scenarios = {s: {"n_scored": 3, "si-snr_i": 10.0 + i + shift} for i, s in enumerate(["1sp+n", "2sp", "3sp"])}
        summary = {"test_set": "test", "si-snr_i": 11.0, "scenarios": scenarios}
        (run / "test_summary.json").write_text(json.dumps(summary))
    assert main(["tables", str(tmp_path / "saddel"), "--output_folder", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "tables.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "SADDEL" and r["test_set"] == "test"]
    assert len(rows) == 1 and rows[0]["n_runs"] == "1"
    assert float(rows[0]["2sp measured"]) == 11.0 and float(rows[0]["2sp paper"]) == 15.22
    assert rows[0]["2sp+n measured"] == "—" and float(rows[0]["3sp+n paper"]) == 11.6
    assert "SADDEL, Table 1" in (tmp_path / "out" / "tables.md").read_text()


def test_every_paper_row_names_a_recipe_yaml():
    """Each row of the default spec matches runs of an existing recipe yaml, and each key it matches on besides the
    recipe's identity is a top-level key of that yaml (a misspelt key would match no run, silently)."""

    from modules.recipe import REPO_ROOT, top_level_keys

    spec = _registry()
    for table in spec["tables"]:
        for row in table["rows"]:
            match = row["match"]
            path = f"{REPO_ROOT}/recipes/{match['dataset']}/{match['method']}/hparams/{match['hparams']}.yaml"
            if row.get("not_runnable") and not Path(path).is_file():
                continue  # a system the collection does not have, with its reason (DIP Table VII's mixture row)
            keys = set(top_level_keys(path))  # raises for a missing yaml
            extra = set(match) - {"dataset", "method", "hparams"}
            assert extra <= keys, (table["title"], row["label"], extra - keys)
            assert row.get("paper") or row.get("note"), row["label"]  # no number: the note says why


DIP_AND_CONTEXT_AWARE = ("DIP paper", "Context-aware paper")


def test_dip_and_context_aware_rows_name_a_yaml_or_a_reason_and_numbers():
    """Every DIP / context-aware row matches an existing recipe yaml (or says why it cannot be run), its paper
    values are numbers, a row without them has a note, and the rows of each paper table are there."""

    from modules.recipe import REPO_ROOT
    from modules.reproduce import paper_and_table

    spec = _registry()
    counts = {}
    for table in spec["tables"]:
        columns = set(table.get("scenarios") or table.get("metrics", ["si-snr_i", "sdr_i"]))
        for row in table["rows"]:
            if not row["source"].startswith(DIP_AND_CONTEXT_AWARE):
                continue
            key = ":".join(paper_and_table(row))
            counts[key] = counts.get(key, 0) + 1
            match = row["match"]
            path = Path(REPO_ROOT) / "recipes" / match["dataset"] / match["method"] / "hparams"
            path = path / f"{match['hparams']}.yaml"
            assert path.is_file() or row.get("not_runnable"), (table["title"], row["label"], str(path))
            paper = row.get("paper") or {}
            assert paper or row.get("note"), (table["title"], row["label"])
            for column, value in paper.items():
                assert column in columns, (table["title"], row["label"], column)
                assert isinstance(value, int | float) and not isinstance(value, bool), (row["label"], column, value)
            if row.get("run"):
                assert Path(REPO_ROOT, row["run"]["recipe"], "hparams", row["run"]["yaml"]).is_file(), row["label"]
    expected = {
        "DIP:II": 22, "DIP:III": 8, "DIP:IV": 16, "DIP:V": 9, "DIP:VI": 8, "DIP:VII": 11, "DIP:VIII": 9,
        "DIP:fig3": 4, "DIP:fig4": 2, "DIP:fig5": 6, "Context-aware:I": 27, "Context-aware:II": 6, "Context-aware:fig2": 6,
    }  # fmt: skip
    assert counts == expected


def test_dip_and_context_aware_values_and_which_runs_fill_them():
    """Some numbers checked against the papers' text by hand, and the runs a row reads: a DIP variant's run (named by
    its experiment_name) fills its system's row only, a context-aware system's run (target, ssl_model) its own."""

    from modules.results import fill_tables

    spec = _registry()
    rows = {(t["title"].split(" (")[0], r["test_set"], r["label"]): r for t in spec["tables"] for r in t["rows"]}
    assert rows[("DIP, Table II", "vox2mix", "Sys. 3, MIC alpha 10, K 100")]["paper"] == {
        "si-snr_i": 11.05,
        "sdr_i": 11.36,
    }
    assert rows[("DIP, Table II", "test", "Sys. 10, MIC alpha 10, K 0")]["paper"] == {"si-snr_i": 15.23, "sdr_i": 15.6}
    assert rows[("DIP, Table III", "vox2mix", "Sys. 13, LM2Mix train-360 + Vox2Mix train-253 (Mixture 500h)")][
        "paper"
    ] == {"si-snr_i": 11.71, "sdr_i": 12.02}
    assert rows[("DIP, Table VI", "vox2mix", "DIP (Mixture 500h, Sys. 13)")]["paper"] == {
        "pesq": 1.43,
        "stoi": 0.82,
        "si-snr_i": 7.95,
    }
    assert rows[("DIP, Table VII", "realm", "DPRNN, DIP+")]["paper"] == {
        "e2e_wer": 41.85, "w2v_wer": 35.73, "wavlm_wer": 32.55,
    }  # fmt: skip
    assert rows[("Context-aware, Table I", "lrs2mix", "Sys. 6, HuBERT, hybrid")]["paper"] == {
        "si-snr_i": 9.5, "sdr_i": 9.9,
    }  # fmt: skip
    assert rows[("Context-aware, Fig. 2", "realm", "Hybrid")]["paper"] == {"e2e_wer": 46.25}
    dip = {"dataset": "LibriMix", "method": "dip", "hparams": "convtasnet_dip", "train_set": "train-100"}
    ca = {"dataset": "LibriMix", "method": "context_aware", "hparams": "convtasnet", "train_set": "train-100"}
    records = [
        {**dip, "run": "alpha100", "experiment_name": "convtasnet_dip_alpha100", "test_set": "vox2mix"},
        {**dip, "run": "sys3", "experiment_name": "convtasnet_dip", "test_set": "vox2mix"},
        {**ca, "run": "wavlm", "target": "hybrid", "ssl_model": "wavlm", "test_set": "lrs2mix"},
    ]
    for record in records:
        record["summary"] = {"si-snr_i": 10.0, "sdr_i": 10.5}
    filled = {(title.split(" (")[0], row["test_set"], row["label"]): row["runs"]
              for title, _, table_rows in fill_tables(spec, records) for row in table_rows}  # fmt: skip
    read = {key: runs for key, runs in filled.items() if runs}
    assert read == {
        ("DIP, Table II", "vox2mix", "Sys. 2, MIC alpha 100, K 100"): "alpha100",
        ("DIP, Table II", "vox2mix", "Sys. 3, MIC alpha 10, K 100"): "sys3",
        ("DIP, Table III", "vox2mix", "Sys. 3, LM2Mix train-100 + Vox2Mix train-53"): "sys3",
        (
            "DIP, Fig. 3",
            "vox2mix",
            "DIP (Conv-TasNet + DIP frontend, MIC sys. 3, trained on Libri2Mix train-100)",
        ): "sys3",
        ("Context-aware, Table I", "lrs2mix", "Sys. 8, WavLM, hybrid"): "wavlm",
    }
