#!/usr/bin/env python3
"""Separation with the frozen DIP frontend (Conv-TasNet, DPRNN or SepFormer) on Libri2Mix (16 kHz, clean),
tested on LibriMix, Vox2Mix and LRS2Mix, with REAL-M separations written for reference-free evaluation.

Run from the repository root (or from this folder)::

    python recipes/LibriMix/dip/train.py hparams/convtasnet_dip.yaml --data_folder=<LibriMix root> \
        --vox2mix_folder=<Vox2Mix root> --lrs2mix_folder=<LRS2-2Mix root> --realm_folder=<REAL-M root>

The yaml declares two stages (``stages``), run in order by ``modules.recipe.run_recipe``: the
frontend's pretraining (``hparams/mic.yaml``, ``<output_folder>/pretrain``), then the separator on
the frozen frontend (``<output_folder>/separate``); ``--stages=...`` runs one, and
``--pretrained_frontend=<pretraining run>`` starts from an earlier pretraining instead (``pretrain.py``
runs a pretraining alone). The method lives in ``modules.dip.DIPBrain`` and ``DIPPretrainBrain``.
"""

from modules.dip import DIPBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(DIPBrain, recipe_file=__file__)
