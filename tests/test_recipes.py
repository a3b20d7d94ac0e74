"""Every baseline yaml runs prep -> train -> test with a tiny model on the mini corpora."""

import csv
import json

import pytest
from conftest import run_recipe_cmd

from modules.brain import METRICS

CASES = [
    ("WHAM", "sepformer.yaml", ()),
    ("WHAM", "convtasnet.yaml", ()),
    ("WHAM", "dprnn.yaml", ()),
    ("WHAM", "convtasnet.yaml", ("--task=sep_clean",)),
    ("LibriMix", "sepformer.yaml", ()),
    ("LibriMix", "convtasnet.yaml", ()),
    ("LibriMix", "dprnn.yaml", ()),
    ("LibriMix", "sepformer.yaml", ("--num_spks=3",)),
    ("LibriMix", "dprnn.yaml", ("--num_spks=3", "--task=sep_clean")),
    ("LibriMix", "convtasnet.yaml", ("--task=sep_clean",)),
    ("WHAM", "convtasnet.yaml", ("--dynamic_mixing=True",)),
    ("LibriMix", "dprnn.yaml", ("--dynamic_mixing=True", "--num_spks=3")),
]


def read_results(out):
    with open(out / "test_results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("dataset, hparams, extra", CASES, ids=[f"{d}-{h}-{'-'.join(e)}" for d, h, e in CASES])
def test_baseline_recipe_runs(mini_root, tmp_path, dataset, hparams, extra):
    out = tmp_path / "out"
    proc = run_recipe_cmd(dataset, "baseline", f"hparams/{hparams}", mini_root[dataset.lower()], out, *extra)
    assert "test_results.csv" in proc.stdout

    rows = read_results(out)
    assert [r["snt_id"] for r in rows][-1] == "avg"
    items = rows[:-1]
    assert len(items) == 3  # every test mixture scored, not only batch item 0
    assert len({r["snt_id"] for r in items}) == 3
    for metric in METRICS:
        values = [float(r[metric]) for r in items]
        assert all(v == v and abs(v) < 200 for v in values), (metric, values)
        assert float(rows[-1][metric]) == pytest.approx(sum(values) / len(values), abs=1e-3)

    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["n_mixtures"] == 3
    assert set(METRICS) <= set(summary)
    assert (out / "test_summary.md").exists()
    n_spks = 3 if "--num_spks=3" in extra else 2
    assert sorted(p.name for p in (out / "audio").glob(f"{items[0]['snt_id']}_*.wav")) == sorted(
        [f"{items[0]['snt_id']}_mix.wav"]
        + [f"{items[0]['snt_id']}_s{i}{h}.wav" for i in range(1, n_spks + 1) for h in ("", "_hat")]
    )
    # two epochs were trained and validated
    log = (out / "train_log.txt").read_text()
    assert "epoch: 2" in log and "test si-snr" in log


def test_recipe_runs_from_its_own_folder(mini_root, tmp_path):
    """The SpeechBrain habit: cd into the recipe folder and run train.py there."""
    import os
    import subprocess
    import sys

    from conftest import REPO, TINY

    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "train.py",
        "hparams/convtasnet.yaml",
        f"--data_folder={mini_root['wham']}",
        f"--output_folder={out}",
        f"--overrides_file={TINY}",
        "--N_epochs=1",
        "--device=cpu",
        "--noprogressbar",
    ]
    proc = subprocess.run(
        cmd,
        check=False,
        cwd=REPO / "recipes/WHAM/baseline",
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "test_results.csv").exists()


def test_bad_data_folder_is_one_line_error(tmp_path):
    proc = run_recipe_cmd(
        "WHAM", "baseline", "hparams/convtasnet.yaml", tmp_path / "nowhere", tmp_path / "out", check=False
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "nowhere" in last


def test_misspelt_override_of_an_included_block_is_an_error(tmp_path):
    """`--backbone="{n_layer_intra: 1}"` (for n_layers_intra) must not silently train the full-size model."""
    for block, key in (("backbone", "n_layer_intra"), ("training", "lr_patiense")):
        proc = run_recipe_cmd(
            "WHAM", "baseline", "hparams/sepformer.yaml", tmp_path, tmp_path / "out", f"--{block}={{{key}: 1}}",
            check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: override of `{block}`") and key in last, last


def test_extra_mixture_only_test_set_writes_separations(mini_root, tmp_path):
    """A second test set of real recordings (mini REAL-M, no references) in the same run."""
    from data_prep.mini import make_mini_realm
    from data_prep.realm import prepare_realm

    realm = make_mini_realm(tmp_path / "data", seed=0, n_train=2, n_valid=1, n_test=3)
    manifests = prepare_realm(realm, tmp_path / "prep")
    out = tmp_path / "out"
    extra = f"--training={{extra_test_sets: {{realm: {{manifest: {manifests['test']}, data_folder: {realm}}}}}}}"
    proc = run_recipe_cmd("WHAM", "baseline", "hparams/convtasnet.yaml", mini_root["wham"], out, extra, "--N_epochs=1")
    assert "test_results_realm.csv" in proc.stdout
    rows = read_results(out)  # the main test set is scored as usual
    assert rows[-1]["snt_id"] == "avg" and float(rows[-1]["scored"]) == 3
    with open(out / "test_results_realm.csv", newline="") as f:
        realm_rows = list(csv.DictReader(f))
    assert list(realm_rows[0]) == ["snt_id", "scored", "reason"] and all(r["scored"] == "0" for r in realm_rows[:-1])
    assert all(r["reason"].startswith("no references") for r in realm_rows[:-1])
    summary = json.loads((out / "test_summary_realm.json").read_text())
    assert summary["n_scored"] == 0 and summary["n_mixtures"] == len(realm_rows) - 1
    ids = [r["snt_id"] for r in realm_rows[:-1]]
    written = {p.name for p in (out / "separations_realm").iterdir()}
    assert not (out / "audio_realm").exists()  # no empty audio folder for a set without references
    assert written == {f"{i}_s{k}.wav" for i in ids for k in (1, 2)}


def test_stages_flag_names_declared_stages(tmp_path):
    """``--stages`` takes the stages a system's yaml declares; a one-stage yaml declares none. Both fail before
    any data is read."""
    from conftest import REPO

    from modules.recipe import run_recipe

    recipe = str(REPO / "recipes" / "LibriMix" / "saddel" / "train.py")
    common = [f"--data_folder={tmp_path / 'absent'}", f"--output_folder={tmp_path / 'out'}"]
    with pytest.raises(SystemExit, match=r"subset of \['step1', 'unrolled'\], got 'step2'"):
        run_recipe(None, recipe, ["hparams/saddel.yaml", *common, "--stages=step2"])
    with pytest.raises(SystemExit, match=r"a2pit\.yaml declares no stages"):
        run_recipe(None, recipe, ["hparams/a2pit.yaml", *common, "--stages=step1"])
    with pytest.raises(SystemExit, match=r"match no key"):
        run_recipe(None, recipe, ["hparams/saddel.yaml", *common, "--not_a_key=1"])
    assert not (tmp_path / "out").exists()
