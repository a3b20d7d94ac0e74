#!/usr/bin/env python3
"""Trains the blind SI-SNR estimator of SpeechBrain's REAL-M recipe on this collection's own separations.

The separators are trained runs (or exported models) given in the yaml's
``separators``; each training mixture is separated by one of them and the
estimator learns the oracle SI-SNR of every separated stream. Run from the
repository root (or from this folder)::

    python recipes/REALM/sisnr_estimator/train.py hparams/estimator.yaml --data_folder=<WHAM root> \\
        --separators="[<run folder>, <run folder>]"

The method lives in ``modules.evaluation.sisnr_training.SISNREstimatorBrain``; the
trained ``estimator.ckpt`` is read by ``python -m modules.evaluation.realm --estimator <CKPT folder>``.
"""

from modules.evaluation.sisnr_training import SISNREstimatorBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(SISNREstimatorBrain, recipe_file=__file__)
