#!/usr/bin/env python3
"""Baseline speech separation on LibriMix: SepFormer, Conv-TasNet or DPRNN trained with
permutation-invariant SI-SNR, as upstream SpeechBrain's separation recipes.

Run from the repository root (or from this folder, as SpeechBrain recipes are)::

    python recipes/LibriMix/baseline/train.py hparams/sepformer.yaml --data_folder=<root>

The training loop lives in modules.brain.SeparationBrain; the steps of a run
(data preparation, datasets, fit, test, results) in modules.recipe.run_recipe.
"""

from modules.brain import SeparationBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(SeparationBrain, recipe_file=__file__)
