"""Results across runs: the collector reproduces a table from two tiny runs; the distribution figure."""

import csv
import json
import shutil

import matplotlib.image
import pytest
from tiny_runs import tiny_run

from modules.results import DEFAULT_SPEC, collect_runs, main, run_metadata

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
    assert DEFAULT_SPEC.is_file()  # the README's tables; rows without runs read "—"
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
    import ruamel.yaml

    from modules.recipe import REPO_ROOT, top_level_keys

    spec = ruamel.yaml.YAML(typ="safe").load(DEFAULT_SPEC.read_text())
    for table in spec["tables"]:
        for row in table["rows"]:
            match = row["match"]
            path = f"{REPO_ROOT}/recipes/{match['dataset']}/{match['method']}/hparams/{match['hparams']}.yaml"
            keys = set(top_level_keys(path))  # raises for a missing yaml
            extra = set(match) - {"dataset", "method", "hparams"}
            assert extra <= keys, (table["title"], row["label"], extra - keys)
            assert row.get("paper"), row["label"]
