#!/usr/bin/env python3
"""DIP+: continued pretraining of a DIP frontend with REAL-M's ``early_collection`` mixtures (real branch).

Run from the repository root (or from this folder), after ``recipes/LibriMix/dip/pretrain.py``::

    python recipes/REALM/dip/pretrain.py hparams/pretrain_plus.yaml --data_folder=<REAL-M root> \
        --librimix_folder=<LibriMix root> --pretrained_frontend=<pretraining run>

then train separators on it with ``recipes/LibriMix/dip/train.py ... --pretrained_frontend=<this run>``.
The steps are ``modules.recipe.run_recipe`` (no test stage); the method ``modules.dip.DIPPretrainBrain``.
"""

from modules.dip import DIPPretrainBrain, build_pretraining_datasets
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(DIPPretrainBrain, recipe_file=__file__, dataset_builder=build_pretraining_datasets)
