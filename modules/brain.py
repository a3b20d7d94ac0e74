"""``SeparationBrain``: the one training/evaluation loop every recipe shares.

Upstream SpeechBrain copies a separation ``train.py`` into each dataset folder
and overrides ``fit_batch`` there, bypassing ``grad_accumulation_factor``,
``max_grad_norm`` and the nonfinite-loss patience of :class:`speechbrain.Brain`.
Here the loop is Brain's own; this class only says what a forward pass, a loss
and a test metric are for mask-based separation, through small hooks that the
method brains (NASS, SADDEL, ...) override:

``separate(mix)``
    mixture ``[B, T]`` -> estimates ``[B, T, n_outputs]`` plus intermediate
    features (encoder output, masks) for auxiliary losses.
``training_targets(outputs)``
    what PIT matches the outputs against (the speakers; NASS appends the noise).
``auxiliary_loss(outputs, batch)``
    a term added to the training loss (zero here).
``pit_loss(outputs)``
    per-item PIT loss and permutation (NASS: a fixed noise slot).
``speaker_estimates(outputs)``
    the estimates of the ``num_spks`` speakers, aligned with the speaker
    targets: validation and test metrics count these only.
``test_metrics(outputs, ...)``, ``extra_test_signals(outputs, i)``
    per-item test metrics and extra signals to save.
``separate_speakers(mix)``
    inference without references (used by ``separate_file``).

Hyperparameters read (see the recipe yamls): ``num_spks``, ``sample_rate``,
``use_speedperturb`` + ``speed_perturb``, ``limit_training_signal_len`` +
``training_signal_len``, ``threshold_byloss`` + ``threshold``,
``lr_scheduler``, ``checkpointer``, ``train_logger``, ``output_folder``,
``save_audio`` + ``n_audio_to_save``.
"""

import json
import logging
import math
import os

import soundfile
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate
from speechbrain.utils.distributed import if_main_process

from data_prep.common import write_csv_atomic, write_text_atomic
from modules.losses import apply_perm, pit_si_snr_loss
from modules.metrics import sdr, si_snr
from modules.plotting import spectrogram_figure

logger = logging.getLogger(__name__)

METRICS = ("si-snr", "si-snr_i", "sdr", "sdr_i")


