#!/usr/bin/env python3
"""Context-aware two-stage training (Wang et al.) on Libri2Mix at 16 kHz, tested on LM2Mix, LRS2Mix and REAL-M.

A separator split into a SIMO context extractor and a SISO segregator is trained in two
stages: the group stage teaches the context extractor the representations of a frozen
SSL model (HuBERT, WavLM or wav2vec 2.0) or the signals, the segregate stage trains the
whole separator with SI-SDR. One command runs both stages (or one, ``--stages=group`` /
``--stages=segregate``); run it from the repository root (or from this folder)::

    python recipes/LibriMix/context_aware/train.py hparams/convtasnet.yaml --data_folder=<LibriMix root> \\
        --ssl_checkpoint=<hubert_fairseq_base_ls960.pth> --lrs2mix_folder=<LRS2Mix root> --realm_folder=<REAL-M root>

The system's yaml declares its stages (``stages``: the group stage's yaml, then itself) and
``modules.recipe.run_recipe`` runs them. The method lives in ``modules.context_aware``
(group-stage Brain, teacher cache, the segregate stage's results table) and
``modules.models.context_aware`` (the split separators, the predictor).
"""

from modules.context_aware import SegregateBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(SegregateBrain, recipe_file=__file__)
