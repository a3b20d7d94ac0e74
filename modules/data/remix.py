"""Mixture-Remix (DPCCN paper, section 2.2, equation 1): supervised 3-speaker mixtures made on the fly.

Paper: Han et al., "DPCCN: Densely-connected pyramid complex convolutional
network for robust speech separation and extraction", ICASSP 2022, section
2.2, Figure 2. Unsupervised cross-domain target speech extraction: the target
domain (Aishell2Mix) has mixtures only, the source domain (Libri2Mix, made
from LibriSpeech) has isolated utterances. Each remixed training item takes

* a target-domain mixture ``Mix-2`` (an Aishell2Mix ``tr`` mixture, no references),
* a source-domain speaker ``SpkC`` with two different utterances: ``SpkC-1``
  is mixed in and is the target, ``SpkC-3`` is the enrollment,

and returns ``mix = SpkC-1 + alpha * Mix-2`` with (equation 1)
``alpha = sqrt(E_s / (10**(SNR / 10) * E_m))``, ``E_s`` and ``E_m`` the energies
of the utterance and the mixture (over the windows that are mixed), SNR drawn
uniformly from ``snr_range`` (15-20 dB, the paper's best, Figure 3). The
mixture, not the utterance, is scaled, so the target keeps its source-domain
level and stands exactly ``SNR`` dB above the scaled mixture. The item's
sources are ``s1 = SpkC-1`` (the target, exactly the utterance's samples) and
``s2 = alpha * Mix-2`` (the interference, so that ``mix == s1 + s2`` and the
Brain's speed perturbation can rebuild the mixture), ``enroll = SpkC-3`` (the
whole utterance), ``scenario = "A-L-3Mix"`` and the drawn ``remix_snr``.

With ``source_items`` (the Libri2Mix training set with enrollments: the paper's
"+ Libri2Mix" rows of Table 4) an epoch holds those 2-speaker items too.

Pools and determinism come from :mod:`modules.data.mixing`: the utterance pool
is a :class:`~modules.data.mixing.AudioPool` with speaker labels, the mixture
pool one without. The utterances are, by default, the paper's ("A-L-3Mix =
Aishell2Mix + LibriSpeech", Table 4): whole LibriSpeech utterances
(train-clean-100 for training, dev-clean for validation; an utterance-pool
manifest of ``data_prep.librispeech``, :func:`manifest_utterance_pool`),
resampled to the recipe's rate on read, so the enrollment ``SpkC-3`` is a full
utterance like the test sets' enrollments. ``remix_pool: librimix`` keeps the
earlier pool, the sources of the Libri2Mix manifests (min-mode crops of the
utterances, :func:`~modules.data.mixing.manifest_pools`, speaker rule
``librimix``). Item ``i`` of epoch
``e`` depends only on ``(seed, e, i)``, and :class:`~modules.data.mixing.MixingSampler`
gives the resumable, DDP-aware order (indices ``e * epoch_size + i``). The
gain rule is also registered as ``mixture_remix`` in
:data:`modules.data.mixing.GAIN_RULES` (:func:`mixture_remix_gains`).

Choices the paper leaves open (ours, in the README's DPCCN section):

* The target-domain mixtures of an epoch are taken once each (position ``i``
  of the remix part is mixture ``i``; the sampler shuffles the order); the
  speaker, the utterances, the windows and the SNR are drawn per item.
* Speakers with at least two utterances in the pool are eligible, each with
  the same chance (``speaker_weighting="uniform"``; ``"count"`` weights them
  by their number of utterances).
* The mixed window is ``segment`` samples (4 s) or the shorter of the two
  signals, at a random position in each; the enrollment is the whole
  ``SpkC-3`` utterance. No peak normalisation (the signals are float).
* A window of zero energy would make ``alpha`` undefined: energies are floored
  at 1e-10 (a silent mixture window is then added with gain 0 in effect).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import soundfile
import torch

from modules.audio import resample
from modules.data.builders import build_datasets
from modules.data.manifests import load_manifest
from modules.data.mixing import (
    GAIN_RULES,
    SPEAKER_RULES,
    AudioPool,
    MixingSampler,
    manifest_pools,
    manifest_rows,
    register_gain_rule,
)

__all__ = [
    "REMIX_SCENARIO",
    "MixtureRemixDataset",
    "RemixPlan",
    "build_remix_datasets",
    "manifest_mixture_pool",
    "manifest_utterance_pool",
    "mixture_remix_gains",
    "mixture_speakers",
    "remix_alpha",
]

logger = logging.getLogger(__name__)

#: Scenario label of a remixed item (the paper's "A-L-3Mix").
REMIX_SCENARIO = "A-L-3Mix"
#: Scenario label of a source-domain 2-speaker item.
SOURCE_SCENARIO = "2sp"
#: SNR range of the paper's fine-tuning experiments (Table 4), dB.
DEFAULT_SNR_RANGE = (15.0, 20.0)
ENERGY_FLOOR = 1e-10
_REMIX_STREAM = 3  # stream tag of the item generators (modules.data.mixing uses 1 and 2)


def remix_alpha(source, mixture, snr_db):
    """Equation 1: the gain of the mixture that puts ``source`` ``snr_db`` dB above it.

    ``alpha = sqrt(E_s / (10**(SNR / 10) * E_m))``, energies in float64 (floored at 1e-10).

    Arguments
    ---------
    source, mixture : numpy.ndarray
        The windows that are mixed (same length).
    snr_db : float

    Returns
    -------
    float

    Example
    -------
    >>> s, m = np.ones(100), 2 * np.ones(100)
    >>> alpha = remix_alpha(s, m, 20.0)
    >>> round(float(10 * np.log10(np.sum(s**2) / np.sum((alpha * m) ** 2))), 6)
    20.0
    """
    e_s = max(float(np.sum(np.square(source, dtype=np.float64))), ENERGY_FLOOR)
    e_m = max(float(np.sum(np.square(mixture, dtype=np.float64))), ENERGY_FLOOR)
    return float(np.sqrt(e_s / (10.0 ** (snr_db / 10.0) * e_m)))


def mixture_remix_gains(sources, noise, rng, sample_rate=None, snr_range=DEFAULT_SNR_RANGE):
    """Gain rule ``mixture_remix`` of :data:`modules.data.mixing.GAIN_RULES`.

    ``sources`` is ``[2, T]``: the source-domain utterance, then the
    target-domain mixture. The utterance keeps gain 1; the mixture gets
    :func:`remix_alpha` for an SNR drawn uniformly from ``snr_range``.

    Arguments
    ---------
    sources : numpy.ndarray
        ``[2, T]``.
    noise : None
        Not used (Mixture-Remix adds no noise).
    rng : numpy.random.Generator
    sample_rate : int
        Unused.
    snr_range : tuple of float

    Returns
    -------
    gains : numpy.ndarray
        ``[2]``: ``[1, alpha]``.
    noise_gain : float

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.random.default_rng(1).standard_normal((2, 8000))
    >>> gains, _ = mixture_remix_gains(x, None, rng)
    >>> snr = 10 * np.log10(np.sum(x[0] ** 2) / np.sum((gains[1] * x[1]) ** 2))
    >>> bool(15 <= snr <= 20), float(gains[0])
    (True, 1.0)
    """
    if len(sources) != 2:
        raise ValueError(f"mixture_remix mixes one utterance and one mixture, got {len(sources)} signals")
    snr = rng.uniform(*snr_range)
    return np.array([1.0, remix_alpha(sources[0], sources[1], snr)]), 1.0


if "mixture_remix" not in GAIN_RULES:
    register_gain_rule("mixture_remix", mixture_remix_gains)


def mixture_speakers(mixture_id, n_sources):
    """Speaker rule ``mixture``: the sources of a mixture are utterances of one speaker, named by the mixture ID.

    For manifests whose IDs carry no speaker (upstream SpeechBrain's
    ``tests/samples``: ID ``0``), so that a ``--debug`` run of a Mixture-Remix
    recipe finds a speaker with two utterances (a target and its enrollment).
    Upstream's registry rows select it (``--remix_speaker_rule=mixture``); a
    real run keeps ``librimix``, which refuses such IDs.

    Example
    -------
    >>> mixture_speakers("0", 3)
    [('0-s1', '0'), ('0-s2', '0'), ('0-s3', '0')]
    """
    return [(f"{mixture_id}-s{k + 1}", str(mixture_id)) for k in range(n_sources)]


SPEAKER_RULES.setdefault("mixture", mixture_speakers)


@dataclass
class RemixPlan:
    """What remixed item ``(epoch, index)`` is made of (no audio read).

    Attributes
    ----------
    mixture : int
        Index into the target-domain mixture pool.
    mixture_start : int
    speaker : str
        The source-domain speaker ``SpkC``.
    utterance : int
        Index into the utterance pool: ``SpkC-1``, mixed in (the target).
    utterance_start : int
    enrollment : int
        Index into the utterance pool: ``SpkC-3``, another utterance of ``SpkC``.
    length : int
        Samples of both windows.
    snr : float
        Drawn SNR (dB) of the utterance over the scaled mixture.
    """

    mixture: int
    mixture_start: int
    speaker: str
    utterance: int
    utterance_start: int
    enrollment: int
    length: int
    snr: float


class MixtureRemixDataset(torch.utils.data.Dataset):
    """Mixture-Remix training items (and optionally source-domain items), deterministic by ``(seed, epoch, index)``.

    Index ``epoch * epoch_size + i`` (what :class:`~modules.data.mixing.MixingSampler`
    yields) is position ``i`` of ``epoch``; positions ``0 ... len(source_items) - 1``
    are the source-domain items, the next ``n_remix`` remixed items. An index
    below ``epoch_size`` is epoch 0 (a plain DataLoader: a fixed validation set).

    Arguments
    ---------
    mixtures : AudioPool
        Target-domain mixtures (no speaker labels needed).
    utterances : AudioPool
        Source-domain utterances with speaker labels; speakers with at least
        two utterances are drawn.
    snr_range : sequence of float
        ``(low, high)`` dB.
    segment : int, optional
        Largest window in samples (``None``: the shorter signal's length).
    n_remix : int, optional
        Remixed items per epoch (default: one per mixture).
    seed : int
    speaker_weighting : str
        ``"uniform"`` or ``"count"``.
    source_items : torch.utils.data.Dataset, optional
        Source-domain items (``id``, ``mix_sig``, ``s1_sig``, ``s2_sig``,
        ``enroll_sig``), e.g. the Libri2Mix training manifest.
    sample_rate : int, optional
        The recipe's rate: a file at another rate is resampled on read (the
        pools' frames count samples at this rate). ``None``: files are read
        as they are.

    Example
    -------
    >>> import os, tempfile
    >>> root, rng = tempfile.mkdtemp(), np.random.default_rng(0)
    >>> paths = [os.path.join(root, f"{i}.wav") for i in range(5)]
    >>> for p in paths:
    ...     soundfile.write(p, 0.1 * rng.standard_normal(12000), 8000, subtype="FLOAT")
    >>> utterances = AudioPool(paths[:3], [12000] * 3, speakers=["a", "a", "b"])
    >>> data = MixtureRemixDataset(AudioPool(paths[3:], [12000] * 2), utterances, segment=8000, seed=1)
    >>> item = data[1]
    >>> sorted(item)
    ['enroll_sig', 'id', 'mix_sig', 'remix_snr', 's1_sig', 's2_sig', 'scenario']
    >>> item["scenario"], item["mix_sig"].shape, item["enroll_sig"].shape
    ('A-L-3Mix', torch.Size([8000]), torch.Size([12000]))
    >>> snr = 10 * torch.log10(item["s1_sig"].double().square().sum() / item["s2_sig"].double().square().sum())
    >>> bool(15 <= item["remix_snr"] <= 20), round(float(snr) - item["remix_snr"], 4)
    (True, 0.0)
    >>> plan = data.draw(0, 1)
    >>> plan.speaker, plan.utterance != plan.enrollment
    ('a', True)
    """

    def __init__(
        self,
        mixtures,
        utterances,
        snr_range=DEFAULT_SNR_RANGE,
        segment=None,
        n_remix=None,
        seed=0,
        speaker_weighting="uniform",
        source_items=None,
        sample_rate=None,
    ):
        if mixtures is None or len(mixtures) == 0:
            raise ValueError("the target-domain mixture pool is empty")
        if utterances is None or len(utterances) == 0:
            raise ValueError("the source-domain utterance pool is empty")
        if utterances.speakers is None:
            raise ValueError("the source-domain utterance pool has no speaker labels")
        low, high = (float(v) for v in snr_range)
        if not low <= high:
            raise ValueError(f"snr_range must be (low, high) with low <= high, got {snr_range}")
        self.snr_range = (low, high)
        self.eligible = [s for s, utts in enumerate(utterances.by_speaker) if len(utts) >= 2]
        if not self.eligible:
            raise ValueError(
                "no source-domain speaker has two utterances (one to mix in, another as the enrollment): "
                "give a larger utterance pool"
            )
        if speaker_weighting == "uniform":
            self.speaker_p = None
        elif speaker_weighting == "count":
            counts = np.array([len(utterances.by_speaker[s]) for s in self.eligible], dtype=np.float64)
            self.speaker_p = counts / counts.sum()
        else:
            raise ValueError(f"speaker_weighting must be 'uniform' or 'count', got {speaker_weighting!r}")
        if segment is not None and int(segment) < 1:
            raise ValueError(f"segment must be a positive number of samples or None, got {segment}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.mixtures, self.utterances = mixtures, utterances
        self.segment = None if segment is None else int(segment)
        self.n_remix = len(mixtures) if n_remix is None else int(n_remix)
        if self.n_remix < 1:
            raise ValueError(f"n_remix must be >= 1, got {n_remix}")
        self.source_items = source_items
        self.n_source = 0 if source_items is None else len(source_items)
        self.epoch_size = self.n_source + self.n_remix
        self.seed = int(seed)
        self.speaker_weighting = speaker_weighting
        self.sample_rate = None if sample_rate is None else int(sample_rate)

    def __len__(self):
        return self.epoch_size

    def rng(self, epoch, position):
        """The item's random generator: a function of ``(seed, epoch, position)`` only."""
        return np.random.default_rng([self.seed, int(epoch), int(position), _REMIX_STREAM])

    def draw(self, epoch, position):
        """The :class:`RemixPlan` of remixed item ``position`` (0-based within the remix part) of ``epoch``."""
        rng = self.rng(epoch, position)
        pool = self.utterances
        mixture = int(position) % len(self.mixtures)
        speaker = self.eligible[int(rng.choice(len(self.eligible), p=self.speaker_p))]
        target, enrollment = rng.choice(pool.by_speaker[speaker], size=2, replace=False)
        n_mix, n_utt = int(self.mixtures.frames[mixture]), int(pool.frames[target])
        length = min(n_mix, n_utt) if self.segment is None else min(n_mix, n_utt, self.segment)
        mixture_start = int(rng.integers(n_mix - length + 1))
        utterance_start = int(rng.integers(n_utt - length + 1))
        snr = float(rng.uniform(*self.snr_range))
        return RemixPlan(
            mixture,
            mixture_start,
            pool.speaker_names[speaker],
            int(target),
            utterance_start,
            int(enrollment),
            length,
            snr,
        )

    def _read(self, path, start=0, length=-1):
        """``length`` samples of ``path`` from ``start`` (``-1``: to the end), at the dataset's rate.

        A file at another rate (LibriSpeech's 16 kHz FLAC in an 8 kHz recipe)
        is read whole and resampled (:func:`modules.audio.resample`) before
        the window is cut; its pool frames count samples at the dataset's rate.
        """
        rate = soundfile.info(path).samplerate if self.sample_rate is not None else None
        if rate is None or rate == self.sample_rate:
            x, _ = soundfile.read(path, frames=length, start=start, dtype="float32", always_2d=True)
            x = x[:, 0]
        else:
            x, _ = soundfile.read(path, dtype="float64", always_2d=True)
            x = resample(x[:, 0], rate, self.sample_rate).astype(np.float32)
            x = x[start:] if length < 0 else x[start : start + length]
        if length >= 0 and x.shape[0] != length:
            raise RuntimeError(f"{path}: read {x.shape[0]} frames from {start}, expected {length}")
        return x

    def remix(self, epoch, position):
        """Remixed item ``position`` of ``epoch`` (see the module docstring for its keys)."""
        plan = self.draw(epoch, position)
        pool = self.utterances
        source = self._read(pool.paths[plan.utterance], plan.utterance_start, plan.length)
        mixture = self._read(self.mixtures.paths[plan.mixture], plan.mixture_start, plan.length)
        alpha = remix_alpha(source, mixture, plan.snr)
        interference = (np.float64(alpha) * mixture).astype(np.float32)
        names = f"{self.mixtures.names[plan.mixture]}_{pool.names[plan.utterance]}"
        return {
            "id": f"remix_e{epoch}_{position}_{names}",
            "mix_sig": torch.from_numpy(source + interference),
            "s1_sig": torch.from_numpy(source),
            "s2_sig": torch.from_numpy(interference),
            "enroll_sig": torch.from_numpy(self._read(pool.paths[plan.enrollment])),
            "scenario": REMIX_SCENARIO,
            "remix_snr": plan.snr,
        }

    def decode(self, index):
        """``(epoch, position)`` of a sampler index."""
        return divmod(int(index), self.epoch_size)

    def __getitem__(self, index):
        epoch, position = self.decode(index)
        if position < self.n_source:
            item = dict(self.source_items[position])
            item.setdefault("scenario", SOURCE_SCENARIO)
            return item
        return self.remix(epoch, position - self.n_source)


def manifest_mixture_pool(manifest, sample_rate, data_folder=None):
    """The mixtures (``mix_wav``) of a manifest as an :class:`~modules.data.mixing.AudioPool` (frames: ``duration``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tr.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,mix_wav\\na,4.0,$data_root/mix/a.wav\\nb,2.5,$data_root/mix/b.wav\\n")
    >>> pool = manifest_mixture_pool(path, 8000, data_folder="/d")
    >>> pool.names, pool.paths[1], pool.frames.tolist()
    (['a', 'b'], '/d/mix/b.wav', [32000, 20000])
    """
    ids, rows = manifest_rows(manifest, data_folder)
    if not ids:
        raise ValueError(f"the target-domain manifest {manifest} has no rows")
    if "mix_wav" not in rows[ids[0]]:
        raise ValueError(f"the target-domain manifest {manifest} has no mix_wav column")
    frames = [round(float(rows[i]["duration"]) * sample_rate) for i in ids]
    return AudioPool([rows[i]["mix_wav"] for i in ids], frames, names=list(ids))


def manifest_utterance_pool(manifest, sample_rate, data_folder=None):
    """The utterances of an utterance-pool manifest (``data_prep.librispeech.prepare_librispeech_pool``).

    Columns ``ID``, ``utt_wav``, ``spk_id``, ``frames`` and ``file_rate``
    (the file's own rate). Frames are counted at ``sample_rate``:
    ``floor(frames * sample_rate / file_rate)``, never more than the
    polyphase resampler gives (:meth:`MixtureRemixDataset._read` resamples).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pool.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,utt_wav,spk_id,frames,file_rate\\n"
    ...                 "19-198-0001,1.0,$data_root/a.flac,19,16001,16000\\n"
    ...                 "19-198-0002,2.0,$data_root/b.flac,19,32000,16000\\n")
    >>> pool = manifest_utterance_pool(path, 8000, data_folder="/d")
    >>> pool.names, pool.speakers, pool.frames.tolist(), pool.paths[0]
    (['19-198-0001', '19-198-0002'], ['19', '19'], [8000, 16000], '/d/a.flac')
    """
    ids, rows = manifest_rows(manifest, data_folder)
    if not ids:
        raise ValueError(f"the utterance pool {manifest} has no rows")
    missing = {"utt_wav", "spk_id", "frames", "file_rate"} - set(rows[ids[0]])
    if missing:
        raise ValueError(f"the utterance pool {manifest} lacks the column(s) {sorted(missing)}")
    frames = [int(rows[i]["frames"]) * int(sample_rate) // int(rows[i]["file_rate"]) for i in ids]
    speakers = [str(rows[i]["spk_id"]) for i in ids]
    return AudioPool([rows[i]["utt_wav"] for i in ids], frames, speakers=speakers, names=list(ids))


def build_remix_datasets(hparams):
    """Train, valid and test sets of a Mixture-Remix fine-tuning recipe (the Aishell2Mix DPCCN ``train.py`` gives it
    to ``run_recipe``).

    Keys read:

    * ``mixture_remix`` (``True``): ``False`` gives the manifests' datasets as
      they are (:func:`modules.data.build_datasets`; Table 4's oracle row,
      trained on target-domain references); the keys below are then unused;

    * ``remix_train_mixtures``, ``remix_valid_mixtures``: target-domain
      mixture manifests (Aishell2Mix ``tr`` and ``cv``, mixture-only),
      ``remix_data_folder`` what their ``$data_root`` stands for;
    * ``train_data``, ``valid_data``, ``test_data``, ``data_folder``:
      source-domain manifests with enrollments (Libri2Mix);
    * ``remix_pool`` (``librispeech``): where ``SpkC-1`` and ``SpkC-3``
      come from. ``librispeech`` (the paper's "A-L-3Mix = Aishell2Mix +
      LibriSpeech"): whole LibriSpeech utterances, the pools
      ``remix_train_utterances`` (train-clean-100) and
      ``remix_valid_utterances`` (dev-clean), utterance-pool manifests
      (:func:`manifest_utterance_pool`, ``$data_root`` = ``data_folder``),
      resampled to ``sample_rate`` on read, so the enrollments are full
      utterances like the test ones; ``librimix``: the sources of
      ``train_data`` and ``valid_data`` (Libri2Mix min-mode crops), speaker
      rule ``remix_speaker_rule`` (``librimix``; ``mixture`` for manifests
      whose IDs name no speaker, as upstream's ``--debug`` samples);
    * ``remix_snr_range`` (``[15, 20]``), ``remix_speaker_weighting``
      (``uniform``), ``remix_n_train`` / ``remix_n_valid`` (remixed items per
      epoch; default one per target-domain mixture);
    * ``with_source_data``: the source-domain training (and validation)
      items join the remixed ones (Table 4, "+ Libri2Mix");
    * ``remix_valid``: validate on remixed ``cv`` mixtures (plus the
      source-domain validation items with ``with_source_data``); ``False``:
      on ``valid_data`` alone;
    * ``sample_rate``, ``seed``, ``training_signal_len`` (the window length
      when ``limit_training_signal_len``), ``epoch_counter``.

    Returns
    -------
    tuple
        ``(train, valid, test)``; ``train.sampler`` is its
        :class:`~modules.data.mixing.MixingSampler` (``modules.recipe`` passes it to the loader).
    """
    remix = hparams.get("mixture_remix", True)
    if not remix:  # a recipe folder's supervised row (the oracle)
        return build_datasets(hparams)
    sample_rate = int(hparams["sample_rate"])
    seed = int(hparams.get("seed", 0))
    snr_range = tuple(hparams.get("remix_snr_range") or DEFAULT_SNR_RANGE)
    weighting = hparams.get("remix_speaker_weighting", "uniform")
    rule = hparams.get("remix_speaker_rule", "librimix")
    with_source = bool(hparams.get("with_source_data", True))
    segment = hparams["training_signal_len"] if hparams.get("limit_training_signal_len", False) else None
    data_folder, remix_folder = hparams["data_folder"], hparams["remix_data_folder"]

    pool = hparams.get("remix_pool", "librispeech")
    if pool not in ("librispeech", "librimix"):
        raise ValueError(f"remix_pool must be 'librispeech' or 'librimix', got {pool!r}")

    def remix_set(mixtures, source_manifest, pool_manifest, n_remix, seed_offset):
        """A Mixture-Remix dataset of these target-domain mixtures with the utterances of a pool."""
        if pool == "librispeech":
            if pool_manifest is None:
                raise ValueError(
                    "remix_pool: librispeech needs remix_train_utterances and remix_valid_utterances (the "
                    "LibriSpeech pool manifests of data_prep.librispeech.prepare_remix_sources)"
                )
            utterances = manifest_utterance_pool(pool_manifest, sample_rate, data_folder)
        else:
            utterances, _, _ = manifest_pools(source_manifest, sample_rate, rule, data_folder, with_noise=False)
        items = load_manifest(source_manifest, data_folder, scenario=SOURCE_SCENARIO) if with_source else None
        return MixtureRemixDataset(
            manifest_mixture_pool(mixtures, sample_rate, remix_folder),
            utterances,
            snr_range=snr_range,
            segment=segment,
            n_remix=n_remix,
            seed=seed + seed_offset,
            speaker_weighting=weighting,
            source_items=items,
            sample_rate=sample_rate,
        )

    train = remix_set(
        hparams["remix_train_mixtures"],
        hparams["train_data"],
        hparams.get("remix_train_utterances"),
        hparams.get("remix_n_train"),
        0,
    )
    train.sampler = MixingSampler(train, epoch_counter=hparams.get("epoch_counter"))
    if hparams.get("remix_valid", True):
        valid = remix_set(
            hparams["remix_valid_mixtures"],
            hparams["valid_data"],
            hparams.get("remix_valid_utterances"),
            hparams.get("remix_n_valid"),
            1,
        )
    else:
        valid = load_manifest(hparams["valid_data"], data_folder)
    test = load_manifest(hparams["test_data"], data_folder)
    logger.info(
        "Mixture-Remix: %d remixed items (%d eligible %s speakers, SNR %s dB)%s per epoch; validation: %d items",
        train.n_remix,
        len(train.eligible),
        "LibriSpeech" if pool == "librispeech" else "Libri2Mix",
        snr_range,
        f" + {train.n_source} source-domain items" if with_source else "",
        len(valid),
    )
    return train, valid, test
