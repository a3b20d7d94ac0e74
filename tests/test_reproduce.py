"""python -m modules.reproduce: the registry's coverage, every row's configuration, the runners and collect."""

import csv
import json
import os
import re
import sys
from pathlib import Path

import pytest
import ruamel.yaml

from modules import reproduce
from modules.reproduce import Row, Run, compose, coverage, launch_slurm, load_rows, main, plan_runs, resolve_run, select
from modules.results import DEFAULT_SPEC_FOLDER

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = reproduce.TORCHRUN  # (the word itself would mark a test slow: tests/conftest.py)

#: A small registry: one row of each status (statuses written out by hand below).
REGISTRY = """
tables:
  - title: Part one
    metrics: [si-snr_i, sdr_i]
    rows:
      - label: derived
        match: {dataset: WHAM, method: nass, hparams: convtasnet_nass, task: sep_noisy}
        paper: {si-snr_i: 9.0, sdr_i: 9.5}
        source: ALPHA paper, Table 1
      - label: explicit with stages
        match: {dataset: WSJ0Mix, method: saddel, hparams: saddel}
        run: {recipe: recipes/WSJ0Mix/saddel, yaml: saddel.yaml, overrides: {n_test: 5}, data: [WSJ0Mix, MUSAN]}
        paper: {si-snr_i: 10.0}
        source: ALPHA paper, Table 1
      - label: misspelt
        match: {dataset: WHAM, method: nass, hparams: convtasnet_nass, pcl_wieght: 2}
        paper: {si-snr_i: 1.0}
        source: ALPHA paper, Table 1
      - label: no recipe yet
        match: {dataset: WHAM, method: nass, hparams: convtasnet_nass}
        not_runnable: needs a corpus we do not have
        paper: {si-snr_i: 2.0}
        paper_id: BETA
        table: II
  - title: Part two
    metric: si-snr_i
    scenarios: [2sp, 3sp]
    rows:
      - label: fine-tuned
        match: {dataset: Aishell2Mix, method: dpccn, hparams: sdpccn_remix}
        run: {recipe: recipes/Aishell2Mix/dpccn, yaml: sdpccn_remix.yaml, inputs: {init_from: "ALPHA:1/derived"},
              data: {data_folder: LibriMix, aishell2mix_folder: Aishell2Mix}}
        paper: {2sp: 3.0, 3sp: 1.0}
        source: ALPHA paper, Fig. 2
      - label: placeholder
        match: {dataset: Aishell2Mix, method: dpccn, hparams: sdpccn_remix}
        paper: {2sp: 3.0}
        source: ALPHA paper, Fig. 2
"""
#: Status of each row of REGISTRY, worked out by hand.
EXPECTED = {
    "derived": None,
    "explicit with stages": None,
    "misspelt": "pcl_wieght is not a key",
    "no recipe yet": "needs a corpus",
    "fine-tuned": None,
    "placeholder": "needs init_from",
}


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY)
    return path


def test_statuses_and_coverage_of_a_small_registry(registry, capsys):
    rows = {r.label: r for r in load_rows(registry)}
    for label, reason in EXPECTED.items():
        if reason is None:
            assert rows[label].run is not None, (label, rows[label].reason)
        else:
            assert rows[label].run is None and reason in rows[label].reason, (label, rows[label].reason)
    assert {(r.paper, r.table) for r in rows.values()} == {("ALPHA", "1"), ("BETA", "II"), ("ALPHA", "fig2")}
    assert rows["explicit with stages"].run.stages == ["step1", "unrolled"]
    assert rows["explicit with stages"].run.data == {"data_folder": "WSJ0Mix", "musan_folder": "MUSAN"}
    assert "librispeech_folder" in rows["explicit with stages"].run.optional_data  # its test sets: not Table 2's
    table2 = {"match": {"dataset": "WSJ0Mix", "method": "saddel", "hparams": "bl_sd"}, "test_set": "wham"}
    assert resolve_run(table2)[0].data == {"data_folder": "WSJ0Mix", "musan_folder": "MUSAN", "wham_folder": "WHAM"}
    assert main(["--registry", str(registry), "list"]) == 0
    out = capsys.readouterr().out
    assert "Coverage: ALPHA: 3 of 5 rows runnable; BETA: 0 of 1 rows runnable" in out
    assert "python recipes/WHAM/nass/train.py hparams/convtasnet_nass.yaml --task=sep_noisy" in out
    assert main(["--registry", str(registry), "list", "GAMMA"]) == 2  # an unknown paper: one line, exit 2


