"""DIP: pretraining the domain-invariant frontend (MPC / MIC), then separators that read it frozen.

Paper: Wang, Pan, Li, Wang and Li, "Speech Separation with Pretrained Frontend
to Minimize Domain Mismatch", IEEE/ACM TASLP 2024; authors' code:
github.com/Wufan0Willan/DIP (fairseq fork, read for the constants only).

Two stages, two recipes:

1. **Pretraining** (``recipes/LibriMix/dip/pretrain.py``, :class:`DIPPretrainBrain`,
   :func:`build_pretraining_datasets`, run by ``modules.recipe.run_recipe``).
   Mixture-only data: a synthetic branch (LibriMix mixtures) and a real-reference branch (Vox2Mix mixtures; REAL-M
   ``early_collection`` for DIP+). Every update is the Siamese step of Fig. 1:
   one synthetic and one real batch through the same frontend
   (:class:`modules.models.dip.DIPFrontend`), each cropped to its shortest item
   (at most 12.5 s; items under 2 s are left out, the authors'
   ``min/max_sample_size``), masked, quantised, and scored with
   :func:`modules.losses.mic_loss` (``mmd_weight: 0`` is MPC). Warmup + linear
   decay per step, Gumbel temperature annealed per update, checkpoints ranked
   by the validation loss, early stopping, intra-epoch checkpoints.
2. **Separation** (``recipes/LibriMix/dip/train.py``, :class:`DIPBrain`). The
   pretrained frontend is a frozen top-level module (``frozen_modules:
   [frontend]``, loaded with ``init_from``); its hidden states are computed
   without gradient, under the training precision, and passed to the separator
   as the conditioning input ``cues``; the separator's ``fusion`` is the
   adaptation layer (:class:`modules.models.dip.DIPFusion`). One test stage
   scores LibriMix, Vox2Mix and LRS2Mix (SI-SNR(i), SDR(i), PESQ, STOI) and
   writes REAL-M separations for reference-free evaluation; a test set with
   another sample rate (REAL-M is 8 kHz) is resampled to the model's.

Departures (also in the README):

* Branches. The paper's MIC step takes a real batch and a synthetic batch.
  The authors' dataset pairs every mixture of the union with a random one of
  the other domain and feeds the pairs as two branches, so that each branch
  mixes both domains; we follow the paper (branch ``x`` real only, ``y``
  synthetic only). An epoch is one pass over the larger of the two sets; the
  other is drawn by a fresh permutation every epoch (deterministic by seed).
* Batches are counted in mixtures per branch (``batch_size``), not in samples
  (fairseq's ``max_tokens``); see the yamls for the equivalent settings.
* Validation uses the first window of each item and fixed masks and
  negatives (a generator seeded per batch), so that its loss is comparable
  across epochs; fairseq draws them at random.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import speechbrain as sb
import torch
import torchaudio
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process, run_on_main

from modules.brain import SeparationBrain, crop_batch
from modules.data import SeparationBatch, load_manifest
from modules.losses import mic_loss, sample_negative_indices
from modules.training import scheduler_interval

__all__ = [
    "DIPBrain",
    "DIPPretrainBrain",
    "PairedMixtures",
    "build_pretraining_datasets",
    "load_mixtures",
    "run_preparations",
]

logger = logging.getLogger(__name__)

#: Terms of :func:`modules.losses.mic_loss` logged per stage.
LOGGED_TERMS = ("mpc_real", "mpc_synthetic", "mmd", "nce_real", "nce_synthetic", "diversity", "accuracy")


# ----------------------------------------------------------------------------- data


def run_preparations(preparations):
    """Runs each data preparation in turn (the pretraining yaml's ``prepare_data``)."""
    return [prepare() for prepare in preparations]


def load_mixtures(manifest, data_folder, min_seconds=0.0):
    """The mixtures of a manifest (``id``, ``mix_sig``; sources are not read), those shorter than ``min_seconds`` out.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> root = tempfile.mkdtemp()
    >>> for name, n in (("a", 800), ("b", 80)):
    ...     soundfile.write(os.path.join(root, name + ".wav"), numpy.zeros(n), 8000)
    >>> path = os.path.join(root, "m.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,mix_wav,s1_wav\\na,0.1,$data_root/a.wav,$data_root/a.wav\\n"
    ...                 "b,0.01,$data_root/b.wav,$data_root/b.wav\\n")
    >>> data = load_mixtures(path, root, min_seconds=0.05)
    >>> len(data), sorted(data[0])
    (1, ['id', 'mix_sig'])
    """
    dataset = load_manifest(manifest, data_folder)
    if min_seconds > 0:
        dataset = dataset.filtered_sorted(key_min_value={"duration": float(min_seconds)})
    dataset.set_output_keys(["id", "mix_sig"])
    if len(dataset) == 0:
        raise ValueError(f"{manifest}: no mixture of at least {min_seconds} s")
    return dataset


class PairedMixtures(torch.utils.data.Dataset):
    """Synthetic mixtures, each paired with a real one: the two branches of a Siamese update.

    Item ``i`` is ``{"id", "mix_sig"}`` of a synthetic mixture with ``real_sig``
    and ``real_id`` of a real one, both at ``sample_rate`` (a set at another rate
    is resampled). The length is that of the larger set; the smaller is read
    through a permutation drawn per epoch (:meth:`set_epoch`) and per pass,
    from ``seed``, so every epoch pairs differently and a resumed epoch pairs the same.

    Arguments
    ---------
    synthetic, real : Dataset
        Items with ``id`` and ``mix_sig`` (:func:`load_mixtures`).
    sample_rate : int
        Rate of the model.
    synthetic_rate, real_rate : int, optional
        Rates of the two sets (default: ``sample_rate``).
    seed : int

    Example
    -------
    >>> syn = [{"id": f"s{i}", "mix_sig": torch.zeros(4)} for i in range(3)]
    >>> real = [{"id": f"r{i}", "mix_sig": torch.ones(2)} for i in range(2)]
    >>> pairs = PairedMixtures(syn, real, 16000)
    >>> len(pairs), pairs[0]["id"], pairs[0]["real_sig"].tolist()
    (3, 's0', [1.0, 1.0])
    """

    def __init__(self, synthetic, real, sample_rate, synthetic_rate=None, real_rate=None, seed=0):
        self.synthetic, self.real = synthetic, real
        self.sample_rate = int(sample_rate)
        self.rates = {"synthetic": int(synthetic_rate or sample_rate), "real": int(real_rate or sample_rate)}
        self.seed = int(seed)
        self.epoch = 0
        self._orders = {}

    def __len__(self):
        return max(len(self.synthetic), len(self.real))

    def set_epoch(self, epoch):
        """Draws the smaller set's order for ``epoch``."""
        self.epoch = int(epoch)
        self._orders = {}

    def _index(self, branch, size, index):
        if size == len(self):
            return index
        if branch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 2 + (branch == "real"))
            passes = -(-len(self) // size)
            self._orders[branch] = torch.cat([torch.randperm(size, generator=gen) for _ in range(passes)])
        return int(self._orders[branch][index])

    def _read(self, branch, dataset, index):
        item = dataset[self._index(branch, len(dataset), index)]
        signal = item["mix_sig"]
        if self.rates[branch] != self.sample_rate:
            signal = torchaudio.functional.resample(signal, self.rates[branch], self.sample_rate)
        return item["id"], signal

    def __getitem__(self, index):
        syn_id, syn = self._read("synthetic", self.synthetic, index)
        real_id, real = self._read("real", self.real, index)
        return {"id": syn_id, "mix_sig": syn, "real_sig": real, "real_id": real_id}


def build_pretraining_datasets(hparams):
    """Training and validation :class:`PairedMixtures` from the pretraining yaml.

    Reads ``synthetic_train``, ``synthetic_valid``, ``synthetic_folder``,
    ``synthetic_rate``, the same four ``real_*`` keys, ``sample_rate``,
    ``min_crop`` (seconds) and ``seed``.
    """
    rate, min_seconds = hparams["sample_rate"], hparams["min_crop"]
    manifests = {
        "train": (hparams["synthetic_train"], hparams["real_train"]),
        "valid": (hparams["synthetic_valid"], hparams["real_valid"]),
    }
    sets = []
    for synthetic_csv, real_csv in manifests.values():
        synthetic = load_mixtures(synthetic_csv, hparams["synthetic_folder"], min_seconds)
        real = load_mixtures(real_csv, hparams["real_folder"], min_seconds)
        sets.append(
            PairedMixtures(
                synthetic, real, rate, hparams["synthetic_rate"], hparams["real_rate"], seed=hparams.get("seed", 0)
            )
        )
    return tuple(sets)


# ----------------------------------------------------------------------------- pretraining


@dataclass
class PretrainOutputs:
    """What :meth:`DIPPretrainBrain.compute_forward` returns: the frontend's two branches.

    Attributes
    ----------
    synthetic : dict
        The frontend's pretraining outputs on the synthetic mixtures
        (``predictions`` ``[B, masked, dim]`` and what :func:`modules.losses.mic_loss` reads).
    real : dict
        The same on the real (unlabelled) mixtures.
    generator : torch.Generator or None
        Fixes masks and negatives in validation (None in training).
    """

    synthetic: dict
    real: dict
    generator: torch.Generator | None = None


class DIPPretrainBrain(SeparationBrain):
    """MPC / MIC pretraining of the ``frontend`` module on paired real and synthetic mixtures.

    A :class:`modules.brain.SeparationBrain` for its training machinery (Brain's
    own step with accumulation and clipping, per-step LR schedules, early
    stopping, checkpoint registration, logging), with the separation parts
    replaced: no PIT, no references, batches of :class:`PairedMixtures`
    collated by :func:`modules.data.collate` (``mix``: synthetic; ``extra``:
    ``real_sig``, ``real_id``).

    Hyperparameters: ``sample_rate``, ``max_crop`` (seconds), ``num_negatives``
    (100), ``cue_distractors`` (K of equation 9, 100), ``mmd_weight`` (alpha,
    10; 0 gives MPC), ``mmd_kernel`` (``linear`` or ``gaussian``),
    ``contrastive_temperature`` (0.1), ``diversity_weight`` (0.1),
    ``penalty_weight`` (10), ``seed``; ``best_key: loss``, ``best_key_mode: min``.

    As the authors' fairseq run: no gradient clipping unless the yaml or the
    command line sets ``max_grad_norm`` (SpeechBrain's default clips at 5;
    fairseq's ``clip_norm`` is 0 in their config), and a per-step schedule
    (``LinearWarmupScheduler``) sets the learning rate of the *first* update
    too (:meth:`on_fit_start`): fairseq calls ``step_update(0)`` when it builds
    the optimiser, so update 1 runs at the warmup's first rate (0 for a linear
    warmup from 0), not at the peak ``lr`` the optimiser was built with.
    """

    dataset_builder = staticmethod(build_pretraining_datasets)

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        asked = (hparams is not None and "max_grad_norm" in hparams) or (
            run_opts is not None and "max_grad_norm" in getattr(run_opts, "overridden_args", ())
        )
        if not asked:
            self.max_grad_norm = float("inf")  # the authors' run clips nothing
        self.train_set = None  # the training pairs (set by modules.recipe.run_recipe): new pairing per epoch
        self._terms, self._n_terms = {}, 0
        self._valid_batches = 0

    def on_fit_start(self):
        """Brain's setup and recovery, then the learning rate of the next update from a per-step schedule.

        The optimiser is built at the peak ``lr``; a per-step schedule is called
        only after each update. Here the optimiser's rate is set to the
        schedule's value for its current step before any update (fresh run:
        step 0, the warmup's first rate; resumed run: the step it was saved at).
        """
        super().on_fit_start()
        scheduler, optimizer = self._scheduler, getattr(self, "optimizer", None)
        if scheduler_interval(scheduler) == "step" and hasattr(scheduler, "calculate_lr") and optimizer is not None:
            update_learning_rate(optimizer, scheduler.calculate_lr(scheduler.current_step))

    @property
    def best_key(self):
        """Checkpoints are ranked by the validation loss."""
        return self._hp("best_key", "loss"), self._hp("best_key_mode", "min")

    def _crop(self, batch, stage):
        """Every item cropped to the batch's shortest (at most ``max_crop`` s): a random window in training."""
        length = min(int(batch.lengths.min()), int(self.hparams.max_crop * self.hparams.sample_rate))
        if stage == sb.Stage.TRAIN:
            return crop_batch(batch, length)
        return batch.replace(mix=batch.mix[:, :length], lengths=batch.lengths.clamp(max=length))

    def compute_forward(self, batch, stage):
        """Both branches through the one frontend (a single call, so DDP sees one forward)."""
        if not isinstance(batch, SeparationBatch) or "real_sig" not in batch.extra:
            raise TypeError("expected paired mixtures collated by modules.data.collate (see PairedMixtures)")
        batch = batch.to(self.device)
        real_sig, real_lengths = batch.extra["real_sig"]
        real = SeparationBatch(
            ids=list(batch.extra["real_id"]), mix=real_sig.to(self.device), lengths=real_lengths.to(self.device)
        )
        synthetic, real = self._crop(batch, stage), self._crop(real, stage)
        generator = None
        if stage != sb.Stage.TRAIN:  # fixed masks and negatives: a comparable validation loss
            generator = torch.Generator(device=self.device).manual_seed(self._hp("seed", 0) + self._valid_batches)
            self._valid_batches += 1
        branches = self.modules.frontend([synthetic.mix, real.mix], pretrain=True, generator=generator)
        return PretrainOutputs(synthetic=branches[0], real=branches[1], generator=generator)

    def _with_negatives(self, branch, generator):
        batch, masked = branch["predictions"].shape[:2]
        device = branch["predictions"].device
        return {
            **branch,
            "negatives": sample_negative_indices(batch, masked, self.hparams.num_negatives, device, generator),
            "distractors": sample_negative_indices(batch, masked, self.hparams.cue_distractors, device, generator),
        }

    def compute_objectives(self, outputs, batch, stage):
        """Equation 12 (:func:`modules.losses.mic_loss`); its terms are averaged for the logs."""
        generator = outputs.generator
        out = mic_loss(
            self._with_negatives(outputs.real, generator),
            self._with_negatives(outputs.synthetic, generator),
            alpha=self.hparams.mmd_weight,
            kernel=self.hparams.mmd_kernel,
            temperature=self.hparams.contrastive_temperature,
            diversity_weight=self.hparams.diversity_weight,
            penalty_weight=self.hparams.penalty_weight,
        )
        for name in LOGGED_TERMS:
            self._terms[name] = self._terms.get(name, 0) + out[name].detach().float()
        self._n_terms += 1
        return out["loss"]

    def evaluate_batch(self, batch, stage):
        """Validation loss, as Brain computes it."""
        return sb.Brain.evaluate_batch(self, batch, stage)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Per-step LR schedule, then one more update for the Gumbel temperature."""
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if should_step and getattr(self, "_stepped", False):
            frontend = self.unwrapped("frontend")
            frontend.set_num_updates(frontend.num_updates + 1)

    def on_stage_start(self, stage, epoch=None):
        """New pairing of the branches every training epoch; fresh averages of the loss terms."""
        super().on_stage_start(stage, epoch)
        self._terms, self._n_terms, self._valid_batches = {}, 0, 0
        if stage == sb.Stage.TRAIN and self.train_set is not None and epoch is not None:
            self.train_set.set_epoch(epoch)

    def _term_means(self):
        return {name: round(float(value) / max(self._n_terms, 1), 4) for name, value in self._terms.items()}

    def valid_stats(self, stage_loss):
        """``loss`` (ranks the checkpoints) and the averaged terms of the validation set."""
        return {"loss": float(stage_loss), **self._term_means()}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """The chassis' logging, scheduling, early stopping and checkpointing, with the loss terms and temperature."""
        if stage == sb.Stage.TRAIN:
            super().on_stage_end(stage, stage_loss, epoch)
            self.train_stats.update(self._term_means())
            self.train_stats["temperature"] = round(self.unwrapped("frontend").quantizer.curr_temp, 4)
            return
        super().on_stage_end(stage, stage_loss, epoch)


# ----------------------------------------------------------------------------- separation


class DIPBrain(SeparationBrain):
    """Separation with the frozen DIP frontend fused into the separator (Fig. 2).

    The ``frontend`` module (a :class:`modules.models.dip.DIPFrontend`) must be
    frozen (``frozen_modules: [frontend]``) and initialised, from a pretraining
    run (``init_from``) or from a fairseq checkpoint (its
    ``fairseq_checkpoint``). Its hidden states ``frontend_layers`` (``all``:
    the transformer input and the 12 layer outputs, weighted by the adaptation
    layer) are computed without gradient under the training precision and
    passed to the separator as ``cues``; the separator's ``fusion``
    (:class:`modules.models.dip.DIPFusion`) adds them to the encoder output.

    The comparison frontends of the paper's Tables IV and V (wav2vec 2.0,
    HuBERT, UniSpeech-SAT, WavLM and their BASE+ models) are
    :class:`modules.models.ssl.SSLFrontend` modules with the same interface
    (``forward(wav, lengths, layers)``, ``loaded_from``), loaded from a hub
    id or a local folder and fused by the same adaptation layer.

    Without a ``frontend`` module (the baseline yamls) it is a plain
    :class:`modules.brain.SeparationBrain` with the same test stage.

    Further hyperparameters: ``perceptual_metrics`` (PESQ and STOI per test
    item, default True); ``extra_test_sets[name][sample_rate]``, the rate of a
    test set other than ``sample_rate`` (resampled to it before separation).
    """

    @property
    def has_frontend(self):
        """Whether the recipe has a DIP frontend (the baselines have none)."""
        return "frontend" in self.modules

    def on_fit_start(self):
        """Checks the frontend's wiring and records where its weights came from."""
        self.check_frontend()
        super().on_fit_start()

    def check_frontend(self):
        """The frontend is frozen and was initialised (``init_from`` or a fairseq checkpoint).

        A ``--debug`` run (SpeechBrain's ``run_opts["debug"]``, as upstream's
        recipe test runs every recipe on its ``tests/samples``) may keep a
        random frontend: it logs a warning instead of refusing. A real run
        refuses it.
        """
        if not self.has_frontend:
            return
        if "frontend" not in self.frozen:
            raise ValueError("the DIP frontend must be frozen: frozen_modules: [frontend]")
        frontend = self.unwrapped("frontend")
        loaded = frontend.loaded_from
        if not self._hp("init_from", None) and not loaded:
            # a comparison frontend (modules.models.ssl.SSLFrontend) whose hub id could not be downloaded says why
            problem = getattr(frontend, "stand_in_reason", None) or (
                "the DIP frontend has no pretrained weights: set init_from (a pretraining run of "
                "recipes/LibriMix/dip/pretrain.py) or fairseq_checkpoint (a local fairseq checkpoint)"
            )
            if not getattr(self, "debug", False):
                raise ValueError(problem)
            logger.warning("%s; --debug run: the separator is trained on a random frontend", problem)
        folder = self._hp("output_folder", None)
        if loaded and folder and if_main_process():
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "frontend_checkpoint.txt"), "w", encoding="utf-8") as f:
                f.write(f"frontend\t{loaded}\n")

    def frontend_cues(self, mix, lengths=None):
        """The frozen frontend's chosen hidden states ``[S, B, F, D]``, without gradient."""
        with torch.no_grad():
            return self.modules.frontend(mix, lengths, layers=self._hp("frontend_layers", "all"))

    def conditioning(self, batch):
        """The yaml's conditioning inputs plus ``cues`` from the (augmented) batch's mixtures."""
        inputs = super().conditioning(batch)
        if self.has_frontend:
            inputs["cues"] = self.frontend_cues(batch.mix, batch.lengths)
        return inputs

    def separate(self, mix, **conditioning):
        """The separator with the frontend's cues (computed from ``mix`` when not given)."""
        if self.has_frontend and "cues" not in conditioning:
            conditioning["cues"] = self.frontend_cues(mix)
        return self.modules.separator(mix, **conditioning)

    def pit_loss(self, outputs):
        """The separator's own training loss when it defines one (SUPERB's Bi-LSTM: PSM MSE with uPIT,
        :class:`modules.models.superb.BiLSTMPSMSeparator`), else the chassis' negative SI-SNR."""
        own = getattr(self.unwrapped("separator"), "pit_loss", None)
        if own is None:
            return super().pit_loss(outputs)
        targets, mask = self.training_targets(outputs)
        return own(outputs.features, targets, source_mask=mask, lengths=outputs.lengths)

    def on_tested(self, written):
        """Scores the REAL-M separations (Tables VII, VIII: WER per ``realm_asr`` recogniser, DNSMOS, and
        the SI-SNR estimate with ``realm_estimator``) into ``test_summary_realm.json``
        (:func:`modules.evaluation.realm.evaluate_test_stage`; ``realm_eval: False`` turns it off)."""
        from modules.evaluation.realm import evaluate_test_stage

        run_on_main(evaluate_test_stage, args=[self, written])

    def _test_set_rate(self):
        spec = (self._hp("extra_test_sets", None) or {}).get(self.test_set_name) or {}
        return int(spec.get("sample_rate") or self.hparams.sample_rate)

    def compute_forward(self, batch, stage):
        """The chassis' forward; a test set at another sample rate is resampled to the model's first."""
        if stage == sb.Stage.TEST and self.test_set_name is not None:
            rate = self._test_set_rate()
            if rate != self.hparams.sample_rate:
                batch = resample_batch(batch, rate, self.hparams.sample_rate)
        return super().compute_forward(batch, stage)

    @torch.no_grad()
    def test_metrics(self, outputs):
        """SI-SNR(i), SDR(i) and, with ``perceptual_metrics``, PESQ and STOI of the item's speakers."""
        scores = super().test_metrics(outputs)
        if self._hp("perceptual_metrics", True):
            from modules.metrics_extra import perceptual_scores

            estimates = self.speaker_estimates(outputs)[0].float().cpu()
            scores.update(perceptual_scores(estimates, outputs.targets[0].float().cpu(), self.hparams.sample_rate))
        return scores


def resample_batch(batch, orig_rate, new_rate):
    """A :class:`modules.data.SeparationBatch` with its signals resampled (lengths scaled).

    Example
    -------
    >>> from modules.data import collate
    >>> batch = collate([{"id": "a", "mix_sig": torch.zeros(800)}, {"id": "b", "mix_sig": torch.zeros(400)}])
    >>> up = resample_batch(batch, 8000, 16000)
    >>> up.mix.shape, up.lengths.tolist()
    (torch.Size([2, 1600]), [1600, 800])
    """

    def change(signal, dim):
        """The signal with axis ``dim`` resampled (``None`` stays ``None``)."""
        if signal is None:
            return None
        moved = signal.movedim(dim, -1)
        return torchaudio.functional.resample(moved, orig_rate, new_rate).movedim(-1, dim)

    lengths = torch.div(batch.lengths * new_rate, orig_rate, rounding_mode="floor")
    return batch.replace(
        mix=change(batch.mix, 1), sources=change(batch.sources, 1), noise=change(batch.noise, 1), lengths=lengths
    )
