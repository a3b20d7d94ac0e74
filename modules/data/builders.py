"""The datasets of a recipe, built from its hyperparameters."""

import logging

from modules.data.manifests import load_manifest

logger = logging.getLogger(__name__)

__all__ = ["available_test_sets", "build_datasets"]


def build_datasets(hparams):
    """Train, valid and test datasets from the manifests named in the hparams.

    Reads ``train_data``, ``valid_data``, ``test_data`` and ``data_folder``
    (and ``num_spks``: only that many source columns are read).
    Sorting by duration follows ``sorting`` (``random`` by default,
    ``ascending`` or ``descending`` sort the training set, as SpeechBrain does).
    With ``dynamic_mixing: True`` the training set is made on the fly from the
    training manifest's sources (:func:`modules.data.mixing.build_dynamic_mixing`).

    Returns
    -------
    tuple
        ``(train, valid, test)`` datasets.
    """
    manifests = (hparams["train_data"], hparams["valid_data"], hparams["test_data"])
    max_sources = hparams.get("num_spks")
    datasets = [load_manifest(path, hparams["data_folder"], max_sources=max_sources) for path in manifests]
    if hparams.get("dynamic_mixing", False):
        from modules.data.mixing import build_dynamic_mixing

        train, sampler = build_dynamic_mixing(hparams, hparams["train_data"])
        train.sampler = sampler  # modules.recipe passes it to the training DataLoader
        return train, datasets[1], datasets[2]
    sorting = hparams.get("sorting", "random")
    if sorting in ("ascending", "descending"):
        datasets[0] = datasets[0].filtered_sorted(sort_key="duration", reverse=sorting == "descending")
        hparams["dataloader_opts"]["shuffle"] = False
    elif sorting != "random":
        raise ValueError(f"sorting must be random, ascending or descending, not {sorting!r}")
    return tuple(datasets)


def available_test_sets(**sets):
    """The ``extra_test_sets`` whose data are given.

    A set is left out (with a warning) when its ``data_folder`` is null, or its
    ``requires`` (a folder it is prepared from, e.g. REAL-M's, when its
    ``data_folder`` is where the prepared copies go; or a list of such folders,
    e.g. a speech corpus and a noise corpus) is null or holds a null; ``requires``
    is removed from the specs returned.

    Example
    -------
    >>> sets = available_test_sets(dev={"manifest": "d.csv", "data_folder": "/d"}, lrs2mix={"data_folder": None},
    ...                            realm={"manifest": "r.csv", "data_folder": "/save", "requires": None},
    ...                            noisy={"manifest": "n.csv", "data_folder": "/save", "requires": ["/speech", None]})
    >>> sets
    {'dev': {'manifest': 'd.csv', 'data_folder': '/d'}}
    """
    kept = {}
    for name, given in sets.items():
        spec = dict(given)
        required = spec.pop("requires", "given")
        required = list(required) if isinstance(required, list | tuple) else [required]
        if spec.get("data_folder") in (None, "") or any(folder in (None, "") for folder in required):
            logger.warning("Test set %s skipped: a folder it needs is not given", name)
            continue
        kept[name] = spec
    return kept
