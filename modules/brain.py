"""``SeparationBrain``: the one training/evaluation loop every recipe shares.

Upstream SpeechBrain copies a separation ``train.py`` into each dataset folder
and overrides ``fit_batch`` there, bypassing ``grad_accumulation_factor``,
``max_grad_norm`` and the nonfinite-loss patience of :class:`speechbrain.Brain`.
Here the loop is Brain's own. The Brain trains one module, ``separator``
(``separator(mix, **conditioning) -> (estimates [B, T, n_out], features)``,
see :mod:`modules.models.separator`), on :class:`modules.data.SeparationBatch`
batches, which may mix items with different numbers of sources, with or without
noise, and mixture-only items. ``compute_forward`` returns
:class:`SeparationOutputs` (the one place its fields are documented), which
``compute_objectives`` and every hook below take as ``outputs``. Methods
subclass it and override small hooks:

``conditioning(batch)``
    named inputs passed to the separator besides the mixture (those listed in
    the yaml's ``conditioning``, e.g. ``[enroll]``).
``separate(mix, **conditioning)``
    the separator call: ``(estimates [B, T, n_out], features)``.
``training_targets(outputs)``
    what PIT matches the outputs against and which of them are real:
    ``(targets [B, T, C], mask [B, C])`` (the speakers; NASS appends the noise).
``pit_loss(outputs)``
    per-item loss and assignment (``modules.losses.pit_si_snr_loss`` over the
    item's real targets; NASS: a fixed noise slot).
``auxiliary_loss(outputs, batch)``
    terms added to the training loss, named by where they join it
    (:class:`AuxiliaryLoss`): ``per_item`` ``[B]`` to each item's loss before
    the loss threshold, ``batch`` (0-d) to the batch loss after it.
``speaker_estimates(outputs)``
    the estimates aligned with the speaker references ``[B, T, C]``:
    validation and test metrics count these only.
``test_metrics(outputs)``, ``extra_test_signals(outputs, i)``
    per-item test metrics (one item, cut to its length and sources) and extra
    signals to save.
``split_outputs(estimates)``, ``separate_speakers(mix, **conditioning)``
    inference without references: which outputs are speakers (and noise).

Hyperparameters read (see the recipe yamls and ``hparams/training.yaml``):
``sample_rate``; ``conditioning``; ``frozen_modules``; ``use_speedperturb`` +
``speed_perturb``; ``limit_training_signal_len`` + ``training_signal_len``;
``threshold_byloss`` + ``threshold``; ``lr_scheduler``; ``epoch_counter``;
``best_key`` + ``best_key_mode``; ``checkpointer``; ``train_logger``;
``output_folder``; ``save_audio`` + ``n_audio_to_save`` + ``n_figures_to_save``;
``save_separations``.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, field, replace

import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process

from modules.data.batch import SeparationBatch
from modules.files import write_csv_atomic, write_text_atomic
from modules.losses import apply_perm, pit_si_snr_loss
from modules.metrics import sdr, si_snr, with_improvement
from modules.plotting import spectrogram_figure
from modules.training import scheduler_interval

logger = logging.getLogger(__name__)

METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i")


@dataclass
class AuxiliaryLoss:
    """What a method adds to the separation loss in training, named by where it joins it.

    Attributes
    ----------
    per_item : torch.Tensor or None
        ``[B]``: added to each item's loss *before* the loss threshold
        (``threshold_byloss``), so it takes part in deciding which items count
        (NASS's contrastive term, as the authors' code adds it).
    batch : torch.Tensor or None
        0-d: added to the batch loss *after* the threshold (SADDEL's stop-flag
        BCE; NASS's contrastive term with ``pcl_before_threshold: False``).

    Example
    -------
    >>> AuxiliaryLoss(batch=torch.tensor(0.5))
    AuxiliaryLoss(per_item=None, batch=tensor(0.5000))
    """

    per_item: torch.Tensor | None = None
    batch: torch.Tensor | None = None

    def __post_init__(self):
        if self.per_item is not None and self.per_item.ndim != 1:
            raise ValueError(f"AuxiliaryLoss.per_item must be [batch], got shape {tuple(self.per_item.shape)}")
        if self.batch is not None and self.batch.ndim != 0:
            raise ValueError(f"AuxiliaryLoss.batch must be 0-d, got shape {tuple(self.batch.shape)}")


@dataclass
class SeparationOutputs:
    """What :meth:`SeparationBrain.compute_forward` returns and every hook reads.

    The (augmented) batch's signals beside the separator's estimates, so that
    the objectives and the test hooks see the references the estimates were
    computed from (speed perturbation and crops change them).

    Attributes
    ----------
    estimates : torch.Tensor or None
        ``[B, T, n_out]``: the separator's outputs (None where a stage predicts
        no signal, e.g. the context-aware group stage without a signal head).
    mix : torch.Tensor
        ``[B, T]``: the input mixtures.
    lengths : torch.Tensor
        ``[B]``: each item's length in samples.
    targets : torch.Tensor or None
        ``[B, T, C]``: the references PIT matches (the batch's sources; TSE:
        the target speaker only); None for a mixture-only batch.
    source_mask : torch.Tensor or None
        ``[B, C]`` bool: which of ``targets`` are real.
    noise : torch.Tensor or None
        ``[B, T]``: the noise reference, where the batch has one.
    noise_mask : torch.Tensor or None
        ``[B]`` bool: which items have a noise reference.
    batch : modules.data.SeparationBatch
        The batch the outputs were computed from (after augmentation).
    perm : torch.Tensor or None
        ``[B, n_out]`` (``[B, J]`` for SADDEL's steps): the assignment PIT
        chose, set by ``compute_objectives`` (None before it, or without
        references).
    features : dict
        What the separator returns beside its estimates, by name, for the
        methods' auxiliary losses: the encoder/masker family's ``mix_w``
        (encoded mixture) and ``masks`` (NASS's patch-wise loss), the
        context-aware extractor's ``context`` and its predictor's
        ``predicted`` (``{tap: [B, F, C, dim]}``), a speaker encoder's
        ``embedding`` (TSE), SADDEL's ``flag_logit``.

    Example
    -------
    >>> from modules.data import SeparationBatch
    >>> batch = SeparationBatch(ids=["a"], mix=torch.zeros(1, 8), lengths=torch.tensor([8]))
    >>> outputs = SeparationOutputs.from_batch(torch.zeros(1, 8, 2), batch)
    >>> outputs.estimates.shape, outputs.targets, outputs.perm
    (torch.Size([1, 8, 2]), None, None)
    """

    estimates: torch.Tensor | None
    mix: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None
    source_mask: torch.Tensor | None
    noise: torch.Tensor | None
    noise_mask: torch.Tensor | None
    batch: SeparationBatch
    perm: torch.Tensor | None = None
    features: dict = field(default_factory=dict)

    @classmethod
    def from_batch(cls, estimates, batch, features=None, **fields):
        """The outputs of ``batch``: its mixture, lengths, sources and noise; ``fields`` replace any of them."""
        signals = {
            "mix": batch.mix,
            "lengths": batch.lengths,
            "targets": batch.sources,
            "source_mask": batch.source_mask,
            "noise": batch.noise,
            "noise_mask": batch.noise_mask,
            "batch": batch,
        }
        return cls(estimates=estimates, features=dict(features or {}), **{**signals, **fields})

    def item(self, index):
        """The outputs of batch item ``index`` alone, cut to its own length and real sources.

        ``features`` (and a subclass's fields) are kept whole, for the batch.
        """
        n = int(self.lengths[index])

        def one(value, timed=False):
            """Item ``index`` of a batched tensor (cut to its length along time when ``timed``); None stays None."""
            if value is None:
                return None
            value = value[index : index + 1]
            return value[:, :n] if timed else value

        single = replace(
            self,
            estimates=one(self.estimates, True),
            mix=one(self.mix, True),
            lengths=one(self.lengths),
            targets=one(self.targets, True),
            source_mask=one(self.source_mask),
            noise=one(self.noise, True),
            noise_mask=one(self.noise_mask),
            perm=one(self.perm),
            batch=self.batch.item(index),
        )
        if self.targets is not None:
            n_src = int(self.source_mask[index].sum())
            single.targets = single.targets[..., :n_src] if n_src else None
            single.source_mask = single.source_mask[..., :n_src] if n_src else None
        if self.noise_mask is not None and not bool(self.noise_mask[index]):
            single.noise, single.noise_mask = None, None
        return single


def score_separation(estimates, references, mixture):
    """Per-item means over sources of SI-SNR, SI-SNRi, SDR and SDRi (dB).

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``[B, T, C]``, aligned (estimate ``j`` scored against reference ``j``).
    mixture : torch.Tensor
        ``[B, T]``.

    Returns
    -------
    dict of str -> torch.Tensor
        :data:`METRICS` -> ``[B]`` float64 on the CPU.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> ref = torch.randn(1, 4000, 2)
    >>> scores = score_separation(ref + 0.1 * torch.randn_like(ref), ref, ref.sum(-1))
    >>> round(float(scores["si-snr"][0])), float(scores["si-snr_i"][0]) > 19
    (20, True)
    """
    estimates, references, mixture = estimates.float(), references.float(), mixture.float()
    sisnr, sisnr_i = with_improvement(si_snr, estimates, references, mixture)
    sdr_value, sdr_i = with_improvement(sdr, estimates, references, mixture)
    values = (sisnr, sisnr_i, sdr_value, sdr_i)
    return {name: value.mean(dim=-1).cpu() for name, value in zip(METRICS, values)}


class SeparationBrain(sb.Brain):
    """Permutation-invariant training of a ``separator`` module; see the module docstring.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from modules.models import MaskingSeparator
    >>> separator = MaskingSeparator(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=2),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ... )
    >>> brain = SeparationBrain({"separator": separator}, hparams={"sample_rate": 8000}, run_opts={"device": "cpu"})
    >>> est, features = brain.separate(torch.randn(3, 800))
    >>> est.shape, features["masks"].shape
    (torch.Size([3, 800, 2]), torch.Size([2, 3, 8, 99]))
    """

    #: ``hparams -> (train, valid[, test])`` datasets of the method, when they are not
    #: :func:`modules.data.build_datasets`' (a yaml's ``dataset_builder`` wins; e.g. the
    #: context-aware group stage, DIP pretraining); read by :func:`modules.recipe.run_stage`.
    dataset_builder = None

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.frozen = list(self._hp("frozen_modules", None) or [])
        unknown = [name for name in self.frozen if name not in self.modules]
        if unknown:
            raise ValueError(f"frozen_modules names modules that are not in `modules`: {unknown}")
        for name in self.frozen:
            self.modules[name].requires_grad_(False)
            self.modules[name].eval()
        if self.checkpointer is not None:
            self._register_modules(self.checkpointer)
        self.test_set_name = None
        self._kept_items = None
        self._nonfinite_in_window = False
        self._batch_ids = []
        self.skipped_steps = 0
        self.nonfinite_count = 0  # Brain sets it at each epoch start; a fit_batch outside fit() needs it too

    # --------------------------------------------------------------- helpers
    def _hp(self, name, default=None):
        """A hyperparameter, or ``default`` when the yaml does not set it."""
        return getattr(self.hparams, name, default) if self.hparams is not None else default

    def _register_modules(self, checkpointer):
        """What a checkpoint holds: the trainable modules (by their ``modules`` name), the epoch counter
        (``counter``) and the LR scheduler (``lr_scheduler``), unless the yaml registered them already;
        frozen modules are taken out."""
        frozen_ids = {id(self.modules[name]) for name in self.frozen}
        for key in [k for k, obj in checkpointer.recoverables.items() if id(obj) in frozen_ids]:
            del checkpointer.recoverables[key]
        wanted = {name: module for name, module in self.modules.items() if name not in self.frozen}
        for name, attr in (("counter", "epoch_counter"), ("lr_scheduler", "lr_scheduler")):
            if self._hp(attr, None) is not None:
                wanted[name] = self._hp(attr)
        registered = {id(obj) for obj in checkpointer.recoverables.values()}
        for name, obj in wanted.items():
            if id(obj) not in registered and name not in checkpointer.recoverables:
                checkpointer.add_recoverable(name, obj)

    def on_tested(self, written):
        """Called on every process after the test sets of a run were scored (``written``: their csv names).

        A method that summarises its results in the layout of its paper's table
        writes that table here (e.g. the context-aware recipe's
        ``results_table.md``); the default does nothing.
        """

    def unwrapped(self, name):
        """``self.modules[name]`` without a DDP / DataParallel wrapper."""
        module = self.modules[name]
        return getattr(module, "module", module)

    @property
    def best_key(self):
        """``(key, mode)`` that ranks checkpoints (``best_key``, ``best_key_mode`` in the yaml)."""
        return self._hp("best_key", "si-snr"), self._hp("best_key_mode", "max")

    # ------------------------------------------------------------------ hooks
    def conditioning(self, batch):
        """Named separator inputs from the batch: the yaml's ``conditioning`` list (e.g. ``[enroll]``).

        A name ``x`` passes ``batch.x`` and, when the batch has it, ``batch.x_lengths``.
        A separator whose ``takes_lengths`` is true (DPCCN: padding-aware) also
        gets the mixtures' ``lengths``.
        """
        inputs = {}
        if "separator" in self.modules and getattr(self.unwrapped("separator"), "takes_lengths", False):
            inputs["lengths"] = batch.lengths
        for name in self._hp("conditioning", None) or []:
            value = getattr(batch, name, None)
            if value is None:
                raise ValueError(f"the separator is conditioned on {name!r} but the batch has none (manifest column?)")
            inputs[name] = value
            if getattr(batch, f"{name}_lengths", None) is not None:
                inputs[f"{name}_lengths"] = getattr(batch, f"{name}_lengths")
        return inputs

    def separate(self, mix, **conditioning):
        """``(estimates [B, T, n_outputs], features)`` from the ``separator`` module."""
        return self.modules.separator(mix, **conditioning)

    def training_targets(self, outputs):
        """The signals PIT assigns the outputs to and which are real: ``([B, T, C], [B, C])``."""
        return outputs.targets, outputs.source_mask

    def pit_loss(self, outputs):
        """Per-item negative SI-SNR under each item's best assignment, and that assignment."""
        targets, mask = self.training_targets(outputs)
        return pit_si_snr_loss(outputs.estimates, targets, source_mask=mask, lengths=outputs.lengths)

    def auxiliary_loss(self, outputs, batch):
        """Extra training losses, per item (before the threshold) and per batch (after it): :class:`AuxiliaryLoss`."""
        return AuxiliaryLoss()

    def speaker_estimates(self, outputs):
        """Speaker estimates aligned with ``outputs.targets``: ``[B, T, C]``."""
        n_spk = outputs.targets.shape[-1]
        return apply_perm(outputs.estimates, outputs.perm[:, :n_spk])

    def split_outputs(self, estimates):
        """Separator outputs without references -> ``(speakers [B, T, C], noise [B, T] or None)``."""
        return estimates, None

    @torch.no_grad()
    def separate_speakers(self, mix, **conditioning):
        """Separates mixtures without references: ``(speakers [B, T, C], noise or None)``."""
        estimates, _ = self.separate(mix, **conditioning)
        return self.split_outputs(estimates)

    def separate_file(self, path, output_folder, **options):
        """Separates one recording and writes ``<output_folder>/<name>_s1.wav``, ... (and ``_noise.wav``).

        Any length, sample rate and number of channels, through
        :func:`modules.inference.separate_file` (chunked overlap-add with the
        speakers aligned across chunks; ``options`` are its keyword arguments,
        e.g. ``enroll=<file>`` for target speech extraction).

        Returns
        -------
        list of str
            The files written.
        """
        from modules.inference import BrainModel, separate_file

        self.modules.eval()
        return separate_file(BrainModel(self), path, output_folder, **options).files

    # --------------------------------------------------------- augmentation
    @torch.no_grad()
    def augment(self, batch):
        """Training-time augmentation of a batch: speed perturbation, then random crops.

        As upstream, each source column is speed-perturbed on its own (one
        random speed per source for the whole batch) and the mixture rebuilt as
        their sum plus the unperturbed noise, everything cut to the shortest;
        item lengths shrink or grow with the speed. A mixture-only item is
        perturbed as it is. Then, with ``limit_training_signal_len``, each item
        gets its own random window of ``training_signal_len`` samples inside
        its own valid length (an item shorter than that keeps all of it). The
        enrollment signal is never changed.
        """
        hp = self.hparams
        if self._hp("use_speedperturb", False):
            batch = self._speed_perturb(batch, hp.speed_perturb)
        if self._hp("limit_training_signal_len", False) and batch.mix.shape[1] > hp.training_signal_len:
            batch = crop_batch(batch, hp.training_signal_len)
        return batch

    @staticmethod
    def _speed_perturb(batch, perturb):
        if batch.sources is None:
            mix = perturb(batch.mix)
            lengths = _scaled_lengths(batch.lengths, batch.mix.shape[1], mix.shape[1])
            return batch.replace(mix=mix, lengths=torch.minimum(lengths, torch.full_like(lengths, mix.shape[1])))
        perturbed = [perturb(batch.sources[..., j]) for j in range(batch.sources.shape[-1])]
        length = min(p.shape[-1] for p in perturbed)
        lengths = torch.stack([_scaled_lengths(batch.lengths, batch.mix.shape[1], p.shape[-1]) for p in perturbed])
        noise = batch.noise
        if noise is not None:
            length = min(length, noise.shape[-1])
            noise = noise[:, :length]
        sources = torch.stack([p[:, :length] for p in perturbed], dim=-1)
        lengths = lengths.min(dim=0).values.clamp(max=length)
        mix = sources.sum(-1) + (noise if noise is not None else 0)
        return batch.replace(mix=mix, sources=sources, noise=noise, lengths=lengths)

    # ------------------------------------------------------- Brain interface
    def on_fit_start(self):
        """Brain's setup and checkpoint recovery, then says where training starts."""
        super().on_fit_start()
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        logger.info("Training with %d process(es)", world)
        if self.frozen:
            logger.info("Frozen modules (eval mode, no gradient, not in the optimiser or checkpoints): %s", self.frozen)
        epoch = self.hparams.epoch_counter.current + 1
        if self.step > 0:
            logger.info("Resuming training at epoch %d, step %d", epoch, self.step)
        elif epoch > 1:
            logger.info("Resuming training at epoch %d", epoch)

    def init_optimizers(self):
        """One optimiser over the trainable parameters only (frozen modules are left out)."""
        if self.opt_class is None:
            return super().init_optimizers()
        self.optimizer = self.opt_class([p for p in self.modules.parameters() if p.requires_grad])
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_fit_batch_start(self, batch, should_step):
        """Keeps frozen modules in eval mode (Brain switches every module to train mode each epoch)."""
        for name in self.frozen:
            self.modules[name].eval()
        self._batch_ids = list(getattr(batch, "ids", []) or [])

    def check_loss_isfinite(self, loss):
        """Brain's nonfinite patience, no optimiser step on a window with a nonfinite loss, and a log
        line naming the batch's items and the first tensor that was not finite."""
        if not torch.isfinite(loss):
            self._nonfinite_in_window = True
            logger.warning("Nonfinite training loss: %s; the update is skipped", self._diagnose_nonfinite())
        super().check_loss_isfinite(loss)

    def _diagnose_nonfinite(self):
        """Which tensor of the last training batch is not finite, and in which items (host syncs: error path only)."""
        outputs, per_item = getattr(self, "_last_train", (None, None))
        if outputs is None:
            return f"batch {self._batch_ids}"
        ids = outputs.batch.ids
        for name, tensor in (
            ("input mixture", outputs.mix),
            ("target sources", outputs.targets),
            ("target noise", outputs.noise),
            ("separator output", outputs.estimates),
            ("per-item loss", per_item),
        ):
            if tensor is None:
                continue
            bad = ~torch.isfinite(tensor.detach().reshape(tensor.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                return f"non-finite {name} in item(s) {[i for i, b in zip(ids, bad.tolist()) if b]} of batch {ids}"
        return f"non-finite loss (all inputs, targets and outputs finite) in batch {ids}"

    def optimizers_step(self):
        """Brain's optimiser step, skipped when no item was kept in the accumulation window.

        When every item of the window is past the loss threshold (or none has
        references, or the loss was not finite), nothing is learnt from it:
        the gradients are dropped and the optimiser does not step, so Adam's
        momentum does not move the weights either (upstream skips these
        batches the same way). Costs one host synchronisation per step.
        """
        kept, nonfinite = self._kept_items, self._nonfinite_in_window
        self._kept_items, self._nonfinite_in_window = None, False
        if nonfinite or (kept is not None and float(kept) == 0):
            self.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self._stepped = False
            return
        super().optimizers_step()
        self._stepped = True

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Per-step LR schedules (warmup + decay) advance after every optimiser step."""
        if should_step and getattr(self, "_stepped", False) and scheduler_interval(self._scheduler) == "step":
            self._scheduler(self.optimizer)

    @property
    def _scheduler(self):
        return self._hp("lr_scheduler", None)

    def compute_forward(self, batch, stage):
        """Forward pass: the estimates beside the (augmented) batch's signals, :class:`SeparationOutputs`."""
        if not isinstance(batch, SeparationBatch):
            raise TypeError(f"expected a SeparationBatch (collate_fn=modules.data.collate), got {type(batch).__name__}")
        batch = batch.to(self.device)
        if stage == sb.Stage.TRAIN:
            if batch.sources is None:
                raise ValueError(f"training batch {batch.ids} has no source references (a mixture-only manifest?)")
            batch = self.augment(batch)
        estimates, features = self.separate(batch.mix, **self.conditioning(batch))
        return SeparationOutputs.from_batch(estimates, batch, features)

    def compute_objectives(self, outputs, batch, stage):
        """uPIT negative SI-SNR (+ auxiliary loss in training); minus the speakers' SI-SNR otherwise.

        In training, items whose loss is already below ``threshold`` (SI-SNR
        above -threshold dB) and mixture-only items do not contribute, as in
        upstream's ``threshold_byloss``; see :meth:`optimizers_step` for a
        batch with no item left. In validation and test the loss is minus
        the SI-SNR of the speakers, averaged over each item's real sources and
        over the items with references (0 for a mixture-only batch).
        """
        if outputs.targets is None:
            outputs.perm = None
            if stage == sb.Stage.VALID:
                raise ValueError(f"validation batch {outputs.batch.ids} has no references: validation needs them")
            return outputs.estimates.new_zeros(())
        loss, perm = self.pit_loss(outputs)
        outputs.perm = perm
        supervised = outputs.batch.supervised
        if stage != sb.Stage.TRAIN:
            mask = outputs.source_mask.to(torch.float64)
            # each item on its own samples; nan where undefined (silent reference)
            values = si_snr(self.speaker_estimates(outputs), outputs.targets, lengths=outputs.lengths)
            finite = torch.isfinite(values).logical_or(mask == 0).all(-1)
            per_item = (values.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            weight = (supervised & finite).to(torch.float64)
            if stage == sb.Stage.VALID and not bool(finite[supervised].all()):  # a sync per validation batch only
                ids = outputs.batch.ids
                bad = [i for i, ok, sup in zip(ids, finite.tolist(), supervised.tolist()) if sup and not ok]
                logger.warning("Validation items %s have an undefined SI-SNR (silent reference?): left out", bad)
            return -((per_item * weight).sum() / weight.sum().clamp(min=1)).float()
        aux = self.auxiliary_loss(outputs, batch)
        if aux.per_item is not None:
            loss = loss + aux.per_item
        self._last_train = (outputs, loss)  # references only, for the nonfinite-loss diagnosis
        kept = supervised
        if self._hp("threshold_byloss", False):
            kept = kept & (loss > self.hparams.threshold)
        kept = kept.to(loss.dtype)
        total = (loss * kept).sum() / kept.sum().clamp(min=1.0)
        self._kept_items = kept.sum() if self._kept_items is None else self._kept_items + kept.sum()
        return total if aux.batch is None else total + aux.batch

    def evaluate_batch(self, batch, stage):
        """Validation as Brain does; in test, also per-item metrics and audio."""
        if stage != sb.Stage.TEST:
            return super().evaluate_batch(batch, stage)
        with torch.no_grad(), self.evaluation_ctx:
            outputs = self.compute_forward(batch, stage)
            loss = self.compute_objectives(outputs, batch, stage)
        self.record_test_metrics(outputs)
        self.save_test_outputs(outputs)
        return loss.detach().cpu()

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-item test records and the count of skipped updates."""
        if stage == sb.Stage.TEST:
            self.test_rows = []
            self.n_saved = 0
        elif stage == sb.Stage.TRAIN:
            self.skipped_steps = 0

    def valid_stats(self, stage_loss):
        """Validation statistics (``si-snr`` of the speakers); the best-checkpoint key must be among them."""
        return {"si-snr": -float(stage_loss)}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """LR annealing, logging, early stopping and checkpointing; test results in test."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, "skipped_updates": self.skipped_steps}
        elif stage == sb.Stage.VALID:
            stats = self.valid_stats(stage_loss)
            key, mode = self.best_key
            if key not in stats:
                raise KeyError(f"best_key {key!r} is not a validation statistic (have {sorted(stats)})")
            current_lr = self.optimizer.param_groups[0]["lr"]
            if scheduler_interval(self._scheduler) == "epoch":
                current_lr, next_lr = self._epoch_schedule(epoch, stage_loss)
                update_learning_rate(self.optimizer, next_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr}, train_stats=self.train_stats, valid_stats=stats
            )
            counter = self.hparams.epoch_counter
            if hasattr(counter, "update_metric"):
                counter.update_metric(stats[key])
            self.checkpointer.save_and_keep_only(meta=stats, **{f"{mode}_keys": [key]})
            if getattr(counter, "should_stop", False):
                logger.info("Early stopping after epoch %d: no improvement of %s", epoch, key)
        elif stage == sb.Stage.TEST:
            summary = self.write_test_results()
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current, "test set": self._test_label},
                test_stats=summary,
            )

    def _epoch_schedule(self, epoch, stage_loss):
        scheduler = self._scheduler
        if hasattr(scheduler, "patience") and hasattr(scheduler, "anchor"):  # ReduceLROnPlateau
            return scheduler([self.optimizer], epoch, stage_loss)
        return scheduler(stage_loss)  # NewBobScheduler

    # ----------------------------------------------------------- test stage
    @property
    def _test_label(self):
        return self.test_set_name or "test"

    def item_outputs(self, outputs, index):
        """The outputs of batch item ``index`` alone, cut to its length and sources: :meth:`SeparationOutputs.item`."""
        return outputs.item(index)

    @torch.no_grad()
    def test_metrics(self, outputs):
        """Metrics of one item (``outputs`` from :meth:`item_outputs`): ``{name: float}``.

        SI-SNR, SI-SNRi, SDR and SDRi of the speakers, each averaged over the
        item's speakers. Subclasses add their own (NASS: the noise estimate).
        """
        scores = score_separation(self.speaker_estimates(outputs), outputs.targets, outputs.mix)
        return {name: float(value[0]) for name, value in scores.items()}

    @torch.no_grad()
    def record_test_metrics(self, outputs):
        """Scores every item on its own length and sources; mixture-only items get their separations saved."""
        batch = outputs.batch
        for i, item_id in enumerate(batch.ids):
            single = self.item_outputs(outputs, i)
            row = {"snt_id": item_id, "scenario": batch.scenario[i], "scored": 1, "reason": ""}
            if single.targets is None:
                self.save_separations(single)
                row.update(scored=0, reason="no references (separations written)")
            else:
                metrics = self.test_metrics(single)
                row.update(metrics)
                undefined = [name for name, value in metrics.items() if not math.isfinite(value)]
                if undefined:
                    row.update(scored=0, reason=self.exclusion_reason(single, undefined))
            self.test_rows.append(row)

    def exclusion_reason(self, single, undefined):
        """Why an item's metrics are not finite: a silent reference, a non-finite output, ..."""
        checks = [("mixture", single.mix), ("separator output", single.estimates)]
        checks += [(f"reference s{j + 1}", single.targets[..., j]) for j in range(single.targets.shape[-1])]
        for name, signal in checks:
            if not bool(torch.isfinite(signal).all()):
                return f"non-finite {name}"
        peaks = single.targets[0].abs().amax(dim=0).tolist()
        silent = [f"s{j + 1}" for j, peak in enumerate(peaks) if peak == 0]
        if silent:
            return f"silent reference {', '.join(silent)}: metrics undefined"
        return f"undefined {', '.join(undefined)}"

    def save_separations(self, single):
        """Writes the separated signals of a mixture-only test item (reference-free evaluation reads them).

        Files: ``<output_folder>/separations[_<test set>]/<id>_s1.wav``, ... at
        the recipe's sample rate, unless ``save_separations: False``.
        """
        if not self._hp("save_separations", True) or not if_main_process():
            return
        folder = os.path.join(self.hparams.output_folder, "separations" + self._file_suffix)
        os.makedirs(folder, exist_ok=True)
        speakers, noise = self.split_outputs(single.estimates)
        item_id = single.batch.ids[0]
        signals = {f"s{j + 1}": speakers[0, :, j] for j in range(speakers.shape[-1])}
        if noise is not None:
            signals["noise"] = noise[0]
        for name, signal in signals.items():
            sb.dataio.dataio.write_audio(
                os.path.join(folder, f"{item_id}_{name}.wav"), signal.float().cpu(), self.hparams.sample_rate
            )

    @property
    def _file_suffix(self):
        return f"_{self.test_set_name}" if self.test_set_name else ""

    def save_test_outputs(self, outputs):
        """Writes mixture, references and estimates of the first test items.

        Files go to ``<output_folder>/audio[_<test set>]/<id>_{mix,s1,s1_hat,...}.wav``
        (``save_audio`` and ``n_audio_to_save`` in the yaml), and for the first
        ``n_figures_to_save`` items a spectrogram figure of the mixture and the
        estimates, ``<id>_spectrograms.png``.
        """
        n_to_save = self._hp("n_audio_to_save", math.inf)
        if not self._hp("save_audio", False) or not if_main_process() or self.n_saved >= n_to_save:
            return
        folder = os.path.join(self.hparams.output_folder, "audio" + self._file_suffix)
        batch = outputs.batch
        for i, item_id in enumerate(batch.ids):
            if self.n_saved >= n_to_save:
                return
            single = self.item_outputs(outputs, i)
            if single.targets is None:  # mixture-only items: their separations are written instead
                continue
            os.makedirs(folder, exist_ok=True)
            est = self.speaker_estimates(single)[0].float().cpu()
            ref = single.targets[0].float().cpu()
            signals = {"mix": single.mix[0].float().cpu()}
            for s in range(est.shape[-1]):  # no x[f"..."] here: upstream's yaml check reads it as any variable
                source = f"s{s + 1}"
                signals[source], signals[source + "_hat"] = ref[:, s], est[:, s]
            signals.update(self.extra_test_signals(single, 0))
            for name, signal in signals.items():
                peak_normalised = 0.9 * signal / signal.abs().max().clamp(min=1e-8)
                path = os.path.join(folder, f"{item_id}_{name}.wav")
                sb.dataio.dataio.write_audio(path, peak_normalised, self.hparams.sample_rate)
            if self.n_saved < self._hp("n_figures_to_save", 0):
                estimated = {k: v for k, v in signals.items() if k == "mix" or k.endswith("_hat")}
                spectrogram_figure(
                    os.path.join(folder, f"{item_id}_spectrograms.png"), estimated, self.hparams.sample_rate
                )
            self.n_saved += 1

    def extra_test_signals(self, outputs, index):
        """More signals to save beside the speakers for batch item ``index`` (NASS: the noise)."""
        return {}

    def write_test_results(self):
        """Writes ``test_results[_<set>].csv`` and ``test_summary[_<set>].{json,md}``; returns the means.

        Means are over the scored items (those with references); a test set
        of mixture-only items has none: its rows list the items whose
        separations were written.
        """
        rows = self.test_rows
        if not rows:
            raise RuntimeError("The test set is empty: no test results to write.")
        scored = [r for r in rows if r["scored"]]
        fixed = ("snt_id", "scenario", "scored", "reason")
        names = []
        for row in rows:
            names += [k for k in row if k not in names and k not in fixed]
        means = {m: sum(r[m] for r in scored if m in r) / max(1, sum(m in r for r in scored)) for m in names}
        excluded = [r for r in rows if not r["scored"]]
        undefined = [f"{r['snt_id']} ({r['reason']})" for r in excluded if not r["reason"].startswith("no references")]
        if undefined:
            logger.warning("%d test item(s) left out of the means: %s", len(undefined), "; ".join(undefined))
        if if_main_process():
            folder, suffix = self.hparams.output_folder, self._file_suffix
            with_scenario = any(r["scenario"] for r in rows)
            header = ["snt_id", *(["scenario"] if with_scenario else []), "scored", *names]
            header += ["reason"] if excluded else []
            table_rows = [
                {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()}
                for r in [*rows, {"snt_id": "avg", "scored": len(scored), **means}]
            ]
            write_csv_atomic(os.path.join(folder, f"test_results{suffix}.csv"), header, table_rows)
            summary = {
                "test_set": self._test_label,
                "n_mixtures": len(rows),
                "n_scored": len(scored),
                "n_excluded": len(excluded),
                **{m: round(v, 4) for m, v in means.items()},
            }
            if with_scenario:  # per-scenario means (SADDEL's tables: one column per scenario)
                summary["scenarios"] = scenario_means(scored, names)
            write_text_atomic(os.path.join(folder, f"test_summary{suffix}.json"), json.dumps(summary, indent=2) + "\n")
            table = "| metric | mean |\n|---|---|\n" + "".join(f"| {m} | {v:.2f} |\n" for m, v in means.items())
            text = f"Test set {self._test_label}: {len(rows)} mixtures, {len(scored)} scored (SI-SNR and SDR in dB)\n"
            if undefined:
                text += f"\nLeft out of the means (reasons in test_results{suffix}.csv): {'; '.join(undefined)}\n"
            if any(r["reason"].startswith("no references") for r in excluded):
                text += f"\nNo references: separations written to separations{suffix}/\n"
            write_text_atomic(os.path.join(folder, f"test_summary{suffix}.md"), f"{text}\n{table}")
            logger.info("Test results written to %s", os.path.join(folder, f"test_results{suffix}.csv"))
        return means


def scenario_means(rows, names):
    """``{scenario: {"n_scored": n, metric: mean}}`` of scored test rows labelled with a scenario.

    Example
    -------
    >>> rows = [{"scenario": "2sp", "x": 1.0}, {"scenario": "2sp", "x": 3.0}, {"scenario": "3sp", "x": 5.0}]
    >>> scenario_means(rows, ["x"])
    {'2sp': {'n_scored': 2, 'x': 2.0}, '3sp': {'n_scored': 1, 'x': 5.0}}
    """
    out = {}
    for scenario in dict.fromkeys(r["scenario"] for r in rows if r.get("scenario")):
        mine = [r for r in rows if r.get("scenario") == scenario]
        out[scenario] = {"n_scored": len(mine)}
        for m in names:
            values = [r[m] for r in mine if m in r]
            if values:
                out[scenario][m] = round(sum(values) / len(values), 4)
    return out


def _scaled_lengths(lengths, old_total, new_total):
    """Valid lengths after resampling a padded batch from ``old_total`` to ``new_total`` samples."""
    return torch.div(lengths * new_total, old_total, rounding_mode="floor")


def crop_batch(batch, length, generator=None):
    """Each item's own random window of ``length`` samples inside its valid length.

    Vectorised: one gather for the mixture, the sources and the noise. An item
    shorter than ``length`` keeps all its samples (the window starts at 0).

    Arguments
    ---------
    batch : SeparationBatch
    length : int
    generator : torch.Generator, optional

    Returns
    -------
    SeparationBatch
        ``length`` samples long; ``lengths`` are ``min(old length, length)``.

    Example
    -------
    >>> from modules.data import collate
    >>> items = [{"id": str(n), "mix_sig": torch.arange(n, dtype=torch.float32) + 1} for n in (10, 4)]
    >>> cropped = crop_batch(collate(items), 6, generator=torch.Generator().manual_seed(0))
    >>> cropped.mix.shape, cropped.lengths.tolist(), cropped.mix[1].tolist()
    (torch.Size([2, 6]), [6, 4], [1.0, 2.0, 3.0, 4.0, 0.0, 0.0])
    >>> bool((cropped.mix[0][1:] - cropped.mix[0][:-1] == 1).all())  # one contiguous window of item 0
    True
    """
    device = batch.mix.device
    room = (batch.lengths - length).clamp(min=0)
    draw = torch.rand(room.shape, generator=generator, device=generator.device if generator else device)
    start = torch.minimum((draw.to(device) * (room + 1)).long(), room)
    index = start[:, None] + torch.arange(length, device=device)  # [B, length]
    total = batch.mix.shape[1]
    index = index.clamp(max=total - 1)
    valid = torch.arange(length, device=device)[None, :] < (batch.lengths - start)[:, None]

    def take(signal):
        """The items' windows of a ``[B, T]`` signal, zero past each item's valid length."""
        return signal.gather(1, index) * valid

    changes = {"mix": take(batch.mix), "lengths": torch.minimum(batch.lengths, torch.full_like(batch.lengths, length))}
    if batch.sources is not None:
        idx = index[..., None].expand(-1, -1, batch.sources.shape[-1])
        changes["sources"] = batch.sources.gather(1, idx) * valid[..., None]
    if batch.noise is not None:
        changes["noise"] = take(batch.noise)
    return batch.replace(**changes)
