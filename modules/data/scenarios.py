"""Multi-scenario training data: several scenarios behind one dataset, every batch in fixed proportions.

SADDEL trains one model on five scenarios at once (1 speaker + noise, 2 or 3
speakers, with or without noise), every update running over all of them
("the objective loss is average among all tasks"). Here:

* :class:`ScenarioDataset` puts the datasets of several scenarios behind one
  index (manifest datasets from :func:`modules.data.load_manifest`, whose items
  carry their ``scenario`` label, and on-the-fly mixing datasets,
  :class:`modules.data.mixing.DynamicMixingDataset`, for scenarios a corpus
  does not have, e.g. WHAM!'s three speakers);
* :class:`ScenarioSampler` yields the indices of one epoch batch by batch,
  each batch holding the scenarios in the yaml's proportions (``batch_size *
  weight`` items of each, the fractional parts drawn at random so that every
  batch is full): a batch of 5 with equal weights is one item of each of the
  five scenarios. Deterministic by ``(seed, epoch)``, so SpeechBrain resumes
  it mid-epoch; under DDP it interleaves one balanced sequence per rank, so
  that ``DistributedSamplerWrapper`` (which gives rank ``r`` every
  ``world_size``-th index) hands each rank balanced batches of different items;
* :func:`build_scenario_datasets` builds the train / valid / test sets of a
  recipe (what the SADDEL recipes' ``train.py`` gives ``run_recipe``);
* the ``saddel`` gain rule (:func:`saddel_gains`) mixes on the fly by the
  paper's rules.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from modules.data.manifests import load_manifest
from modules.data.mixing import (
    GAIN_RULES,
    DynamicMixingDataset,
    EpochSampler,
    folder_pool,
    manifest_pools,
    register_gain_rule,
)

__all__ = [
    "SADDEL_NOISE_SNR_DB",
    "SADDEL_RELATIVE_DB",
    "WHAM_NOISE_SNR_DB",
    "ScenarioDataset",
    "ScenarioSampler",
    "batch_composition",
    "build_scenario_datasets",
    "saddel_gains",
    "scenario_counts",
    "wham_level_gains",
]

logger = logging.getLogger(__name__)

_ORDER_STREAM = 3  # random stream tag of the sampler (modules.data.mixing uses 1 and 2)

#: Level of every speaker after the first relative to the first (dB): SADDEL section 4.1.1, after wsj0-mix.
SADDEL_RELATIVE_DB = (-2.5, 2.5)
#: SNR of the noise against the speech (dB): SADDEL section 4.1.1 (MUSAN noise in training).
SADDEL_NOISE_SNR_DB = (-5.0, 20.0)
PEAK = 0.9


def saddel_gains(sources, noise, rng, sample_rate=None):
    """SADDEL's mixing rule, as a gain rule of :mod:`modules.data.mixing` (registered as ``"saddel"``).

    Each speaker is brought to unit power, then every speaker after the first
    to a level drawn from U(-2.5, 2.5) dB relative to the first (the paper:
    "randomly sampled and mixed up between SNR from -2.5 dB to 2.5 dB"); the
    noise is scaled to an SNR drawn from U(-5, 20) dB against the sum of the
    speakers (the paper: "the noise was sampled between SNR -5 dB and 20 dB";
    it does not say against what, we take the speech mixture). Everything is
    then scaled by one factor so that the largest peak of the mixture and of
    the scaled signals is 0.9.

    Arguments
    ---------
    sources : numpy.ndarray
        ``[K, T]``.
    noise : numpy.ndarray or None
        ``[T]``.
    rng : numpy.random.Generator
    sample_rate : int
        Unused.

    Returns
    -------
    source_gains : numpy.ndarray
        ``[K]``.
    noise_gain : float

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((3, 8000)) * np.array([[1.0], [5.0], [0.1]])
    >>> n = rng.standard_normal(8000)
    >>> gains, noise_gain = saddel_gains(x, n, np.random.default_rng(1))
    >>> levels = 10 * np.log10(((gains[:, None] * x) ** 2).mean(1))
    >>> bool(np.all(np.abs(levels[1:] - levels[0]) <= 2.5 + 1e-9))
    True
    >>> speech = (gains[:, None] * x).sum(0)
    >>> snr = 10 * np.log10((speech**2).mean() / ((noise_gain * n) ** 2).mean())
    >>> bool(-5 <= snr <= 20)
    True
    """
    x = np.asarray(sources, dtype=np.float64)
    power = (x**2).mean(axis=1)
    unit = np.where(power > 0, 1.0 / np.sqrt(np.where(power > 0, power, 1.0)), 1.0)
    relative = np.concatenate([[0.0], rng.uniform(*SADDEL_RELATIVE_DB, size=len(x) - 1)])
    gains = unit * 10.0 ** (relative / 20.0)
    scaled = gains[:, None] * x
    mix = scaled.sum(axis=0)
    noise_gain, peaks = 0.0, [np.abs(mix).max(), np.abs(scaled).max()]
    if noise is not None:
        n = np.asarray(noise, dtype=np.float64)
        noise_power = (n**2).mean()
        snr = rng.uniform(*SADDEL_NOISE_SNR_DB)
        if noise_power > 0:
            noise_gain = math.sqrt((mix**2).mean() / (noise_power * 10.0 ** (snr / 10.0)))
        mix = mix + noise_gain * n
        peaks = [np.abs(mix).max(), np.abs(scaled).max(), np.abs(noise_gain * n).max()]
    peak = max(peaks)
    common = PEAK / peak if peak > 0 else 1.0
    return gains * common, float(noise_gain * common)


if "saddel" not in GAIN_RULES:
    register_gain_rule("saddel", saddel_gains)

#: Noise level of WHAM!: SNR of the loudest speaker against the noise (dB), as wham_scripts draws it.
WHAM_NOISE_SNR_DB = (-6.0, 3.0)


def wham_level_gains(sources, noise, rng, sample_rate=None):
    """WHAM!'s noise level for mixtures WHAM! does not have (registered as ``"wham_levels"``).

    The speakers as :func:`saddel_gains` (the first at unit power, the others
    within U(-2.5, 2.5) dB of it: wsj0-mix's rule, which WHAM!'s speech
    follows); the noise at an SNR drawn from U(-6, 3) dB of the loudest
    speaker against the noise (WHAM!'s rule, ``wham_scripts``); then one
    factor for a largest peak of 0.9. The SADDEL recipe on WHAM! mixes its
    three-speaker mixtures with it, so that every noisy scenario of that
    recipe has WHAM!'s noise at WHAM!'s levels.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x, n = rng.standard_normal((3, 8000)), rng.standard_normal(8000)
    >>> gains, noise_gain = wham_level_gains(x, n, np.random.default_rng(1))
    >>> loudest = max(((g * s) ** 2).mean() for g, s in zip(gains, x))
    >>> snr = 10 * np.log10(loudest / ((noise_gain * n) ** 2).mean())
    >>> bool(-6 <= snr <= 3)
    True
    """
    gains, _ = saddel_gains(sources, None, rng, sample_rate)
    x = np.asarray(sources, dtype=np.float64)
    scaled = gains[:, None] * x
    noise_gain, peaks = 0.0, [np.abs(scaled.sum(axis=0)).max(), np.abs(scaled).max()]
    if noise is not None:
        n = np.asarray(noise, dtype=np.float64)
        noise_power = (n**2).mean()
        snr = rng.uniform(*WHAM_NOISE_SNR_DB)
        if noise_power > 0:
            loudest = (scaled**2).mean(axis=1).max()
            noise_gain = math.sqrt(loudest / (noise_power * 10.0 ** (snr / 10.0)))
        peaks = [np.abs(scaled.sum(axis=0) + noise_gain * n).max(), np.abs(scaled).max(), np.abs(noise_gain * n).max()]
    peak = max(peaks)
    common = PEAK / peak if peak > 0 else 1.0
    return gains * common, float(noise_gain * common)


if "wham_levels" not in GAIN_RULES:
    register_gain_rule("wham_levels", wham_level_gains)


def scenario_counts(name):
    """``(number of speakers, noisy)`` of a scenario label.

    Example
    -------
    >>> scenario_counts("3sp+n"), scenario_counts("2sp")
    ((3, True), (2, False))
    """
    head, _, tail = name.partition("+")
    if not head.endswith("sp") or not head[:-2].isdigit() or tail not in ("", "n"):
        raise ValueError(f"a scenario is <k>sp or <k>sp+n (e.g. 1sp+n, 3sp), not {name!r}")
    return int(head[:-2]), tail == "n"


def batch_composition(weights, batch_size, rng):
    """Items of each scenario in one batch: ``floor(batch_size * w)``, the rest drawn by the fractions.

    Arguments
    ---------
    weights : numpy.ndarray
        Proportions (sum 1).
    batch_size : int
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        Integer counts, summing to ``batch_size``.

    Example
    -------
    >>> batch_composition(np.full(5, 0.2), 5, np.random.default_rng(0)).tolist()
    [1, 1, 1, 1, 1]
    >>> batch_composition(np.array([0.5, 0.5]), 3, np.random.default_rng(0)).sum()
    np.int64(3)
    """
    exact = batch_size * np.asarray(weights, dtype=np.float64)
    counts = np.floor(exact + 1e-9).astype(np.int64)
    left = batch_size - int(counts.sum())
    if left > 0:
        fraction = np.clip(exact - counts, 0.0, None)
        extra = rng.choice(len(weights), size=left, replace=False, p=fraction / fraction.sum())
        counts[extra] += 1
    return counts


class ScenarioDataset(torch.utils.data.Dataset):
    """The datasets of several scenarios behind one index.

    Index ``key`` is item ``key // n`` of scenario ``key % n`` (``n`` scenarios),
    so that an on-the-fly mixing dataset can be asked for any epoch's items
    (its own index encodes the epoch).

    Arguments
    ---------
    datasets : dict of str -> Dataset
        Scenario label -> dataset whose items carry that ``scenario``.

    Example
    -------
    >>> data = ScenarioDataset({"a": ["a0", "a1"], "b": ["b0"]})
    >>> len(data), data[data.key("a", 1)], data[data.key("b", 0)]
    (3, 'a1', 'b0')
    """

    def __init__(self, datasets):
        if not datasets:
            raise ValueError("no scenario dataset")
        self.names = list(datasets)
        self.datasets = [datasets[name] for name in self.names]
        for name, dataset in zip(self.names, self.datasets):
            if len(dataset) == 0:
                raise ValueError(f"the dataset of scenario {name!r} is empty")
        self.sampler = None

    def __len__(self):
        return sum(len(d) for d in self.datasets)

    def key(self, name, index):
        """The index of item ``index`` of scenario ``name``."""
        return self.names.index(name) + len(self.names) * int(index)

    def __getitem__(self, key):
        slot, inner = int(key) % len(self.names), int(key) // len(self.names)
        return self.datasets[slot][inner]


class ScenarioSampler(EpochSampler):
    """Indices of one epoch of a :class:`ScenarioDataset`, batch by batch in fixed proportions.

    Arguments
    ---------
    dataset : ScenarioDataset
    weights : dict of str -> float
        Proportion of each scenario in a batch (normalised; scenarios with
        weight 0 or missing are not drawn).
    batch_size : int
        The training loader's batch size (per process).
    epoch_size : int, optional
        Items per epoch over all processes (default: the sizes of the
        weighted scenarios' datasets added up).
    seed : int
    epoch_counter : optional
        Gives the epoch when nobody calls :meth:`set_epoch` (SpeechBrain calls
        it only under DDP).
    world_size : int, optional
        Processes (default: ``torch.distributed``'s world size, else 1).

    Notes
    -----
    A manifest scenario is drawn without replacement in a permutation seeded
    by ``(seed, epoch)``, a new permutation starting when it is used up (so a
    small scenario repeats within an epoch); a mixing scenario gets the fresh
    mixtures ``epoch * len + position``.

    Example
    -------
    >>> data = ScenarioDataset({"1sp+n": list(range(10)), "2sp": list(range(10, 20))})
    >>> sampler = ScenarioSampler(data, {"1sp+n": 0.5, "2sp": 0.5}, batch_size=2, seed=0)
    >>> keys = list(sampler)
    >>> len(keys), all(sorted(k % 2 for k in keys[i : i + 2]) == [0, 1] for i in range(0, 20, 2))
    (20, True)
    >>> keys == list(sampler)  # deterministic for an epoch
    True
    """

    def __init__(self, dataset, weights, batch_size, epoch_size=None, seed=0, epoch_counter=None, world_size=None):
        unknown = sorted(name for name, weight in weights.items() if weight > 0 and name not in dataset.names)
        if unknown:  # a scenario with weight 0 is not trained on and needs no data
            raise ValueError(f"scenario_weights names scenarios without data: {unknown} (have {dataset.names})")
        drawn = [name for name in dataset.names if float(weights.get(name, 0.0)) > 0]
        if not drawn:
            raise ValueError("scenario_weights gives no scenario a positive weight")
        if any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"scenario weights must be >= 0, got {dict(weights)}")
        self.dataset = dataset
        self.drawn = drawn
        total = sum(float(weights[name]) for name in drawn)
        self.weights = np.array([float(weights[name]) / total for name in drawn])
        self.batch_size = int(batch_size)
        if world_size is None:
            dist = torch.distributed
            world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.world_size = int(world_size)
        if epoch_size is None:
            epoch_size = sum(len(dataset.datasets[dataset.names.index(name)]) for name in drawn)
        per_rank = math.ceil(int(epoch_size) / self.world_size)
        self.n_batches = max(1, math.ceil(per_rank / self.batch_size))
        self.seed = int(seed)
        self.epoch_counter = epoch_counter
        self.epoch = None

    def max_draws(self, name):
        """Most items of scenario ``name`` one epoch can draw (sizes the mixing datasets' epochs)."""
        weight = self.weights[self.drawn.index(name)]
        return self.n_batches * self.world_size * math.ceil(self.batch_size * weight)

    def __len__(self):
        return self.n_batches * self.batch_size * self.world_size

    def _stream(self, slot, rng, epoch):
        dataset = self.dataset.datasets[slot]
        size = len(dataset)
        if isinstance(dataset, DynamicMixingDataset):
            position = 0
            while True:
                yield epoch * size + position % size
                position += 1
        while True:
            yield from rng.permutation(size).tolist()

    def __iter__(self):
        epoch = self.current_epoch
        rng = np.random.default_rng([self.seed, epoch, _ORDER_STREAM])
        n = len(self.dataset.names)
        slots = [self.dataset.names.index(name) for name in self.drawn]
        streams = [self._stream(slot, rng, epoch) for slot in slots]
        per_rank = [[] for _ in range(self.world_size)]
        for _ in range(self.n_batches):
            for rank in range(self.world_size):
                counts = batch_composition(self.weights, self.batch_size, rng)
                batch = [slot + n * next(stream) for slot, stream, c in zip(slots, streams, counts) for _ in range(c)]
                per_rank[rank].extend(rng.permutation(batch).tolist())
        return iter([per_rank[r][k] for k in range(len(per_rank[0])) for r in range(self.world_size)])


def _subset(dataset, n_items):
    if n_items is None or len(dataset) <= int(n_items):
        return dataset
    return torch.utils.data.Subset(dataset, range(int(n_items)))


def _mixing_dataset(hparams, scenario, manifest, split, noise_folder=None, size=None, segment=None):
    """An on-the-fly mixing dataset of ``scenario`` from a manifest's sources and noise (or a noise folder)."""
    n_spks, noisy = scenario_counts(scenario)
    sample_rate = int(hparams["sample_rate"])
    sources, noise, n_rows = manifest_pools(
        manifest,
        sample_rate,
        hparams.get("mixing_speaker_rule", "wham"),
        data_folder=hparams["data_folder"],
        with_noise=noisy and noise_folder is None,
    )
    if noisy and noise_folder is not None:
        noise = folder_pool(noise_folder, sample_rate)
    offset = {"train": 0, "valid": 1, "test": 2}[split]
    return DynamicMixingDataset(
        sources,
        noise if noisy else None,
        num_spks=n_spks,
        gain_rule=hparams.get("mixing_gain_rule", "saddel"),
        sample_rate=sample_rate,
        segment=segment,
        epoch_size=size or n_rows,
        seed=int(hparams.get("seed", 0)) * 10 + offset,
    )


def build_scenario_datasets(hparams):
    """Train, valid and test sets of a multi-scenario recipe (SADDEL's ``train.py`` gives it to ``run_recipe``).

    Keys read:

    * ``scenario_manifests``: ``{scenario: {train, valid, test}}`` manifest
      paths of the scenarios a corpus has (``train`` may be left out for a
      test-only scenario);
    * ``mixing_scenarios`` (default none): scenarios whose training mixtures
      are made on the fly from the sources and noise of ``mixing_manifests``
      (``{train, valid, test}``) by the gain rule ``mixing_gain_rule``
      (default ``saddel``), speakers told apart by ``mixing_speaker_rule``
      (default ``wham``); with ``noise_folder`` (e.g. MUSAN's ``noise/``, at
      the recipe's sample rate) their noise comes from that folder. Their
      validation and test sets are their manifests when they have one (a
      scenario may give its ``test`` only, with the ``data_folder`` its
      manifest's paths are relative to: SADDEL's test conditions, written
      once), else mixtures made on the fly in the same way from the valid and
      test manifests' sources and noise (never the noise folder; the
      validation mixtures' noise from ``valid_noise_folder`` when given, for a
      corpus without noise such as WSJ0-mix), fixed by the seed;
      ``mixing_test_size`` (default: the test manifest's rows) sets how many
      test mixtures;
    * ``scenario_weights``: the proportions in a training batch;
    * ``scenario_epoch_size`` (default: the weighted scenarios' sizes added up);
    * ``test_scenarios`` (default: every scenario with data) and
      ``valid_items_per_scenario`` (default: all);
    * ``data_folder``, ``sample_rate``, ``seed``, ``batch_size``,
      ``epoch_counter``, ``limit_training_signal_len`` and
      ``training_signal_len`` (the length of training mixtures made on the fly).

    Returns
    -------
    tuple
        ``(train, valid, test)``: a :class:`ScenarioDataset` whose ``sampler``
        is its :class:`ScenarioSampler` (``modules.recipe`` gives it to the
        training loader), and concatenated validation and test sets.
    """
    manifests = dict(hparams.get("scenario_manifests") or {})
    mixing = list(hparams.get("mixing_scenarios") or [])
    for scenario in [*manifests, *mixing]:
        scenario_counts(scenario)
    mixing_manifests = hparams.get("mixing_manifests") or {}
    if mixing and not mixing_manifests:
        raise ValueError("mixing_scenarios needs mixing_manifests ({train, valid, test} with sources and noise)")
    weights = {k: float(v) for k, v in (hparams.get("scenario_weights") or {}).items()}
    data_folder = hparams["data_folder"]

    train_sets = {}
    for scenario, paths in manifests.items():
        if weights.get(scenario, 0) > 0 and scenario not in mixing:
            if not paths.get("train"):
                raise ValueError(f"scenario {scenario!r} has a training weight but no training manifest")
            train_sets[scenario] = load_manifest(paths["train"], data_folder, scenario=scenario)
    segment = hparams["training_signal_len"] if hparams.get("limit_training_signal_len", False) else None
    for scenario in mixing:
        if weights.get(scenario, 0) > 0:
            train_sets[scenario] = _mixing_dataset(
                hparams, scenario, mixing_manifests["train"], "train", hparams.get("noise_folder"), segment=segment
            )
    train = ScenarioDataset(train_sets)
    epoch_size = hparams.get("scenario_epoch_size")
    sampler = ScenarioSampler(
        train,
        weights,
        int(hparams["batch_size"]),
        epoch_size=epoch_size,
        seed=int(hparams.get("seed", 0)),
        epoch_counter=hparams.get("epoch_counter"),
    )
    for name, dataset in zip(train.names, train.datasets):  # fresh mixtures for every draw of an epoch
        if isinstance(dataset, DynamicMixingDataset):
            dataset.epoch_size = max(dataset.epoch_size, sampler.max_draws(name))
    train.sampler = sampler

    available = [*manifests, *[m for m in mixing if m not in manifests]]
    wanted = list(hparams.get("test_scenarios") or available)
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ValueError(f"test_scenarios {missing} have no data (scenario_manifests or mixing_scenarios)")
    per_scenario = hparams.get("valid_items_per_scenario")
    valid_sets, test_sets = [], []
    for scenario in wanted:
        given = manifests.get(scenario) or {}
        if given.get("valid"):
            valid = load_manifest(given["valid"], data_folder, scenario=scenario)
        else:
            valid = _mixing_dataset(
                hparams, scenario, mixing_manifests["valid"], "valid", hparams.get("valid_noise_folder")
            )
        if given.get("test"):  # a test set written elsewhere (SADDEL's test conditions) names its own root
            test = load_manifest(given["test"], given.get("data_folder") or data_folder, scenario=scenario)
        else:
            test = _mixing_dataset(
                hparams, scenario, mixing_manifests["test"], "test", size=hparams.get("mixing_test_size")
            )
        valid_sets.append(_subset(valid, per_scenario))
        test_sets.append(test)
    logger.info(
        "Scenarios: training %s (weights %s, %d items per epoch in batches of %d); valid/test %s",
        train.names,
        {k: v for k, v in weights.items() if v > 0},
        len(sampler),
        sampler.batch_size,
        wanted,
    )
    return train, torch.utils.data.ConcatDataset(valid_sets), torch.utils.data.ConcatDataset(test_sets)
