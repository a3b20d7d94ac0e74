#!/usr/bin/env python3
"""DIP+: continued pretraining of a DIP frontend with REAL-M's ``early_collection`` mixtures (real branch).

Run from the repository root (or from this folder), after ``recipes/LibriMix/dip/pretrain.py``::

    python recipes/REALM/dip/pretrain.py hparams/pretrain_plus.yaml --data_folder=<REAL-M root> \
        --librimix_folder=<LibriMix root> --pretrained_frontend=<pretraining run>

then train separators on it with ``recipes/LibriMix/dip/train.py ... --pretrained_frontend=<this run>``.
The steps are ``modules.dip.run_pretraining``; the method ``modules.dip.DIPPretrainBrain``.
"""

from modules.dip import DIPPretrainBrain, run_pretraining

if __name__ == "__main__":
    run_pretraining(DIPPretrainBrain, recipe_file=__file__)
