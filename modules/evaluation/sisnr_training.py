"""Training the blind SI-SNR estimator on this collection's own separations, with their oracle SI-SNR.

The recipe ``recipes/REALM/sisnr_estimator`` (``run_recipe(SISNREstimatorBrain, ...)``)
trains :class:`modules.evaluation.sisnr_estimator.BlindSISNREstimator` the way
SpeechBrain's REAL-M recipe trains it, with our separators in place of its pool
of nine pretrained SepFormer / DPRNN / Conv-TasNet models:

* every batch is separated by one separator drawn at random from
  ``separators`` (trained runs or exported folders, loaded with
  :func:`modules.inference.load_model`, frozen, never checkpointed); in
  validation and test every separator is used in turn, round robin;
* each separated stream is matched to its reference by the best permutation of
  SI-SNR (:func:`modules.losses.pairwise_si_snr`,
  :func:`modules.losses.best_permutation`), which gives its oracle SI-SNR;
* the loss is L1 between the estimator's [0, 1] output and the oracle SI-SNR
  clipped to [0, 10] dB and scaled to [0, 1]; validation reports the mean
  absolute error in dB against the unclipped oracle (``error``, the
  checkpoints' ``best_key``, lower is better), as upstream.

Departures from the upstream recipe: the separators are the user's runs, not
nine fixed SpeechBrain models; no reverberation or WHAM! noise is added on the
fly (train it on noisy manifests, e.g. WHAM! ``sep_noisy``, for noisy inputs);
the oracle assignment is the joint best permutation (upstream matches the
first estimate and gives the second the other reference, the same for two
speakers); mixture-only items are skipped (they have no oracle).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import speechbrain as sb
import torch

from modules.brain import SeparationBrain
from modules.data import SeparationBatch
from modules.evaluation.sisnr_estimator import compress_snr
from modules.losses import apply_perm, best_permutation, pairwise_si_snr
from modules.models.separator import MaskingSeparator

__all__ = ["SISNREstimatorBrain", "untrained_separator"]

logger = logging.getLogger(__name__)


class _RandomSeparator(torch.nn.Module):
    """A separator module with the ``separate_batch`` of :class:`modules.inference.Model` (see
    :func:`untrained_separator`)."""

    def __init__(self, separator):
        super().__init__()
        self.separator = separator

    def separate_batch(self, mix):
        """``mix [B, T]`` -> ``(speakers [B, T, C], None)``."""
        return self.separator(mix)[0], None


def untrained_separator(n_src, channels=64):
    """A small Conv-TasNet with random weights, for a ``--debug`` run that has no trained separator.

    Arguments
    ---------
    n_src : int
        Number of output streams (the batch's sources).
    channels : int
        Encoder filters (the bottleneck and hidden widths follow).

    Returns
    -------
    torch.nn.Module
        Frozen (evaluation mode), with ``separate_batch(mix)`` -> ``(speakers [B, T, n_src], None)``.

    Example
    -------
    >>> model = untrained_separator(2, channels=8)
    >>> speakers, noise = model.separate_batch(torch.randn(3, 800))
    >>> speakers.shape, noise
    (torch.Size([3, 800, 2]), None)
    """
    from speechbrain.lobes.models.conv_tasnet import MaskNet
    from speechbrain.lobes.models.dual_path import Decoder, Encoder

    separator = MaskingSeparator(
        Encoder(kernel_size=16, out_channels=channels),
        MaskNet(N=channels, B=channels // 2, H=channels, P=3, X=2, R=1, C=n_src),
        Decoder(in_channels=channels, out_channels=1, kernel_size=16, stride=8, bias=False),
    )
    return _RandomSeparator(separator).eval().requires_grad_(False)


@dataclass
class EstimatorOutputs:
    """What :meth:`SISNREstimatorBrain.compute_forward` returns.

    Attributes
    ----------
    oracle : torch.Tensor
        ``[B, n_src]``: the SI-SNR (dB) of each matched stream against its reference.
    compressed : torch.Tensor
        ``[B, n_src]``: the estimator's output on its [0, 1] scale.
    mask : torch.Tensor
        ``[B, n_src]`` bool: which sources are real.
    batch : modules.data.SeparationBatch
        The batch (after augmentation in training).
    estimate : torch.Tensor or None
        ``[B, n_src]``: the estimate in dB, set by ``compute_objectives`` outside training.
    """

    oracle: torch.Tensor
    compressed: torch.Tensor
    mask: torch.Tensor
    batch: SeparationBatch
    estimate: torch.Tensor | None = None


class SISNREstimatorBrain(SeparationBrain):
    """Trains the ``estimator`` module on separations by ``separators`` (see the module docstring).

    Hyperparameters read: ``separators`` (list of run or export folders), ``snr_min``, ``snr_max``, plus the
    shared block's; ``best_key: error`` with ``best_key_mode: min``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._separators = None
        self._turn = 0
        self._error_sum, self._error_count = 0.0, 0

    def separators(self, n_src):
        """The frozen separators, loaded on first use (``n_src``: the batch's sources, for the ``--debug`` one)."""
        if self._separators is None:
            from modules.inference import load_model

            folders = list(self._hp("separators", None) or [])
            if folders:
                self._separators = [load_model(f, device=self.device) for f in folders]
            elif getattr(self, "debug", False):
                logger.warning(
                    "separators: none given; --debug run: the estimator is trained on the data's own mixtures "
                    "separated by an untrained Conv-TasNet (random weights), its scores mean nothing"
                )
                self._separators = [untrained_separator(n_src).to(self.device)]
            else:
                raise ValueError("separators: give the trained runs (or exported models) whose outputs are scored")
        return self._separators

    def compute_forward(self, batch, stage):
        """Separates the batch, matches the streams to the references, estimates each stream's SI-SNR."""
        batch = batch.to(self.device)
        if batch.sources is None or not bool(batch.supervised.all()):
            raise ValueError(f"batch {batch.ids}: the estimator needs reference sources (the oracle SI-SNR)")
        separators = self.separators(batch.sources.shape[-1])
        if stage == sb.Stage.TRAIN:
            batch = self.augment(batch)
            model = random.choice(separators)
        else:
            model = separators[self._turn % len(separators)]
            self._turn += 1
        with torch.no_grad():
            speakers = model.separate_batch(batch.mix)[0].float()
            pairwise = pairwise_si_snr(speakers, batch.sources, lengths=batch.lengths)  # [B, n_est, n_src]
            if pairwise.shape[1] < pairwise.shape[2]:
                raise ValueError(f"the separator gives {pairwise.shape[1]} streams for {pairwise.shape[2]} sources")
            perm = best_permutation(pairwise, target_mask=batch.source_mask)
            oracle = pairwise.gather(1, perm[:, None, :])[:, 0]  # [B, n_src]
            streams = apply_perm(speakers, perm)  # [B, T, n_src]
        n_src = streams.shape[-1]
        separated = streams.permute(0, 2, 1).reshape(-1, streams.shape[1])  # [B * n_src, T]
        mixture = batch.mix.repeat_interleave(n_src, dim=0)
        estimator = self.modules.estimator
        compressed = estimator.compressed(separated, mixture).view(-1, n_src)
        return EstimatorOutputs(oracle=oracle, compressed=compressed, mask=batch.source_mask, batch=batch)

    def compute_objectives(self, outputs, batch, stage):
        """L1 on the [0, 1] scale in training; the mean absolute error in dB otherwise."""
        mask = outputs.mask.to(outputs.compressed.dtype)
        est = self.modules.estimator
        if stage == sb.Stage.TRAIN:
            target = compress_snr(outputs.oracle, est.snr_min, est.snr_max).to(outputs.compressed.dtype)
            return ((outputs.compressed - target).abs() * mask).sum() / mask.sum().clamp(min=1)
        estimate = outputs.compressed * (est.snr_max - est.snr_min) + est.snr_min
        outputs.estimate = estimate
        return ((estimate - outputs.oracle).abs() * mask).sum() / mask.sum().clamp(min=1)

    def evaluate_batch(self, batch, stage):
        """Validation as Brain does; in test, one row per mixture (oracle, estimate, absolute error)."""
        if stage != sb.Stage.TEST:
            return super().evaluate_batch(batch, stage)
        with torch.no_grad():
            outputs = self.compute_forward(batch, stage)
            loss = self.compute_objectives(outputs, batch, stage)
        for i, item_id in enumerate(outputs.batch.ids):
            real = outputs.mask[i].bool()
            oracle, estimate = outputs.oracle[i][real], outputs.estimate[i][real]
            self.test_rows.append(
                {
                    "snt_id": item_id,
                    "scenario": outputs.batch.scenario[i],
                    "scored": 1,
                    "si-snr_oracle": float(oracle.mean()),
                    "si-snr_estimate": float(estimate.mean()),
                    "abs_error": float((estimate - oracle).abs().mean()),
                }
            )
        return loss.detach().cpu()

    def valid_stats(self, stage_loss):
        """``error``: mean absolute error (dB) of the estimates against the oracle SI-SNR."""
        return {"error": float(stage_loss)}
