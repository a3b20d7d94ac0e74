"""DIP versus its paper's baseline on mini corpora: Conv-TasNet with and without the frozen DIP frontend.

The DIP paper's claim (Tables II, V; Figs. 3-5) is that a frontend pretrained on mixtures of both
domains (Libri2Mix and Vox2Mix, MIC: MPC plus the MMD between the domains' cues) helps a Conv-TasNet
trained on Libri2Mix alone to separate out of domain (Vox2Mix, LRS2Mix). This script trains, with the
real recipe (``recipes/LibriMix/dip/train.py``, prep -> train -> test) and the shared harness
(``tests/benchmarks/method_vs_baseline.py``), for each seed:

* ``baseline``: ``convtasnet_baseline.yaml`` (the Table II / V "N/A" row: Conv-TasNet, no frontend);
* ``DIP``: ``convtasnet_dip.yaml``, its whole stage chain: the ``pretrain`` stage (``mic.yaml``: MIC,
  alpha 10, on the mini Libri2Mix training mixtures and the mini Vox2Mix training mixtures, no
  references used), then the ``separate`` stage, the same Conv-TasNet on the frozen frontend.
  One pretraining per seed (the seed's own frontend; the baseline has none).

Both train on mini Libri2Mix (16 kHz, min) with the same overrides file (``hparams/cpu_small.yaml``:
separator sizes, 4 epochs, batch 4, 1 s crops, lr 1e-3; its ``dip_base`` entry makes the frontend tiny:
2 transformer layers of width 32, 25,333 parameters, against wav2vec 2.0 BASE's 95M) and are tested in
domain (Libri2Mix test) and out of domain (mini Vox2Mix and mini LRS2-2Mix test sets, the recipes'
``extra_test_sets``; REAL-M, a third extra set, is separated but not scored: ``--realm_eval=False``).

Settings of the DIP system only (keys of ``mic.yaml``, the pretraining; the separator's yaml has none of
them, so they do not reach the separator): ``--min_crop=1.0 --max_crop=2.0`` (the mini mixtures are
about 2 s long; the paper crops up to 12.5 s), ``--num_negatives=10 --cue_distractors=10`` (the paper's 100
and K 100 need more frames than a 1 s batch has), ``--grad_accumulation_factor=1``, ``--warmup_updates=20``
and ``--max_updates=240`` (the schedule: linear warmup then decay to 0 at the run's last update, as the
paper's 32k warmup and 400k updates). The pretraining runs the same 4 epochs at the same peak lr 1e-3 and
batch 4 as the separator (``N_epochs``, ``lr`` and ``batch_size`` are keys of both stages, set once by the
shared overrides file); an epoch is as long as the larger branch, the 240 mini Vox2Mix training mixtures
(the 120 Libri2Mix ones are drawn twice), so 60 updates an epoch, 240 in all, under a minute on one core: the
paper pretrains a 95M-parameter model for 400k updates on 500 hours. Nothing here is tuned to make DIP win;
the settings are the smallest that run the chain. Before the full run, one 1-seed trial at smaller sizes
(80 training mixtures per corpus, 200 updates) gave the same sign (DIP below the baseline on all three
sets); the sizes were then raised to use the time budget, and nothing was changed after the full run.

    python tests/benchmarks/bench_dip_vs_baseline.py --work_dir /tmp/bench_dip --json /tmp/bench_dip.json

Measured wall time of one full run (3 seeds, both systems, one thread, on the shared 2-core machine):
7 min 45 s (corpora about 1.5 min; per seed about 40 s baseline, 90 s DIP: 55 s pretraining, 35 s
separator). Result of that run and what it shows: recipes/LibriMix/dip/README.md, "Method vs baseline
on mini corpora".

What it can show: whether a tiny frontend, pretrained for a few CPU minutes on procedural mini corpora,
changes what a small Conv-TasNet learns in 4 epochs, in and out of domain. What it cannot show: the paper's
effect at scale (a 95M-parameter frontend pretrained for 400k updates on 500 hours of real and synthetic
mixtures); a null or negative result here says nothing about that.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from method_vs_baseline import System, main

RECIPE = "recipes/LibriMix/dip"

#: Mini corpora (data_prep.mini): training on Libri2Mix; Vox2Mix training mixtures feed the pretraining's real branch.
CORPORA = {
    "librimix": {"n_train": 120, "n_valid": 8, "n_test": 32, "sample_rates": (16000,), "modes": ("min",)},
    "vox2mix": {"n_train": 240, "n_valid": 8, "n_test": 32},
    "lrs2mix": {"n_train": 1, "n_valid": 1, "n_test": 32},
    "realm": {"n_train": 1, "n_valid": 1, "n_test": 1},
}

#: Corpus folders of both systems (Vox2Mix: its VoxCeleb2-2Mix variant, which has references).
DATA = {
    "data_folder": "librimix",
    "vox2mix_folder": ("vox2mix", "VoxCeleb2-2Mix"),
    "lrs2mix_folder": "lrs2mix",
    "realm_folder": "realm",
}

#: Settings both systems take on top of the overrides file (test-stage switches, not model or training settings).
SHARED = ("--realm_eval=False", "--perceptual_metrics=False")

#: The pretraining's own settings (keys of mic.yaml only): the smallest that run MIC on 1-2 s mini mixtures.
PRETRAIN = (
    "--min_crop=1.0",
    "--max_crop=2.0",
    "--num_negatives=10",
    "--cue_distractors=10",
    "--grad_accumulation_factor=1",
    "--warmup_updates=20",
    "--max_updates=240",
)


def sets(prefix=""):
    """Report label -> summary file of a run (``prefix``: the stage folder of a staged system)."""
    return {
        "Libri2Mix (in domain)": f"{prefix}test_summary.json",
        "Vox2Mix (out of domain)": f"{prefix}test_summary_vox2mix.json",
        "LRS2Mix (out of domain)": f"{prefix}test_summary_lrs2mix.json",
    }


SYSTEMS = [
    System("baseline", RECIPE, "convtasnet_baseline.yaml", DATA, sets(), overrides=SHARED, baseline=True),
    System("DIP", RECIPE, "convtasnet_dip.yaml", DATA, sets("separate/"), overrides=(*SHARED, *PRETRAIN)),
]


if __name__ == "__main__":
    sys.exit(main(__doc__, CORPORA, SYSTEMS, metric="si-snr_i"))