class SeparationBrain(sb.Brain):
    """Permutation-invariant training of an encoder / masker / decoder separator.

    ``modules`` must hold ``encoder``, ``masknet`` and ``decoder`` as in
    SpeechBrain's dual-path and Conv-TasNet lobes: the encoder maps ``[B, T]`` to
    ``[B, N, L]``, the masker maps that to ``[n_masks, B, N, L]``, the decoder
    maps ``[B, N, L]`` back to ``[B, T]``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> modules = {
    ...     "encoder": Encoder(kernel_size=16, out_channels=8),
    ...     "masknet": MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=2),
    ...     "decoder": Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ... }
    >>> brain = SeparationBrain(modules, hparams={"num_spks": 2}, run_opts={"device": "cpu"})
    >>> est, extras = brain.separate(torch.randn(3, 800))
    >>> est.shape, extras["masks"].shape
    (torch.Size([3, 800, 2]), torch.Size([2, 3, 8, 99]))
    """

    # ------------------------------------------------------------------ hooks
    def separate(self, mix):
        """Separates a batch of mixtures.

        Arguments
        ---------
        mix : torch.Tensor
            ``[batch, time]``.

        Returns
        -------
        estimates : torch.Tensor
            ``[batch, time, n_masks]``, trimmed or padded to the input length.
        extras : dict
            ``mix_w`` (encoder output ``[B, N, L]``) and ``masks``
            (``[n_masks, B, N, L]``), for auxiliary losses.
        """
        mix_w = self.modules.encoder(mix)
        masks = self.modules.masknet(mix_w)
        n_masks, batch = masks.shape[0], masks.shape[1]
        sep_h = mix_w.unsqueeze(0) * masks
        est = self.modules.decoder(sep_h.flatten(0, 1)).reshape(n_masks, batch, -1)
        est = est.permute(1, 2, 0)
        return _fit_length(est, mix.shape[1]), {"mix_w": mix_w, "masks": masks}

    def training_targets(self, outputs):
        """The signals PIT assigns the outputs to: ``[B, T, n_outputs]``."""
        return outputs["targets"]

    def pit_loss(self, outputs):
        """Per-item negative SI-SNR under the best permutation, and that permutation."""
        return pit_si_snr_loss(outputs["estimates"], self.training_targets(outputs))

    def auxiliary_loss(self, outputs, batch):
        """An extra training loss term (scalar tensor); none in the baseline."""
        return outputs["estimates"].new_zeros(())

    def speaker_estimates(self, outputs):
        """Speaker estimates aligned with ``outputs["targets"]``: ``[B, T, num_spks]``."""
        aligned = apply_perm(outputs["estimates"], outputs["perm"])
        return aligned[..., : self.hparams.num_spks]

    @torch.no_grad()
    def separate_speakers(self, mix):
        """Separates mixtures without references: ``(speakers [B, T, C], noise or None)``."""
        estimates, _ = self.separate(mix)
        return estimates, None

    def separate_file(self, path, output_folder):
        """Separates one audio file (at the model's sample rate) and writes the outputs.

        Arguments
        ---------
        path : str
            Mixture file.
        output_folder : str
            Where ``<name>_s1.wav``, ... (and ``<name>_noise.wav`` when the model
            predicts the noise) are written.

        Returns
        -------
        list of str
            The files written.
        """
        info = soundfile.info(path)
        if info.samplerate != self.hparams.sample_rate:
            raise ValueError(f"sample rate {info.samplerate} Hz, the model expects {self.hparams.sample_rate} Hz")
        if info.channels != 1:
            raise ValueError(f"expected a mono file, got {info.channels} channels")
        mix = sb.dataio.dataio.read_audio(path)
        self.modules.eval()
        speakers, noise = self.separate_speakers(mix[None].to(self.device))
        signals = {f"s{i + 1}": speakers[0, :, i] for i in range(speakers.shape[-1])}
        if noise is not None:
            signals["noise"] = noise[0]
        os.makedirs(output_folder, exist_ok=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        written = []
        for name, signal in signals.items():
            written.append(os.path.join(output_folder, f"{stem}_{name}.wav"))
            sb.dataio.dataio.write_audio(written[-1], signal.float().cpu(), self.hparams.sample_rate)
        return written

    # --------------------------------------------------------- data handling
    def batch_signals(self, batch):
        """Mixture, lengths, speaker targets ``[B, T, C]`` and noise (or None), on device."""
        mix, lens = batch.mix_sig
        targets = torch.stack([getattr(batch, f"s{i + 1}_sig").data for i in range(self.hparams.num_spks)], dim=-1)
        noise = batch.noise_sig.data.to(self.device) if hasattr(batch, "noise_sig") else None
        return mix.to(self.device), lens.to(self.device), targets.to(self.device), noise

    @torch.no_grad()
    def augment(self, mix, targets, noise):
        """Training-time augmentation: speed perturbation and random crop.

        As upstream, each source is speed-perturbed independently and the
        mixture is rebuilt as their sum plus the (unperturbed) noise; then a
        random window of ``training_signal_len`` samples is cut when
        ``limit_training_signal_len`` is set.
        """
        hp = self.hparams
        if getattr(hp, "use_speedperturb", False):
            perturbed = [hp.speed_perturb(targets[..., i]) for i in range(targets.shape[-1])]
            length = min(p.shape[-1] for p in perturbed)
            if noise is not None:
                length = min(length, noise.shape[-1])
                noise = noise[:, :length]
            targets = torch.stack([p[:, :length] for p in perturbed], dim=-1)
            mix = targets.sum(-1) + (noise if noise is not None else 0)
        if getattr(hp, "limit_training_signal_len", False) and mix.shape[1] > hp.training_signal_len:
            start = int(torch.randint(0, mix.shape[1] - hp.training_signal_len + 1, (1,)))
            window = slice(start, start + hp.training_signal_len)
            mix, targets = mix[:, window], targets[:, window]
            noise = noise[:, window] if noise is not None else None
        return mix, targets, noise

    # ------------------------------------------------------- Brain interface
    def on_fit_start(self):
        """Brain's setup and checkpoint recovery, then says where training starts."""
        super().on_fit_start()
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        logger.info("Training with %d process(es)", world)
        epoch = self.hparams.epoch_counter.current + 1
        if self.step > 0:
            logger.info("Resuming training at epoch %d, step %d", epoch, self.step)
        elif epoch > 1:
            logger.info("Resuming training at epoch %d", epoch)

    def compute_forward(self, batch, stage):
        """Forward pass; returns a dict of estimates, targets and extras."""
        mix, lens, targets, noise = self.batch_signals(batch)
        if stage == sb.Stage.TRAIN:
            mix, targets, noise = self.augment(mix, targets, noise)
        estimates, extras = self.separate(mix)
        return {"estimates": estimates, "mix": mix, "lens": lens, "targets": targets, "noise": noise, **extras}

    def compute_objectives(self, outputs, batch, stage):
        """uPIT negative SI-SNR (+ auxiliary loss in training).

        In training, items whose loss is already below ``threshold`` (i.e. SI-SNR
        above -threshold dB) do not contribute, as in upstream's
        ``threshold_byloss``; with no item left the loss is a zero with a zero
        gradient. In validation and test the loss is the negative SI-SNR of the
        speakers only.
        """
        loss, perm = self.pit_loss(outputs)
        outputs["perm"] = perm
        if stage != sb.Stage.TRAIN:
            return -si_snr(self.speaker_estimates(outputs), outputs["targets"]).mean()
        if getattr(self.hparams, "threshold_byloss", False):
            keep = (loss > self.hparams.threshold).to(loss.dtype)
            loss = (loss * keep).sum() / keep.sum().clamp(min=1.0)
        else:
            loss = loss.mean()
        return loss + self.auxiliary_loss(outputs, batch)

    def evaluate_batch(self, batch, stage):
        """Validation as Brain does; in test, also per-item metrics and audio."""
        if stage != sb.Stage.TEST:
            return super().evaluate_batch(batch, stage)
        with self.evaluation_ctx:
            outputs = self.compute_forward(batch, stage)
            loss = self.compute_objectives(outputs, batch, stage)
        self.record_test_metrics(batch, outputs)
        self.save_test_outputs(batch, outputs)
        return loss.detach().cpu()

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-item test records."""
        if stage == sb.Stage.TEST:
            self.test_rows = []
            self.n_saved = 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """LR annealing, logging and checkpointing; test results in test."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
        elif stage == sb.Stage.VALID:
            stats = {"si-snr": -stage_loss}  # the validation loss is the speakers' negative SI-SNR
            current_lr = self.optimizer.param_groups[0]["lr"]
            if isinstance(getattr(self.hparams, "lr_scheduler", None), ReduceLROnPlateau):
                current_lr, next_lr = self.hparams.lr_scheduler([self.optimizer], epoch, stage_loss)
                update_learning_rate(self.optimizer, next_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(meta={"si-snr": -stage_loss}, max_keys=["si-snr"])
        elif stage == sb.Stage.TEST:
            summary = self.write_test_results()
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=summary,
            )

    # ----------------------------------------------------------- test stage
    @torch.no_grad()
    def test_metrics(self, outputs, items=slice(None), length=None):
        """Per-item metrics ``{name: [b]}`` of batch items ``items``, signals cut to ``length`` samples.

        SI-SNR, SI-SNRi, SDR and SDRi of the speakers, each averaged over the
        item's speakers. Subclasses add their own (NASS: the noise estimate).
        """
        est = self.speaker_estimates(outputs)[items, :length].float()
        ref = outputs["targets"][items, :length].float()
        mix = outputs["mix"][items, :length].float()
        return dict(zip(METRICS, _score(est, ref, mix).unbind(-1)))

    @torch.no_grad()
    def record_test_metrics(self, batch, outputs):
        """Scores every item of the batch; items of a padded batch on their own length."""
        full = outputs["mix"].shape[1]
        lengths = torch.round(outputs["lens"] * full).long().tolist()
        if all(n == full for n in lengths):
            per_item = self.test_metrics(outputs)
        else:
            parts = [self.test_metrics(outputs, slice(i, i + 1), n) for i, n in enumerate(lengths)]
            per_item = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        per_item = {k: v.double().cpu().tolist() for k, v in per_item.items()}
        for i, item_id in enumerate(batch.id):
            self.test_rows.append({"snt_id": item_id, **{k: v[i] for k, v in per_item.items()}})

    def save_test_outputs(self, batch, outputs):
        """Writes mixture, references and estimates of the first test items.

        Files go to ``<output_folder>/audio/<id>_{mix,s1,s1_hat,...}.wav``
        (``save_audio`` and ``n_audio_to_save`` in the yaml), and for the first
        ``n_figures_to_save`` items a spectrogram figure of the mixture and the
        estimates, ``<id>_spectrograms.png``.
        """
        n_to_save = getattr(self.hparams, "n_audio_to_save", math.inf)
        if not getattr(self.hparams, "save_audio", False) or not if_main_process() or self.n_saved >= n_to_save:
            return
        folder = os.path.join(self.hparams.output_folder, "audio")
        os.makedirs(folder, exist_ok=True)
        est = self.speaker_estimates(outputs).float().cpu()
        ref = outputs["targets"].float().cpu()
        mix = outputs["mix"].float().cpu()
        for i, item_id in enumerate(batch.id):
            if self.n_saved >= n_to_save:
                return
            signals = {"mix": mix[i]}
            for s in range(est.shape[-1]):
                signals[f"s{s + 1}"] = ref[i, :, s]
                signals[f"s{s + 1}_hat"] = est[i, :, s]
            signals.update(self.extra_test_signals(outputs, i))
            for name, signal in signals.items():
                peak_normalised = 0.9 * signal / signal.abs().max().clamp(min=1e-8)
                path = os.path.join(folder, f"{item_id}_{name}.wav")
                sb.dataio.dataio.write_audio(path, peak_normalised, self.hparams.sample_rate)
            if self.n_saved < getattr(self.hparams, "n_figures_to_save", 0):
                estimated = {k: v for k, v in signals.items() if k == "mix" or k.endswith("_hat")}
                spectrogram_figure(
                    os.path.join(folder, f"{item_id}_spectrograms.png"), estimated, self.hparams.sample_rate
                )
            self.n_saved += 1

    def extra_test_signals(self, outputs, index):
        """More signals to save beside the speakers for batch item ``index`` (NASS: the noise)."""
        return {}

    def write_test_results(self):
        """Writes ``test_results.csv`` and ``test_summary.{json,md}``; returns the means."""
        rows = self.test_rows
        if not rows:
            raise RuntimeError("The test set is empty: no test results to write.")
        names = [k for k in rows[0] if k != "snt_id"]
        means = {m: sum(r[m] for r in rows) / len(rows) for m in names}
        if if_main_process():
            folder = self.hparams.output_folder
            table_rows = [
                {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()}
                for r in [*rows, {"snt_id": "avg", **means}]
            ]
            write_csv_atomic(os.path.join(folder, "test_results.csv"), ["snt_id", *names], table_rows)
            summary = {"n_mixtures": len(rows), **{m: round(v, 4) for m, v in means.items()}}
            write_text_atomic(os.path.join(folder, "test_summary.json"), json.dumps(summary, indent=2) + "\n")
            table = "| metric | mean |\n|---|---|\n" + "".join(f"| {m} | {v:.2f} |\n" for m, v in means.items())
            text = f"Test set: {len(rows)} mixtures (SI-SNR and SDR in dB)\n\n{table}"
            write_text_atomic(os.path.join(folder, "test_summary.md"), text)
            logger.info("Test results written to %s", os.path.join(folder, "test_results.csv"))
        return means


def _fit_length(est, length):
    """Pads with zeros or trims ``[B, T', n]`` to ``T' = length``."""
    if est.shape[1] < length:
        return F.pad(est, (0, 0, 0, length - est.shape[1]))
    return est[:, :length]


def _score(est, ref, mix):
    """``[B, 4]`` per-item means of SI-SNR, SI-SNRi, SDR, SDRi (dB)."""
    mix_rep = mix.unsqueeze(-1).expand_as(ref)
    sisnr, sisnr_mix = si_snr(est, ref), si_snr(mix_rep, ref)
    sdr_est, sdr_mix = sdr(est, ref), sdr(mix_rep, ref)
    return torch.stack(
        [sisnr.mean(-1), (sisnr - sisnr_mix).mean(-1), sdr_est.mean(-1), (sdr_est - sdr_mix).mean(-1)], dim=-1
    ).cpu()
