#!/usr/bin/env python3
"""SADDEL on its paper's data: WSJ0-2mix/3mix and MUSAN noise (Table 1), tested also on Librispeech-mix,
WHAM! and 100 Nonspeech (Tables 2 and 3); and the paper's comparison systems.

Run from the repository root (or from this folder)::

    python recipes/WSJ0Mix/saddel/train.py hparams/saddel.yaml --data_folder=<WSJ0-mix root> --musan_folder=<MUSAN>

The yaml declares two stages (``stages``), run in order by ``modules.recipe.run_recipe``: the first
recursion step on every scenario (``<output_folder>/step1``), then the recursion unrolled over the
true number of speakers, started from the first (``<output_folder>/unrolled``); ``--stages=step1``
or ``--stages=unrolled`` runs one. ``hparams/bl_ss.yaml``, ``bl_sd.yaml``, ``cascade.yaml`` and
``a2pit.yaml`` are the comparison systems. The data preparation writes the WSJ0-mix manifests, splits
MUSAN's noise files (training, validation and test never share one) and writes every test condition
once (``data_prep.scenarios.prepare_wsj0mix_scenarios``, ``data_prep.saddel_conditions``).
"""

from modules.data.scenarios import build_scenario_datasets
from modules.recipe import run_recipe
from modules.saddel import SADDELBrain

if __name__ == "__main__":
    run_recipe(SADDELBrain, recipe_file=__file__, dataset_builder=build_scenario_datasets)
