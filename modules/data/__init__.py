"""Data pipelines of the separation recipes.

* :mod:`modules.data.batch`: the typed batch (:class:`SeparationBatch`) and its
  ``collate`` function;
* :mod:`modules.data.manifests`: datasets read from the CSV manifests of ``data_prep/``;
* :mod:`modules.data.builders`: the train / valid / test datasets of a recipe, from its hparams;
* :mod:`modules.data.mixing`: mixtures made on the fly (dynamic mixing), deterministic by
  (seed, epoch, index), resumable and DDP-aware.
"""

from modules.data.batch import SeparationBatch, collate, source_keys
from modules.data.builders import available_test_sets, build_datasets
from modules.data.manifests import load_manifest, signal_columns
from modules.data.mixing import DynamicMixingDataset, MixingSampler, build_dynamic_mixing, register_gain_rule

__all__ = [
    "DynamicMixingDataset",
    "MixingSampler",
    "SeparationBatch",
    "available_test_sets",
    "build_datasets",
    "build_dynamic_mixing",
    "collate",
    "load_manifest",
    "register_gain_rule",
    "signal_columns",
    "source_keys",
]
