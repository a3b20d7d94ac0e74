"""SpeechBrain DDP with two CPU processes (gloo): our users' path to many GPUs."""

import sys

from conftest import run_recipe_cmd


def test_torchrun_two_processes_gloo(mini_root, tmp_path):
    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    proc = run_recipe_cmd(
        "WHAM",
        "baseline",
        "hparams/convtasnet.yaml",
        mini_root["wham"],
        out,
        "--distributed_backend=gloo",
        "--N_epochs=1",
        launcher=launcher,
    )
    assert (out / "test_results.csv").exists()
    assert proc.stdout.count("Test results:") == 1  # results announced by the main process only
    log = (out / "log.txt").read_text()
    assert "Training with 2 process(es)" in log, log[-2000:]
