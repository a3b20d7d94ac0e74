#!/usr/bin/env python3
"""DPCCN paper, Table 3: separation (DPCCN, Conv-TasNet) and target speech extraction (sDPCCN,
TD-SpeakerBeam) trained on Libri2Mix clean and tested on Libri2Mix and Aishell2Mix in one run,
with the ST-Gap table (``st_gap.md``) written at the end.

Run from the repository root (or from this folder)::

    python recipes/LibriMix/dpccn/train.py hparams/sdpccn.yaml --data_folder=<LibriMix root> \\
        --aishell2mix_folder=<Aishell2Mix root>

Each yaml names its Brain (``brain_class``: ``modules.tse.CrossDomainSeparationBrain`` or
``modules.tse.CrossDomainTSEBrain``); the steps of a run are ``modules.recipe.run_recipe``.
"""

from modules.recipe import run_recipe
from modules.tse import CrossDomainSeparationBrain

if __name__ == "__main__":
    run_recipe(CrossDomainSeparationBrain, recipe_file=__file__)
