#!/usr/bin/env python3
"""Unsupervised separation on Vox2Mix from its training mixtures only: MixIT or MixCycle with Conv-TasNet,
tested on the Vox2Mix test set (the DIP paper's Fig. 3 baselines).

Run from the repository root (or from this folder)::

    python recipes/Vox2Mix/unsupervised/train.py hparams/mixit.yaml --data_folder=<Vox2Mix root> \
        [--vox2mix_mixing_list=<mixing lists>]

The method lives in ``modules.unsupervised.UnsupervisedBrain`` (the yaml's ``unsupervised_method``);
the steps of a run (data preparation, datasets, fit, test, results) in ``modules.recipe.run_recipe``.
"""

from modules.recipe import run_recipe
from modules.unsupervised import UnsupervisedBrain

if __name__ == "__main__":
    run_recipe(UnsupervisedBrain, recipe_file=__file__)
