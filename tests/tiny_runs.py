"""Tiny trained runs shared by the inference, export and results tests (made once per test process).

A run is the real recipe (prep -> one epoch -> test) with ``hparams/tiny.yaml`` on
a mini WHAM! of 4/2/2 mixtures. The runs live in one temporary folder removed at
exit. (A session-scoped fixture in ``conftest.py`` would do the same.)
"""

import atexit
import shutil
import tempfile
from pathlib import Path

from conftest import run_recipe_cmd

#: name -> (method, yaml, extra overrides)
RUNS = {
    "convtasnet": ("baseline", "convtasnet.yaml", ()),
    "dprnn": ("baseline", "dprnn.yaml", ()),
    "sepformer": ("baseline", "sepformer.yaml", ()),
    "nass": ("nass", "convtasnet_nass.yaml", ("--pcl_patches=16",)),
}
COMMON = ("--N_epochs=1",)
_STATE = {"root": None}
_DONE = {}


def _root():
    if _STATE["root"] is None:
        from data_prep.mini import make_mini_wham

        root = Path(tempfile.mkdtemp(prefix="tiny_runs_"))
        atexit.register(shutil.rmtree, root, True)
        make_mini_wham(root, seed=1, n_train=4, n_valid=2, n_test=2, sample_rates=(8000,), modes=("min",))
        _STATE["root"] = root
    return _STATE["root"]


def mini_wham():
    """The mini WHAM! root the runs were trained on."""
    return _root() / "WHAM"


def tiny_run(name):
    """The output folder of the tiny run ``name`` (see :data:`RUNS`), trained on first use."""
    if name not in _DONE:
        method, hparams, extra = RUNS[name]
        out = _root() / f"run_{name}"
        run_recipe_cmd("WHAM", method, f"hparams/{hparams}", mini_wham(), out, *COMMON, *extra)
        _DONE[name] = out
    return _DONE[name]