def test_registry_folder_reads_as_the_file(registry, tmp_path):
    """One yaml per paper (modules/paper_tables/) gives the same rows as the single file."""
    data = ruamel.yaml.YAML(typ="safe").load(REGISTRY)
    folder = tmp_path / "paper_tables"
    folder.mkdir()
    for i, table in enumerate(data["tables"]):
        (folder / f"{i}_part.yaml").write_text(json.dumps({"tables": [table]}))  # JSON is yaml

    def summary(rows):
        return [(r.paper, r.table, r.label, r.reason, r.run and r.run.key()) for r in rows]

    assert summary(load_rows(folder)) == summary(load_rows(registry))


def _independent_status(row, text_of, labels=None):
    """Whether a registry row has a command, by reading the yaml files as text (not through the module).

    An input mapping with ``recipe`` (an auxiliary step) must itself have a command; one with ``row``
    and ``stage`` must name a registered label whose yaml has that stage (``labels``: label -> yaml text).
    """
    if row.get("not_runnable"):
        return False
    match = dict(row.get("match") or {})
    run = row.get("run")
    if run:
        recipe, yaml_name, overrides = run["recipe"], run["yaml"], dict(run.get("overrides") or {})
        given = set(run.get("inputs") or {})
    else:
        recipe = f"recipes/{match.pop('dataset')}/{match.pop('method')}"
        yaml_name, overrides, given = f"{match.pop('hparams')}.yaml", match, set()
    path = REPO / recipe / "hparams" / yaml_name
    if not path.is_file() or not (REPO / recipe / ((run or {}).get("script") or "train.py")).is_file():
        return False
    text = text_of(path)
    for ref in (run or {}).get("inputs", {}).values():
        if isinstance(ref, dict) and "recipe" in ref and not _independent_status({"run": ref}, text_of, labels):
            return False
        if isinstance(ref, dict) and "row" in ref:
            source = (labels or {}).get(ref["row"].split("/", 1)[1])
            if source is None or not re.search(rf"name:\s*{ref['stage']}\b", source.split("\nstages:")[-1]):
                return False
    stage_files = re.findall(r"hparams:\s*([\w.]+\.yaml)", text.split("\nstages:")[-1]) if "\nstages:" in text else []
    texts = [text, *(text_of(path.parent / f) for f in stage_files)]
    for key, value in overrides.items():
        if not any(re.search(rf"^{key}:", t, flags=re.M) for t in texts):
            return False
        if key == "experiment_name" and not run and not re.search(rf"^experiment_name:\s*{value}\b", text, re.M):
            return False
    handovers = set(re.findall(r"handover:\s*(\w+)", text)) | ({"init_from"} if "\nstages:" in text else set())
    folders = {"data_folder", *reproduce.DATA_KEYS}
    needed = set(re.findall(r"^(\w+):\s*!PLACEHOLDER", text, flags=re.M)) - folders - handovers - given
    return not needed


