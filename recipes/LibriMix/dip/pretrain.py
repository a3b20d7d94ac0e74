#!/usr/bin/env python3
"""DIP frontend pretraining (MPC / MIC) on mixtures only: LibriMix (synthetic branch) and Vox2Mix (real branch).

Run from the repository root (or from this folder)::

    python recipes/LibriMix/dip/pretrain.py hparams/mic.yaml --data_folder=<LibriMix root> \
        --vox2mix_folder=<Vox2Mix root> [--vox2mix_mixing_list=<lists>]

then train a separator on the frozen frontend with ``train.py`` and
``--pretrained_frontend=<this run's output folder>``. The method lives in
``modules.dip.DIPPretrainBrain``; the steps of a run in ``modules.recipe.run_recipe`` (no test stage:
the datasets, ``modules.dip.build_pretraining_datasets``, have none).
"""

from modules.dip import DIPPretrainBrain, build_pretraining_datasets
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(DIPPretrainBrain, recipe_file=__file__, dataset_builder=build_pretraining_datasets)
