"""The datasets of a recipe, built from its hyperparameters."""

from modules.data.manifests import load_manifest

__all__ = ["build_datasets"]


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