def test_list_coverage_matches_an_independent_count(capsys):
    """Rows per paper counted from the registry's text, commands checked by reading the yamls as text."""
    files = sorted(DEFAULT_SPEC_FOLDER.glob("*.yaml"))
    assert len(files) == 5  # one per paper
    cache = {}

    def text_of(path):
        return cache.setdefault(path, Path(path).read_text())

    expected, labels = {}, {}
    tables = [t for file in files for t in ruamel.yaml.YAML(typ="safe").load(Path(file).read_text())["tables"]]
    for row in (row for table in tables for row in table["rows"]):  # label -> the text of the yaml it runs
        match = {"dataset": "", "method": "", "hparams": "", **(row.get("match") or {})}
        spec = row.get("run") or {"recipe": f"recipes/{match['dataset']}/{match['method']}",
                                  "yaml": f"{match['hparams']}.yaml"}  # fmt: skip
        path = REPO / spec["recipe"] / "hparams" / spec["yaml"]
        labels[row["label"]] = text_of(path) if path.is_file() else ""
    for table in tables:
        for row in table["rows"]:
            paper = row.get("paper_id") or re.match(r"(\S+) paper", row["source"]).group(1)
            runnable, total = expected.get(paper, (0, 0))
            expected[paper] = (runnable + _independent_status(row, text_of, labels), total + 1)
    assert coverage(load_rows()) == expected
    assert main(["list"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == "Coverage: " + "; ".join(f"{p}: {n} of {t} rows runnable" for p, (n, t) in expected.items())


def test_representative_rows_compose_and_a_misspelt_override_fails(registry, tmp_path):
    """A plain row, a staged row and a row with inputs compose (references resolved); a misspelt key fails."""
    rows = {r.label: r for r in load_rows(registry)}
    for label in ("derived", "explicit with stages", "fine-tuned"):
        compose(rows[label].run, tmp_path / label.replace(" ", "_"), build=False)
    with pytest.raises(SystemExit, match="pcl_wieght"):
        compose(Run("recipes/WHAM/nass", "convtasnet_nass.yaml", {"pcl_wieght": 2}, {"data_folder": "WHAM"}), tmp_path)
    with pytest.raises(SystemExit, match="n_layer_intra"):  # a misspelt key of an included block
        compose(Run("recipes/WHAM/nass", "sepformer_nass.yaml", {"backbone": {"n_layer_intra": 1}}), tmp_path)
    assert (
        "pcl_wieght"
        in resolve_run(
            {"run": {"recipe": "recipes/WHAM/nass", "yaml": "convtasnet_nass.yaml", "overrides": {"pcl_wieght": 2}}}
        )[1]
    )


@pytest.mark.slow
def test_every_registered_runnable_row_composes(tmp_path):
    """Every registered command builds its objects (tiny sizes) with its overrides and stand-in corpus folders."""
    runs = {r.run.key(): r.run for r in load_rows() if r.run is not None}
    runs.update({step.key(): step for run in list(runs.values()) for step in run.input_runs.values()})  # DIP+'s step
    assert len(runs) > 10 and any(run.script == "pretrain.py" for run in runs.values())
    failures = []
    for i, run in enumerate(runs.values()):
        try:
            compose(run, tmp_path / str(i))
        except (Exception, SystemExit) as err:
            failures.append(f"{run.recipe}/hparams/{run.yaml} {run.overrides}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)


def test_run_plans_shared_runs_seeds_inputs_and_the_dry_run(registry, tmp_path, capsys):
    rows = load_rows(registry)
    chosen = select(rows, "ALPHA:fig2", ["fine-tuned"])
    plan = plan_runs(
        chosen, [7, 8], tmp_path, {"WHAM": Path("/w"), "Aishell2Mix": Path("/a"), "LibriMix": Path("/l")}, all_rows=rows
    )
    names = [p.name for p in plan]
    assert names == [
        "WHAM/nass/convtasnet_nass__task-sep_noisy/7",
        "Aishell2Mix/dpccn/sdpccn_remix__init_from-derived/7",
        "WHAM/nass/convtasnet_nass__task-sep_noisy/8",
        "Aishell2Mix/dpccn/sdpccn_remix__init_from-derived/8",
    ]
    assert plan[1].after == [plan[0]]
    assert f"--init_from={plan[0].folder}" in plan[1].command and "--seed=7" in plan[1].command
    assert "--data_folder=/l" in plan[1].command and "--aishell2mix_folder=/a" in plan[1].command
    with pytest.raises(reproduce.RegistryError, match="give --data WHAM"):
        plan_runs(chosen, [7], tmp_path, {}, all_rows=rows)
    table2 = [Row("ALPHA", "2", f"t{i}", {"test_set": name}, {}, run=resolve_run(
        {"match": {"dataset": "WSJ0Mix", "method": "saddel", "hparams": "bl_sd"}, "test_set": name})[0])
        for i, name in enumerate(["librispeech_musan", "wham"])]  # fmt: skip
    corpora = {"WSJ0Mix": "/w", "MUSAN": "/m", "LibriSpeech": "/ls", "WHAM": "/wh"}
    (shared,) = plan_runs(table2, [1], tmp_path, corpora)  # one run, the corpora of both test sets, each once
    assert sorted(a for a in shared.command if "_folder=" in a and "output" not in a) == [
        "--data_folder=/w", "--librispeech_folder=/ls", "--musan_folder=/m", "--wham_folder=/wh"]  # fmt: skip
    tiny = plan_runs(
        select(rows, "ALPHA:1", ["explicit with stages"]), [1], tmp_path, {"WSJ0Mix": "/w", "MUSAN": "/m"}, tiny=True
    )[0].command
    assert "--overrides_file=hparams/tiny.yaml" in tiny and "--n_test=5" in tiny  # the row's own value wins
    several = plan_runs(
        chosen[:1], [1], tmp_path, {"Aishell2Mix": "/a", "LibriMix": "/l", "WHAM": "/w"}, TORCHRUN[0], 4, all_rows=rows
    )[-1].command
    assert several[:4] == [*TORCHRUN, "--nproc_per_node=4", "recipes/Aishell2Mix/dpccn/train.py"]
    assert (
        main(["--registry", str(registry), "run", "ALPHA:1", "--seeds", "3", "--dry_run", "--results", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "'--data_folder=<WHAM root>'" in out and "[not yet] misspelt" in out and "0 of 2 runs finished" in out


def _finish(folder, test_sets=("test",)):
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in test_sets:
        (Path(folder) / reproduce._summary_name(name)).write_text("{}")


def test_finished_runs_are_recognised(registry, tmp_path):
    rows = load_rows(registry)
    paths = {"WSJ0Mix": "/w", "MUSAN": "/m", "WHAM": "/w"}
    plain, staged = plan_runs(select(rows, "ALPHA:1", ["explicit with stages", "derived"]), [1], tmp_path, paths)
    assert [s for s, _ in staged.stages] == ["step1", "unrolled"]
    _finish(staged.stages[-1][1])
    assert not staged.finished()  # the last stage has not written stage_done.json
    (Path(staged.stages[-1][1]) / reproduce.STAGE_DONE).write_text("{}")
    assert staged.finished()
    (Path(staged.stages[-1][1]) / "test_summary.json").unlink()  # e.g. tested before a test set's corpus was given
    assert not staged.finished() and staged.command_to_finish() == [*staged.command, "--stages=unrolled"]
    assert plain.command_to_finish() == plain.command
    plain.rows[0].spec["test_set"] = "extra"
    _finish(plain.folder)
    assert not plain.finished()  # its row reads test_summary_extra.json
    _finish(plain.folder, ["extra"])
    assert plain.finished()


def test_slurm_jobs_resources_dependencies_and_a_rerun(registry, tmp_path, monkeypatch, capsys):
    """submitit's DebugExecutor runs a fake command per job; the real commands, resources and dependencies are
    checked on the submissions; a rerun submits nothing; the parameters are valid for submitit's SLURM executor."""
    submitit = pytest.importorskip("submitit")
    rows = load_rows(registry)
    chosen = select(rows, "ALPHA:1", ["explicit with stages", "derived"])
    plan = plan_runs(chosen, [1], tmp_path / "results", {"WSJ0Mix": "/w", "MUSAN": "/m", "WHAM": "/w"}, "slurm", 2)
    resources = {**reproduce.SLURM_DEFAULTS, "gpus": 2, "time_min": 60, "partition": "gpu", "cluster": "debug"}

    def fake(command, item, stage):
        """A job that finishes its run (or stage) as the recipe would, without training."""
        folder = dict(item.stages)[stage] if stage else item.folder
        script = (
            "import pathlib,sys; f=pathlib.Path(sys.argv[1]); f.mkdir(parents=True, exist_ok=True); "
            "[(f/n).write_text('{}') for n in sys.argv[2:]]"
        )
        names = ["test_summary.json"] + ([reproduce.STAGE_DONE] if stage else [])
        return submitit.helpers.CommandFunction([sys.executable, "-c", script, str(folder), *names])

    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="debug")
    subs = launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor,
                        job_state=lambda job_id: "COMPLETED")  # fmt: skip
    assert [s.name for s in subs] == [
        "WHAM/nass/convtasnet_nass__task-sep_noisy/1",
        "WSJ0Mix/saddel/saddel__n_test-5/1:step1",
        "WSJ0Mix/saddel/saddel__n_test-5/1:unrolled",
    ]
    plain, step1, unrolled = subs
    assert step1.command[:3] == [*TORCHRUN, "--nproc_per_node=2"] and step1.command[-1] == "--stages=step1"
    assert unrolled.command[-1] == "--stages=unrolled" and unrolled.depends_on == [step1.job.job_id]
    assert unrolled.parameters["slurm_additional_parameters"] == {"dependency": f"afterok:{step1.job.job_id}"}
    assert plain.depends_on == [] and "dependency" not in plain.parameters["slurm_additional_parameters"]
    assert step1.parameters["gpus_per_node"] == 2 and step1.parameters["timeout_min"] == 60
    assert step1.parameters["slurm_partition"] == "gpu"
    for sub in subs:
        sub.job.result()  # the debug executor runs the job now
    assert all(item.finished() for item in plan)
    assert launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor) == []
    (Path(plan[1].stages[-1][1]) / "test_summary.json").unlink()  # stages done, a test summary missing
    queued = launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor,
                          job_state=lambda job_id: "PENDING")  # fmt: skip
    assert queued == [] and "[queued]  WSJ0Mix/saddel/saddel__n_test-5/1:unrolled" in capsys.readouterr().out
    again = launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor,
                         job_state=lambda job_id: "COMPLETED")  # fmt: skip
    assert [(s.name, s.depends_on) for s in again] == [("WSJ0Mix/saddel/saddel__n_test-5/1:unrolled", [])]
    # the same parameters pass submitit's SLURM executor (a stand-in srun on PATH: no cluster here)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    slurm = submitit.AutoExecutor(folder=tmp_path / "slurm_real", cluster="slurm")
    slurm.update_parameters(**unrolled.parameters)
    params = slurm._executor.parameters
    assert params["additional_parameters"]["dependency"].startswith("afterok:") and params["partition"] == "gpu"
    assert params["gpus_per_node"] == 2 and params["time"] == 60


def test_collect_marks_missing_runs_and_fills_measured_ones(registry, tmp_path):
    """Two seeds of one row (mean +- std, difference to the paper), the other rows missing, never zeros."""
    for seed, value in ((1, 5.0), (2, 7.0)):
        run = tmp_path / "runs" / str(seed)
        run.mkdir(parents=True)
        (run / "hyperparams.yaml").write_text(
            "# Generated\n# /x/recipes/WHAM/nass/hparams/convtasnet_nass.yaml\ntask: sep_noisy\nseed: 1\n"
        )
        (run / "test_summary.json").write_text(json.dumps({"si-snr_i": value, "sdr_i": value + 1}))
    out = tmp_path / "table"
    assert (
        main(["--registry", str(registry), "collect", "ALPHA:1", str(tmp_path / "runs"), "--output_folder", str(out)])
        == 0
    )
    with open(out / "table.csv", newline="") as f:
        lines = {r["row"]: r for r in csv.DictReader(f)}
    assert float(lines["derived"]["si-snr_i measured"]) == 6.0 and float(lines["derived"]["si-snr_i std"]) == 1.0
    assert float(lines["derived"]["si-snr_i diff"]) == -3.0 and lines["derived"]["si-snr_i runs"] == "2"
    assert lines["misspelt"]["si-snr_i measured"] == "missing" and lines["misspelt"]["si-snr_i diff"] == ""
    markdown = (out / "table.md").read_text()
    assert "| derived | 9.00 | 6.00 ± 1.00 (2) | -3.00 |" in markdown and "missing" in markdown
    assert (out / "table.png").stat().st_size > 1000


@pytest.mark.slow
def test_run_tiny_then_collect_fills_every_row(tmp_path, capsys):
    """NASS Table 4 (four rows) end to end on a mini WHAM! that run --tiny writes, then collected; a rerun runs none."""
    results = tmp_path / "results"
    assert main(["run", "NASS:4", "--tiny", "--seeds", "1", "--results", str(results)]) == 0
    assert main(["run", "NASS:4", "--tiny", "--seeds", "1", "--results", str(results)]) == 0
    rerun = capsys.readouterr().out.split("4 of 4 runs finished")[1]
    assert rerun.count("[done]") == 4 and "[run]" not in rerun
    assert main(["collect", "NASS:4", str(results), "--output_folder", str(tmp_path / "table")]) == 0
    with open(tmp_path / "table" / "table.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 4
    for line in lines:
        for metric in ("si-snr_i", "sdr_i"):
            assert line[f"{metric} measured"] != "missing" and line[f"{metric} runs"] == "1", line


#: DIP's Table VII/VIII DIP+ rows and the system 13 row whose pretraining stage they start from.
DIP_PLUS = ["ConvTasNet, DIP+", "DPRNN, DIP+", "Sepformer, DIP+"]
SYS13 = "DIP:III/Sys. 13, LM2Mix train-360 + Vox2Mix train-253 (Mixture 500h)"
DIP_CORPORA = {"LibriMix": "/l", "Vox2Mix": "/v", "LRS2Mix": "/r2", "REALM": "/rm", "Vox2Mix253Lists": "/l253"}


def test_dip_plus_rows_chain_system_13_pretraining_the_dip_plus_step_and_the_separator(tmp_path, capsys):
    """Each DIP+ row: system 13's run up to its pretraining stage, one DIP+ step (recipes/REALM/dip), its separator."""
    rows = load_rows()
    by_ref = {r.ref: r for r in rows}
    for table in ("VII", "VIII"):
        for label in DIP_PLUS:
            assert by_ref[f"DIP:{table}/{label}"].run is not None, by_ref[f"DIP:{table}/{label}"].reason
    plan = plan_runs(select(rows, "DIP:VII", DIP_PLUS[:2]), [1], tmp_path, DIP_CORPORA, all_rows=rows)
    sys13, plus, convtasnet, dprnn = plan  # one DIP+ step for both separators, planned before them
    assert sys13.folder == by_ref[SYS13].run.folder(tmp_path, 1) and sys13.upto == "pretrain" and not sys13.rows
    assert sys13.stages == [("pretrain", str(sys13.folder / "pretrain"))]
    assert (
        sys13.command_to_finish()[-1] == "--stages=pretrain" and "--pretrain_vox2mix_mixing_list=/l253" in sys13.command
    )
    assert plus.command[1:3] == ["recipes/REALM/dip/pretrain.py", "hparams/pretrain_plus.yaml"] and not plus.rows
    assert plus.after == [sys13] and f"--pretrained_frontend={sys13.folder / 'pretrain'}" in plus.command
    assert {"--data_folder=/rm", "--librimix_folder=/l"} <= set(plus.command) and plus.needs_marker
    assert plus.folder.parent.parent == tmp_path / "REALM" / "dip"
    for item, name in ((convtasnet, "convtasnet"), (dprnn, "dprnn")):
        assert item.after == [plus] and f"--pretrained_frontend={plus.folder}" in item.command
        assert item.command[1:3] == ["recipes/LibriMix/dip/train.py", f"hparams/{name}_dip.yaml"]
        assert f"--experiment_name={name}_dip_plus" in item.command and "--realm_folder=/rm" in item.command
        assert item.stages == [("separate", str(item.folder / "separate"))]  # its frontend is given: no pretraining
        assert not any(a.startswith("--pretrain_vox2mix_mixing_list") for a in item.command)
    # with system 13's own row (Table VII's "ConvTasNet, DIP"): its full run, and the same folder up to pretrain
    both = plan_runs(select(rows, "DIP:VII", ["ConvTasNet, DIP", DIP_PLUS[0]]), [1], tmp_path, DIP_CORPORA,
                     all_rows=rows)  # fmt: skip
    assert [(p.folder, p.upto) for p in both[:2]] == [(sys13.folder, None), (sys13.folder, "pretrain")]
    assert (
        main(["run", "DIP:VIII", "--rows", DIP_PLUS[2], "--seeds", "1", "--dry_run", "--results", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    runs = [line.split()[1] for line in out.splitlines() if line.startswith("[run]")]
    assert runs == [sys13.name, plus.name, "LibriMix/dip/sepformer_dip__experiment_name-sepformer_dip_plus__"
                    "pretrained_frontend-dip_plus/1"]  # fmt: skip
    assert "--stages=pretrain" in out and "<Vox2Mix253Lists root>" in out and "0 of 3 runs finished" in out
    assert main(["list", "DIP:VII"]) == 0
    out = capsys.readouterr().out
    assert out.count("runnable (stages: separate), 3 commands in turn") == 3
    assert "'--pretrained_frontend=<output folder of 1>/pretrain'  (step dip_plus)" in out


def test_dip_plus_rerun_skips_finished_steps_and_the_step_is_marked_done(tmp_path, capsys):
    rows = load_rows()
    plan = plan_runs(select(rows, "DIP:VII", DIP_PLUS[:1]), [1], tmp_path, DIP_CORPORA, all_rows=rows)
    sys13, plus, convtasnet = plan
    (Path(sys13.stages[0][1])).mkdir(parents=True)
    (Path(sys13.stages[0][1]) / reproduce.STAGE_DONE).write_text("{}")
    assert sys13.finished() and not plus.finished()  # system 13's separator need not run
    reproduce.mark_done(plus.folder / reproduce.STEP_DONE, plus.command)
    assert plus.finished() and not convtasnet.finished()
    assert reproduce.launch_local(plan, dry_run=True) == []
    out = capsys.readouterr().out
    assert (
        f"[done]    {sys13.name}" in out and f"[done]    {plus.name}" in out and f"[run]     {convtasnet.name}" in out
    )
    # the local launcher marks a step done when its command exits 0 (a stand-in command: no training)
    step = reproduce.Planned(plus.run, 2, tmp_path / "step", [], command=[sys.executable, "-c", "pass"])
    assert step.needs_marker and not step.finished()
    assert reproduce.launch_local([step]) == [] and step.finished()
    failing = reproduce.Planned(
        plus.run, 3, tmp_path / "fails", [], command=[sys.executable, "-c", "raise SystemExit(3)"]
    )
    assert reproduce.launch_local([failing]) == [failing] and not (failing.folder / reproduce.STEP_DONE).exists()


def test_dip_plus_slurm_jobs_depend_on_the_pretraining_stage_and_the_step(tmp_path, capsys):
    """One job per stage and step; the DIP+ step after system 13's pretraining job (submitted once), the
    separators after the step; the step's job writes its marker; a rerun submits nothing."""
    submitit = pytest.importorskip("submitit")
    rows = load_rows()
    chosen = select(rows, "DIP:VII", ["ConvTasNet, DIP", *DIP_PLUS[:2]])
    plan = plan_runs(chosen, [1], tmp_path / "results", DIP_CORPORA, "slurm", 1, all_rows=rows)
    resources = {**reproduce.SLURM_DEFAULTS, "cluster": "debug"}

    def fake(command, item, stage):
        if stage is None:  # the DIP+ step: the runner's marker after a stand-in command
            return reproduce.MarkedCommand(submitit.helpers.CommandFunction([sys.executable, "-c", "pass"]),
                                           item.folder / reproduce.STEP_DONE)  # fmt: skip
        folder = dict(item.stages)[stage]
        script = (
            "import pathlib,sys; f=pathlib.Path(sys.argv[1]); f.mkdir(parents=True); "
            "[(f/n).write_text('{}') for n in sys.argv[2:]]"
        )
        names = ["test_summary.json", "test_summary_realm.json", reproduce.STAGE_DONE]
        return submitit.helpers.CommandFunction([sys.executable, "-c", script, folder, *names])

    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="debug")
    subs = launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor,
                        job_state=lambda job_id: "COMPLETED")  # fmt: skip
    by_name = {s.name: s for s in subs}
    sys13, plus = plan[0].name, plan[2].name
    assert [s.name for s in subs] == [f"{sys13}:pretrain", f"{sys13}:separate", plus,
                                      f"{plan[3].name}:separate", f"{plan[4].name}:separate"]  # fmt: skip
    pretrain = by_name[f"{sys13}:pretrain"].job.job_id
    assert by_name[f"{sys13}:separate"].depends_on == [pretrain] and by_name[plus].depends_on == [pretrain]
    assert by_name[plus].command[1] == "recipes/REALM/dip/pretrain.py"
    for item in plan[3:]:
        sub = by_name[f"{item.name}:separate"]
        assert sub.depends_on == [by_name[plus].job.job_id] and sub.command[-1] == "--stages=separate"
        assert sub.parameters["slurm_additional_parameters"] == {"dependency": f"afterok:{by_name[plus].job.job_id}"}
    for sub in subs:
        sub.job.result()
    assert all(item.finished() for item in plan) and (plan[2].folder / reproduce.STEP_DONE).is_file()
    assert launch_slurm(plan, resources, tmp_path / "slurm", make_callable=fake, executor=executor) == []


@pytest.mark.slow
def test_a_dip_plus_row_runs_tiny_end_to_end(tmp_path, capsys):
    """Table VII's "ConvTasNet, DIP+" row (its registered run) with --tiny: three commands, then a rerun runs none.

    System 13's row is registered here without its pretraining corpus (the mini corpora have no Libri2Mix
    train-360 and no Vox2Mix train-253 lists), the rest as in modules/paper_tables/4_dip.yaml.
    """
    rows = {r.ref: r.spec for r in load_rows()}
    sys13 = json.loads(json.dumps(rows[SYS13]))
    del sys13["run"]["data"], sys13["run"]["overrides"]["pretrain_train_set"]
    plus = json.loads(json.dumps(rows[f"DIP:VII/{DIP_PLUS[0]}"]))
    registry = tmp_path / "registry.yaml"
    tables = [{"title": "III", "rows": [sys13]}, {"title": "VII", "metrics": ["e2e_wer"], "rows": [plus]}]
    registry.write_text(json.dumps({"tables": tables}))
    command = [
        "--registry",
        str(registry),
        "run",
        "DIP:VII",
        "--tiny",
        "--seeds",
        "1",
        "--results",
        str(tmp_path / "r"),
    ]
    assert main(command) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.count("[run]") == 3 and "3 of 3 runs finished" in out
    separator = next((tmp_path / "r" / "LibriMix" / "dip").glob("convtasnet_dip__experiment_name-convtasnet_dip_plus*"))
    step = next((tmp_path / "r" / "REALM" / "dip").glob("pretrain_plus__*")) / "1"
    assert (step / reproduce.STEP_DONE).is_file() and (
        separator / "1" / "separate" / "test_summary_realm.json"
    ).is_file()
    assert str(step) in (separator / "1" / "separate" / "init_from.txt").read_text()  # the DIP+ frontend
    assert not (separator / "1" / "pretrain").exists()  # no pretraining of its own
    assert main(command) == 0
    rerun = capsys.readouterr().out
    assert rerun.count("[done]") == 3 and "[run]" not in rerun


def test_stage_inputs_resolve_or_say_why(registry, tmp_path):
    """{row, stage}: runnable when the row's run has that stage (planned up to it); a wrong stage or a malformed
    input mapping makes the row "not yet" with the reason."""
    data = ruamel.yaml.YAML(typ="safe").load(registry.read_text())
    remix = {"recipe": "recipes/Aishell2Mix/dpccn", "yaml": "sdpccn_remix.yaml",
             "data": {"data_folder": "LibriMix", "aishell2mix_folder": "Aishell2Mix"}}  # fmt: skip
    for label, ref in (
        ("good stage", {"row": "ALPHA:1/explicit with stages", "stage": "step1"}),
        ("wrong stage", {"row": "ALPHA:1/explicit with stages", "stage": "step9"}),
        ("no stage", {"row": "ALPHA:1/derived"}),
    ):
        run = {**remix, "inputs": {"init_from": ref}}
        data["tables"][1]["rows"].append(
            {"label": label, "run": run, "paper": {"2sp": 1.0}, "source": "ALPHA paper, Fig. 2"}
        )
    registry.write_text(json.dumps(data))
    rows = {r.label: r for r in load_rows(registry)}
    assert rows["good stage"].run is not None
    assert "has no stage 'step9'" in rows["wrong stage"].reason and "is a row" in rows["no stage"].reason
    paths = {"WSJ0Mix": "/w", "MUSAN": "/m", "LibriMix": "/l", "Aishell2Mix": "/a"}
    first, remixed = plan_runs([rows["good stage"]], [1], tmp_path, paths, all_rows=list(rows.values()))
    assert first.upto == "step1" and [s for s, _ in first.stages] == ["step1"] and remixed.after == [first]
    assert f"--init_from={first.folder / 'step1'}" in remixed.command
    assert first.command_to_finish()[-1] == "--stages=step1"
