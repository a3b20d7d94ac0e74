"""Datasets built from the CSV manifests of ``data_prep/``.

A manifest row names a mixture (``mix_wav``), its sources (``s1_wav`` ...
``sC_wav``) and optionally the noise (``noise_wav``) and an enrollment
utterance (``enroll_wav``), with paths relative to ``$data_root``. Every
``<name>_wav`` column becomes a ``<name>_sig`` item, which
:func:`modules.data.collate` turns into a :class:`modules.data.SeparationBatch`.
A manifest without source columns (real recordings, unsupervised data) gives
mixture-only items. Headers written with spaces after the commas
(``ID, duration, mix_wav``) are read as SpeechBrain's own reader reads them.
"""

import csv
import os

import speechbrain as sb
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.dataset import DynamicItemDataset

__all__ = ["load_manifest", "signal_columns"]

WAV_SUFFIX = "_wav"


def signal_columns(csv_path):
    """Returns the ``*_wav`` columns of a manifest, in file order.

    Arguments
    ---------
    csv_path : str
        Path of a manifest written by ``data_prep``.

    Returns
    -------
    list of str

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID, duration, mix_wav, mix_wav_format, s1_wav, noise_wav\\n")  # spaces after commas too
    >>> signal_columns(path)
    ['mix_wav', 's1_wav', 'noise_wav']
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"Manifest not found: {csv_path} (did data preparation run?)")
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f, skipinitialspace=True), [])
    return [c.strip() for c in header if c.strip().endswith(WAV_SUFFIX)]


def _audio_pipeline(column):
    """A dynamic item reading the audio file named in ``column``."""
    signal = column[: -len(WAV_SUFFIX)] + "_sig"

    @sb.utils.data_pipeline.takes(column)
    @sb.utils.data_pipeline.provides(signal)
    def read(path):
        """The audio file at ``path`` as a 1-D tensor."""
        return read_audio(path)

    return read, signal


def _source_index(column):
    """``k`` of an ``s<k>_wav`` column, else 0."""
    name = column[: -len(WAV_SUFFIX)]
    return int(name[1:]) if name[:1] == "s" and name[1:].isdigit() else 0


def load_manifest(csv_path, data_folder, extra_keys=(), scenario=None, max_sources=None):
    """Builds a ``DynamicItemDataset`` reading every audio column of a manifest.

    Arguments
    ---------
    csv_path : str
        Manifest written by ``data_prep``.
    data_folder : str
        The dataset root that ``$data_root`` stands for.
    extra_keys : sequence of str
        Further output keys (e.g. ``duration``, a transcription column).
    scenario : str, optional
        Scenario label of every item (e.g. ``"2sp+n"``), unless the manifest
        has a ``scenario`` column.
    max_sources : int, optional
        Read only the source columns ``s1_wav`` ... ``s<max_sources>_wav``
        (SpeechBrain's sample manifests carry an ``s3_wav`` column beside
        two-speaker mixtures).

    Returns
    -------
    DynamicItemDataset
        With output keys ``id`` and one ``<name>_sig`` per ``<name>_wav`` column.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("mix", "s1"):
    ...     soundfile.write(os.path.join(root, name + ".wav"), numpy.zeros(80), 8000)
    >>> path = os.path.join(root, "m.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,mix_wav,s1_wav\\nitem,0.01,$data_root/mix.wav,$data_root/s1.wav\\n")
    >>> data = load_manifest(path, root)
    >>> sorted(data[0].keys()), data[0]["s1_sig"].shape
    (['id', 'mix_sig', 's1_sig'], torch.Size([80]))
    """
    columns = signal_columns(csv_path)
    if max_sources is not None:
        columns = [c for c in columns if not _source_index(c) or _source_index(c) <= max_sources]
    dataset = DynamicItemDataset.from_csv(csv_path=csv_path, replacements={"data_root": str(data_folder)})
    keys = ["id"]
    if "scenario" in next(iter(dataset.data.values()), {}):
        keys.append("scenario")
    elif scenario is not None:
        dataset.add_dynamic_item(lambda _mix, label=scenario: label, takes="mix_wav", provides="scenario")
        keys.append("scenario")
    for column in columns:
        pipeline, signal = _audio_pipeline(column)
        dataset.add_dynamic_item(pipeline)
        keys.append(signal)
    dataset.set_output_keys(keys + list(extra_keys))
    return dataset
