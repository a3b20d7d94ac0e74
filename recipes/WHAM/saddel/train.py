#!/usr/bin/env python3
"""SADDEL on WHAM!: joint separation and denoising by recursive one-and-rest separation, trained on
the five scenarios 1sp+n, 2sp, 3sp, 2sp+n, 3sp+n at once (the 3-speaker ones mixed on the fly from
WHAM!'s own sources and noise); and the paper's comparison systems.

Run from the repository root (or from this folder)::

    python recipes/WHAM/saddel/train.py hparams/saddel.yaml --data_folder=<WHAM root>
    python recipes/WHAM/saddel/train.py hparams/saddel_finetune.yaml --data_folder=<WHAM root>

The first command trains the first recursion step on every scenario; the second fine-tunes the
recursion unrolled over the true number of speakers, starting from the first run (``init_from``).
``hparams/bl_ss.yaml``, ``bl_sd.yaml``, ``cascade.yaml`` and ``a2pit.yaml`` are the comparison systems.
Each yaml names its Brain (``brain_class``, e.g. ``modules.saddel.CascadeBrain``), the datasets mix the
scenarios (``modules.data.scenarios.build_scenario_datasets``); the steps of a run are
``modules.recipe.run_recipe``'s.
"""

from modules.data.scenarios import build_scenario_datasets
from modules.recipe import run_recipe
from modules.saddel import SADDELBrain

if __name__ == "__main__":
    run_recipe(SADDELBrain, recipe_file=__file__, dataset_builder=build_scenario_datasets)
