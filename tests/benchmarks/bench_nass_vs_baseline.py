"""NASS against its paper's baseline (the same Conv-TasNet, no noise output, no contrastive loss) on mini corpora.

Both systems are the real recipes, trained on the same mini WHAM! (8 kHz, min, noisy;
:func:`data_prep.mini.make_mini_wham`, 200 training mixtures as in ``tests/test_learning.py``)
with the same seeds and the same overrides file (``hparams/cpu_small.yaml``: the 0.15M-parameter
Conv-TasNet, 4 epochs of 2 s crops, batches of 4, Adam 1e-3, fp32):

* baseline: ``recipes/WHAM/baseline`` ``convtasnet.yaml`` (Conv-TasNet, two outputs, SI-SNR with PIT);
* NASS: ``recipes/WHAM/nass`` ``convtasnet_nass.yaml`` (the same Conv-TasNet with a third output for
  the noise, PIT over the three, and the S->N patch-wise contrastive loss, lambda 2, M 256 as the
  recipe has them; nothing changed for the benchmark).

With ``cpu_small.yaml`` the two yamls differ only by NASS (its noise output, contrastive loss and
patch sampler): the schedule keys where the recipes differ at full scale (4 s crops, speed
perturbation, the epoch after which the learning rate may halve) are set by the overrides file or
do not act in 4 epochs.

Each run tests

* in domain: the mini WHAM! test set (speakers unseen in training);
* out of domain: the mini Libri2Mix noisy test set (``mix_both``, 8 kHz min;
  :func:`data_prep.mini.make_mini_librimix`: other procedural speakers, LibriMix's levels, with
  coloured noise about 5 dB below the speech instead of WHAM!'s ambient noise at -6 to +3 dB),
  the yamls' ``libri2mix`` extra test set (``--librimix_folder``).

The report gives SI-SNRi of the speakers (the noise output is not scored) per test set, mean
+- std over the seeds, and the paired difference NASS minus baseline, seed by seed
(:mod:`method_vs_baseline`). ``--systems "NASS noise-speaker only"`` adds the Table 1 ablation
(the NASS recipe with ``--pcl_direction=none``: the noise output, no contrastive loss); it is
not part of the default run.

Run (one core, single-threaded runs)::

    python tests/benchmarks/bench_nass_vs_baseline.py --work_dir /tmp/bench_nass --json /tmp/bench_nass.json

Measured wall time of the default run (3 seeds, both systems, corpora included): 14 min 20 s on
one core of the 2-core development machine while other jobs kept the other core busy (load about
2): runs of 120-166 s (baseline 120-166 s, NASS 129-152 s), corpora 25 s; over the ~12-minute
target by about 20 %. The recipe README (``recipes/WHAM/nass/README.md``, "Method vs baseline on
mini corpora") has the table.

Procedural mini corpora, small models and a few CPU epochs: what this shows says nothing about
the paper's full-scale numbers.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from method_vs_baseline import System, main

#: Mini corpora: WHAM! to train and test on (the learning test's sizes), Libri2Mix noisy to test
#: on only (its train and dev splits exist because the preparation reads them; one mixture each).
CORPORA = {
    "wham": {"n_train": 200, "n_valid": 10, "n_test": 16, "sample_rates": (8000,), "modes": ("min",)},
    "librimix": {
        "n_train": 1,
        "n_valid": 1,
        "n_test": 16,
        "sample_rates": (8000,),
        "modes": ("min",),
        "n_spks": (2,),
        "mix_types": ("mix_both",),
    },
}

DATA = {"data_folder": "wham", "librimix_folder": "librimix"}
SETS = {
    "WHAM! test (in domain)": "test_summary.json",
    "Libri2Mix noisy test (out of domain)": "test_summary_libri2mix.json",
}

SYSTEMS = [
    System("baseline Conv-TasNet", "recipes/WHAM/baseline", "convtasnet.yaml", data=DATA, sets=SETS, baseline=True),
    System("NASS Conv-TasNet", "recipes/WHAM/nass", "convtasnet_nass.yaml", data=DATA, sets=SETS),
    System(
        "NASS noise-speaker only",
        "recipes/WHAM/nass",
        "convtasnet_nass.yaml",
        data=DATA,
        sets=SETS,
        overrides=("--pcl_direction=none",),
    ),
]
#: What runs without ``--systems``: the method and its baseline.
DEFAULT_SYSTEMS = ["baseline Conv-TasNet", "NASS Conv-TasNet"]


def run(argv=None):
    """The harness's command line; without ``--systems`` only :data:`DEFAULT_SYSTEMS` run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--systems" not in argv:
        argv += ["--systems", *DEFAULT_SYSTEMS]
    return main(__doc__, CORPORA, SYSTEMS, metric="si-snr_i", argv=argv)


if __name__ == "__main__":
    sys.exit(run())
