"""Shared fixtures: miniature corpora built once per test session, and a recipe runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = "hparams/tiny.yaml"


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    """Mini WHAM! and LibriMix (8 kHz, min) shared by the recipe tests."""
    from data_prep.mini import make_mini_librimix, make_mini_wham

    root = tmp_path_factory.mktemp("mini")
    small = {"n_train": 6, "n_valid": 2, "n_test": 3, "sample_rates": (8000,), "modes": ("min",)}
    return {
        "wham": make_mini_wham(root, seed=0, **small),
        "librimix": make_mini_librimix(root, seed=0, **small),
    }


@pytest.fixture(scope="session")
def learning_corpus(tmp_path_factory):
    """A larger mini WHAM! (200 training mixtures, 8 kHz min) for the learning tests."""
    from data_prep.mini import make_mini_wham

    root = tmp_path_factory.mktemp("learning")
    return make_mini_wham(root, seed=0, n_train=200, n_valid=10, n_test=16, sample_rates=(8000,), modes=("min",))


def run_recipe_cmd(
    dataset,
    method,
    hparams,
    data_folder,
    output_folder,
    *extra,
    launcher=None,
    timeout=900,
    check=True,
    overrides_file=TINY,
):
    """Runs ``recipes/<dataset>/<method>/train.py`` (tiny by default), as a user would, from the repo root."""
    cmd = launcher or [sys.executable]
    cmd = [
        *cmd,
        f"recipes/{dataset}/{method}/train.py",
        hparams,
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        f"--overrides_file={overrides_file}",
        "--device=cpu",
        "--noprogressbar",
        *extra,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if launcher:  # several processes on two cores: one thread each
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(autouse=True)
def _threads_untouched():
    """No test may change torch's thread count: on this CPU build, setting it above one after a batched
    ``torch.linalg.solve`` has run breaks every later solve (oneMKL), and with it the SDR of later tests."""
    import torch

    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "a test changed torch.set_num_threads; leave the thread count alone"
