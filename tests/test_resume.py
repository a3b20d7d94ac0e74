"""Killing a training run (SIGKILL) and starting the same command again resumes it; one writer per folder."""

import os
import signal
import subprocess
import sys
import time

import yaml
from conftest import REPO, TINY


def latest_checkpoint(save):
    """(intra_epoch, epoch, step) of the newest complete checkpoint, or None.

    Complete as ``CrashSafeCheckpointer`` defines it: published (its meta lists its
    files) and with all of those files present.
    """
    best = None
    for meta_file in save.glob("CKPT+*/CKPT.yaml"):
        try:  # while the run is alive, a checkpoint may be deleted under our feet
            meta = yaml.safe_load(meta_file.read_text())
            if "paramfiles" not in meta:  # not published yet
                continue
            if not all((meta_file.parent / f).exists() for f in meta["paramfiles"]):
                continue  # the kill hit its deletion: CrashSafeCheckpointer ignores it, and so do we
            epoch = yaml.safe_load((meta_file.parent / "counter.ckpt").read_text())["current_epoch"]
            step = yaml.safe_load((meta_file.parent / "brain.ckpt").read_text())["step"]
        except FileNotFoundError:
            continue
        entry = (meta["unixtime"], bool(meta.get("brain_intra_epoch_ckpt")), epoch, step)
        best = max(best, entry) if best else entry
    return best[1:] if best else None


def test_sigkill_then_resume(mini_root, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "recipes/WHAM/baseline/train.py",
        "hparams/convtasnet.yaml",
        f"--data_folder={mini_root['wham']}",
        f"--output_folder={out}",
        f"--overrides_file={TINY}",
        "--device=cpu",
        "--noprogressbar",
        "--N_epochs=2",
        "--ckpt_interval_steps=1",
        # steps slow enough (~0.3 s) to kill the run mid-epoch
        "--limit_training_signal_len=False",
        "--backbone={N_encoder_out: 128, B: 128, H: 256, X: 6, R: 2}",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            state = latest_checkpoint(out / "save") if (out / "save").exists() else None
            if state and state[0] and state[2] >= 2:  # an intra-epoch checkpoint at step >= 2
                break
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.02)
        else:
            raise AssertionError("no intra-epoch checkpoint within 300 s")
        # a second run on the same folder fails at once, naming the live one
        second = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "in use by another run" in last and f"pid {proc.pid}" in last, last
        assert proc.poll() is None  # and leaves the first one alone
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "test_results.csv").exists()
    intra, epoch, step = latest_checkpoint(out / "save")

    rerun = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    log = (out / "log.txt").read_text()
    # nothing older than the last checkpoint is redone: at most one step is lost
    expected = (
        f"Resuming training at epoch {epoch}, step {step}" if intra else f"Resuming training at epoch {epoch + 1}"
    )
    assert expected in log, log[-3000:]
    assert (out / "test_results.csv").exists()
    lines = (out / "train_log.txt").read_text().splitlines()
    epochs = [line.split(",")[0] for line in lines if line.startswith("epoch")]
    # A kill between an epoch's last intra-epoch checkpoint and its end-of-epoch one (the validation and the log
    # line fall in that window) resumes at that epoch's last step and validates it again: its line repeats.
    # No training step is redone (the "Resuming" line above); the epochs still come once each, in order.
    assert [e for i, e in enumerate(epochs) if i == 0 or e != epochs[i - 1]] == ["epoch: 1", "epoch: 2"], epochs
