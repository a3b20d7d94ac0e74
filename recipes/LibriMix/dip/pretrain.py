#!/usr/bin/env python3
"""DIP frontend pretraining (MPC / MIC) on mixtures only: LibriMix (synthetic branch) and Vox2Mix (real branch).

Run from the repository root (or from this folder)::

    python recipes/LibriMix/dip/pretrain.py hparams/mic.yaml --data_folder=<LibriMix root> \
        --vox2mix_folder=<Vox2Mix root> [--vox2mix_mixing_list=<lists>]

then train a separator on the frozen frontend with ``train.py`` and
``--pretrained_frontend=<this run's output folder>``. The method lives in
``modules.dip.DIPPretrainBrain``; the steps of a run in ``modules.dip.run_pretraining``.
"""

from modules.dip import DIPPretrainBrain, run_pretraining

if __name__ == "__main__":
    run_pretraining(DIPPretrainBrain, recipe_file=__file__)
