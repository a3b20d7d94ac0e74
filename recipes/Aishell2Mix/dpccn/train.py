#!/usr/bin/env python3
"""DPCCN paper, Table 4: Mixture-Remix fine-tuning of target speech extraction (sDPCCN,
TD-SpeakerBeam) from a Libri2Mix-trained model to the unsupervised Aishell2Mix domain, and the
oracle sDPCCN trained on Aishell2Mix with references. Every run tests on Libri2Mix and Aishell2Mix
and writes both (``st_gap.md``).

Run from the repository root (or from this folder)::

    python recipes/Aishell2Mix/dpccn/train.py hparams/sdpccn_remix.yaml --data_folder=<LibriMix root> \\
        --aishell2mix_folder=<Aishell2Mix root> --init_from=<trained recipes/LibriMix/dpccn sDPCCN run>

The remixed training set is ``modules.data.remix.build_remix_datasets`` (``mixture_remix: False`` in the
oracle's yaml: the manifests as they are); the Brain ``modules.tse.CrossDomainTSEBrain``.
"""

from modules.data.remix import build_remix_datasets
from modules.recipe import run_recipe
from modules.tse import CrossDomainTSEBrain

if __name__ == "__main__":
    run_recipe(CrossDomainTSEBrain, recipe_file=__file__, dataset_builder=build_remix_datasets)
