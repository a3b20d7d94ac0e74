#!/usr/bin/env python3
"""NASS (noise-aware speech separation) on WHAM: noise predicted as an extra speaker and a
patch-wise contrastive loss between separated speech and the estimated noise, on a
SepFormer, Conv-TasNet or DPRNN backbone.

Run from the repository root (or from this folder)::

    python recipes/WHAM/nass/train.py hparams/sepformer_nass.yaml --data_folder=<root>

The method lives in ``modules.nass.NASSBrain``; the steps of a run in
``modules.recipe.run_recipe``.
"""

from modules.nass import NASSBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(NASSBrain, recipe_file=__file__)
