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
