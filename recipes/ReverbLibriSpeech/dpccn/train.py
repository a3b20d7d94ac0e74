#!/usr/bin/env python3
"""The DPCCN paper's Table 2 (in-domain, noisy and reverberant): speech separation (uPIT) on the noisy, reverberant
LibriSpeech set of FaSNet-TAC, simulated once by ``data_prep.dpccn_reverb``.

Run from the repository root (or from this folder)::

    python recipes/ReverbLibriSpeech/dpccn/train.py hparams/dpccn.yaml --data_folder=<where the set is written> \\
        --librispeech_folder=<LibriSpeech root> --nonspeech_folder=<100 Nonspeech root>

``hparams/dpccn.yaml``, its ablations ``hparams/dpccn_magnitude.yaml`` and ``hparams/dpccn_no_pyramid.yaml``, and
``hparams/convtasnet.yaml`` are Table 2's rows we train ("w/ DenseUNet's loss" is not implemented: ``--loss=denseunet``
raises ``NotImplementedError``); the steps of a run are ``modules.recipe.run_recipe``'s.
"""

from modules.brain import SeparationBrain
from modules.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(SeparationBrain, recipe_file=__file__)
