#!/usr/bin/env python3
"""SADDEL on LibriMix: joint separation and denoising by recursive one-and-rest separation, trained on
the five scenarios 1sp+n, 2sp, 3sp, 2sp+n, 3sp+n at once; and the paper's comparison systems.

Run from the repository root (or from this folder)::

    python recipes/LibriMix/saddel/train.py hparams/saddel.yaml --data_folder=<LibriMix root>

The yaml declares two stages (``stages``), run in order by ``modules.recipe.run_recipe``: the first
recursion step on every scenario (``<output_folder>/step1``), then the recursion unrolled over the
true number of speakers, started from the first (``<output_folder>/unrolled``); ``--stages=step1``
or ``--stages=unrolled`` runs one. ``hparams/bl_ss.yaml``, ``bl_sd.yaml``, ``cascade.yaml`` and
``a2pit.yaml`` are the comparison systems (bl.SS and the cascade have the same two stages).
Each yaml names its Brain (``brain_class``, e.g. ``modules.saddel.CascadeBrain``), the datasets mix the
scenarios (``modules.data.scenarios.build_scenario_datasets``); the steps of a run are
``modules.recipe.run_recipe``'s.
"""

from modules.data.scenarios import build_scenario_datasets
from modules.recipe import run_recipe
from modules.saddel import SADDELBrain

if __name__ == "__main__":
    run_recipe(SADDELBrain, recipe_file=__file__, dataset_builder=build_scenario_datasets)
