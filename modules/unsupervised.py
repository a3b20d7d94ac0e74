"""Unsupervised separation from mixtures only: MixIT and MixCycle (the DIP paper's Fig. 3 baselines).

Both train a separator on mixtures only (no source references are read in
training); validation and test score it against references, as their authors do.

* **MixIT** (Wisdom et al., NeurIPS 2020): two training mixtures are summed
  into a mixture of mixtures (MoM); the separator's ``M`` outputs (``2 x`` the
  speakers) are scored against the two mixtures under the best of the ``2^M``
  assignments (:func:`modules.losses.mixit_loss`, thresholded SNR, 30 dB).
* **MixCycle** (Karamatli and Kirbiz, "MixCycle: Unsupervised Speech
  Separation via Cyclic Mixture Permutation Invariant Training", IEEE SPL
  2022; code github.com/ertug/MixCycle, read, not copied): first
  ``mixpit_epochs`` epochs of MixPIT (the MoM separated into as many outputs
  as speakers, PIT against the two mixtures: :func:`modules.losses.snr_pit_loss`),
  then cyclic mixture PIT: the model separates each training mixture without
  gradient, the estimates are remixed across pairs of mixtures
  (:func:`mixcycle_remix`), the model separates the remixed mixtures and is
  trained, with PIT over the thresholded SNR, to return the first pass's
  estimates that made them.

Stated departures (also in ``recipes/Vox2Mix/unsupervised/README.md``):

* Pairs are formed inside a batch (items 0+1, 2+3, ...): a MixIT / MixPIT
  update sees ``batch_size / 2`` MoMs (the MixCycle code draws two batches and
  pairs them item by item, so ``batch_size`` MoMs); the yamls double the
  batch or accumulate to match. An odd batch leaves its last mixture out of
  the MoMs; in the MixCycle step the last item of an odd batch borrows its
  first source from the item before it.
* The MixIT loss sums the two mixtures' losses (the MixIT paper); the MixCycle
  code averages them (a factor 2, no effect on Adam's steps but through clipping).
* A training batch of one mixture (upstream's ``--debug`` runs) has nothing
  to pair: it is left out of the update, with a warning.
* Validation and test group a MixIT model's ``M`` outputs into the speakers by
  the best assignment to the references (MixIT's oracle remixing, the MixCycle
  code's ``sisnri_mixit_oracle``), then score as a two-output separator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import speechbrain as sb
import torch

from modules.brain import SeparationBrain
from modules.data import build_datasets
from modules.losses import mixit_assignments, mixit_loss, snr_pit_loss

__all__ = [
    "UNSUPERVISED_METHODS",
    "UnsupervisedBrain",
    "build_unsupervised_datasets",
    "group_outputs",
    "mixcycle_remix",
    "mixture_of_mixtures",
    "partner_indices",
]

logger = logging.getLogger(__name__)

UNSUPERVISED_METHODS = ("mixit", "mixcycle")


def partner_indices(batch_size, device=None):
    """The item each item is paired with: 0 <-> 1, 2 <-> 3, ...; the last of an odd batch takes the one before.

    Example
    -------
    >>> partner_indices(4).tolist(), partner_indices(5).tolist()
    ([1, 0, 3, 2], [1, 0, 3, 2, 3])
    """
    if batch_size < 2:
        raise ValueError(f"pairing mixtures needs at least 2 mixtures per batch, got {batch_size}")
    index = torch.arange(batch_size, device=device)
    partner = index ^ 1
    return torch.where(partner < batch_size, partner, index - 1)


def _masked(signals, lengths):
    """``[B, T, ...]`` with every sample past an item's length set to 0."""
    valid = torch.arange(signals.shape[1], device=signals.device)[None, :] < lengths[:, None]
    return signals * valid.reshape(*valid.shape, *([1] * (signals.ndim - 2)))


def mixture_of_mixtures(mix, lengths):
    """MoMs of the pairs (0, 1), (2, 3), ...: ``(mom [B//2, T], mixtures [B//2, T, 2], lengths [B//2])``.

    An odd batch leaves its last mixture out.

    Example
    -------
    >>> mix = torch.arange(12.0).reshape(3, 4)
    >>> mom, pairs, lengths = mixture_of_mixtures(mix, torch.tensor([4, 2, 4]))
    >>> mom.tolist(), pairs.shape, lengths.tolist()
    ([[4.0, 6.0, 2.0, 3.0]], torch.Size([1, 4, 2]), [4])
    """
    if mix.shape[0] < 2:
        raise ValueError(f"a mixture of mixtures needs at least 2 mixtures per batch, got {mix.shape[0]}")
    n = mix.shape[0] // 2 * 2
    mix = _masked(mix[:n], lengths[:n])
    pairs = torch.stack([mix[0::2], mix[1::2]], dim=-1)
    return pairs.sum(-1), pairs, torch.maximum(lengths[0:n:2], lengths[1:n:2])


def mixcycle_remix(estimates, lengths=None, generator=None):
    """MixCycle's remix step: new mixtures from the estimates of a batch of mixtures, and their parts.

    Each item's two estimates are swapped with probability 1/2; then the
    first estimate of each item is exchanged with that of its partner
    (:func:`partner_indices`): item ``i`` becomes ``first(partner(i)) +
    second(i)``, and those two signals are its targets. (The MixCycle code
    does the same over the flattened sources of pairs of consecutive items.)

    Arguments
    ---------
    estimates : torch.Tensor
        ``[B, T, 2]``: the first pass's estimates (detached by the caller).
    lengths : torch.Tensor, optional
        ``[B]``: samples past an item's length are zeroed before remixing;
        the new item's length is the larger of the two.
    generator : torch.Generator, optional
        Draws the swaps.

    Returns
    -------
    remixed : torch.Tensor
        ``[B, T]``: the new mixtures (the sums of ``targets``).
    targets : torch.Tensor
        ``[B, T, 2]``.
    lengths : torch.Tensor or None
        ``[B]``.

    Example
    -------
    >>> est = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[:, None, :]  # [2, 1, 2]
    >>> remixed, targets, _ = mixcycle_remix(est)
    >>> sorted(remixed.flatten().tolist()) in ([4.0, 6.0], [5.0, 5.0], [3.0, 7.0])
    True
    """
    if estimates.ndim != 3 or estimates.shape[-1] != 2:
        raise ValueError(
            f"MixCycle remixes two estimates per mixture: expected [B, T, 2], got {tuple(estimates.shape)}"
        )
    batch = estimates.shape[0]
    partner = partner_indices(batch, estimates.device)
    if lengths is not None:
        estimates = _masked(estimates, lengths)
        lengths = torch.maximum(lengths, lengths[partner])
    draw = torch.rand(batch, generator=generator, device=generator.device if generator else estimates.device)
    swap = (draw.to(estimates.device) < 0.5)[:, None, None]
    shuffled = torch.where(swap, estimates.flip(-1), estimates)
    targets = torch.stack([shuffled[partner, :, 0], shuffled[:, :, 1]], dim=-1)
    return targets.sum(-1), targets, lengths


def group_outputs(estimates, references, lengths=None):
    """A MixIT model's ``M`` outputs summed into the references' ``C`` groups by their best assignment.

    ``[B, T, M]`` -> ``[B, T, C]``: MixIT's oracle remixing of the outputs to
    the reference sources. Every output goes to one reference, every
    reference gets at least one output, and the assignment with the highest
    total SI-SNR is kept (the MixCycle code's ``sisnri_mixit_oracle`` also
    picks by SI-SNR). All assignments are scored at once from float64 Gram
    statistics of the zero-mean signals.

    Example
    -------
    >>> s = torch.randn(1, 500, 4, dtype=torch.float64)
    >>> refs = torch.stack([s[..., 1] + s[..., 2], s[..., 0] + s[..., 3]], dim=-1)
    >>> torch.allclose(group_outputs(s, refs), refs)
    True
    """
    n_out, n_ref = estimates.shape[-1], references.shape[-1]
    if n_out < n_ref:
        raise ValueError(f"grouping needs at least as many outputs as references, got {n_out} and {n_ref}")
    A = mixit_assignments(n_out, n_ref, estimates.device)
    A = A[(A.sum(-1) > 0).all(-1)]  # no empty group
    with torch.no_grad():
        est = estimates.to(torch.float64)
        ref = references.to(torch.float64)
        if lengths is not None:
            est, ref = _masked(est, lengths), _masked(ref, lengths)
            count = lengths.to(est.device, torch.float64).clamp(min=1)[:, None, None]
        else:
            count = torch.full((est.shape[0], 1, 1), float(est.shape[1]), dtype=torch.float64, device=est.device)
        est = est - est.sum(1, keepdim=True) / count
        ref = ref - ref.sum(1, keepdim=True) / count
        if lengths is not None:
            est, ref = _masked(est, lengths), _masked(ref, lengths)
        gram = torch.einsum("btm,btn->bmn", est, est)
        cross = torch.einsum("btc,btm->bcm", ref, est)
        energy = ref.square().sum(1)[:, None, :]  # [B, 1, C]
        dot = torch.einsum("pcm,bcm->bpc", A, cross)
        power = torch.einsum("pcm,bmn,pcn->bpc", A, gram, A)
        target = dot.square() / energy.clamp(min=1e-20)  # ||projection||^2
        si_snr = 10 * torch.log10(target.clamp(min=1e-20) / (power - target).clamp(min=1e-20))
        best = si_snr.nan_to_num(nan=-1e9).sum(-1).argmax(1)
    return torch.einsum("btm,bcm->btc", estimates, A[best].to(estimates.dtype))


def build_unsupervised_datasets(hparams):
    """The recipe's datasets (:func:`modules.data.build_datasets`), the training set read as mixtures only."""
    train, valid, test = build_datasets(hparams)
    train.set_output_keys(["id", "mix_sig"])
    return train, valid, test


@dataclass
class UnsupervisedOutputs:
    """A training step's separator outputs and what they are scored against.

    Attributes
    ----------
    estimates : torch.Tensor
        ``[B', T, n_out]``.
    references : torch.Tensor
        ``[B', T, 2]``: the two mixtures of each MoM (MixIT, MixPIT) or the
        first pass's remixed estimates (MixCycle).
    lengths : torch.Tensor
        ``[B']``.
    loss : str
        ``"mixit"`` (best of the 2^M assignments) or ``"pit"`` (permutations).
    """

    estimates: torch.Tensor
    references: torch.Tensor
    lengths: torch.Tensor
    loss: str


class UnsupervisedBrain(SeparationBrain):
    """MixIT or MixCycle training of the ``separator`` on mixtures only; supervised validation and test.

    Hyperparameters: ``unsupervised_method`` (``mixit`` or ``mixcycle``),
    ``snr_max`` (the thresholded SNR's cap, 30 dB), ``mixpit_epochs``
    (MixCycle: epochs of MixPIT before the cycle, 50 in the authors' reference
    run), ``seed``; the chassis' ``limit_training_signal_len`` /
    ``training_signal_len`` crops. See the module docstring.
    """

    dataset_builder = staticmethod(build_unsupervised_datasets)

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        method = self._hp("unsupervised_method", None)
        if method not in UNSUPERVISED_METHODS:
            raise ValueError(f"unsupervised_method must be one of {UNSUPERVISED_METHODS}, got {method!r}")
        self.method = method
        self._epoch = 1

    @property
    def cycling(self):
        """Whether this epoch trains with MixCycle's cycle (after its MixPIT epochs)."""
        return self.method == "mixcycle" and self._epoch > self.hparams.mixpit_epochs

    def on_stage_start(self, stage, epoch=None):
        """Records the epoch (MixCycle switches from MixPIT to the cycle after ``mixpit_epochs``)."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN and epoch is not None:
            self._epoch = int(epoch)
            if self.method == "mixcycle":
                logger.info("Epoch %d: %s", self._epoch, "MixCycle's cycle" if self.cycling else "MixPIT")

    def compute_forward(self, batch, stage):
        """Training: MoMs (MixIT, MixPIT) or the MixCycle cycle; otherwise the chassis' forward, outputs grouped."""
        if stage != sb.Stage.TRAIN:
            outputs = super().compute_forward(batch, stage)
            if outputs.targets is not None and outputs.estimates.shape[-1] > outputs.targets.shape[-1]:
                grouped = group_outputs(outputs.estimates, outputs.targets, outputs.lengths)
                outputs = replace(outputs, estimates=grouped)
            return outputs
        batch = self.augment(batch.to(self.device))
        if batch.mix.shape[0] < 2:  # nothing to pair (upstream's --debug runs batches of one): no update
            estimates, _ = self.separate(batch.mix)
            return UnsupervisedOutputs(estimates, None, batch.lengths, "none")
        if self.cycling:
            with torch.no_grad():
                first, _ = self.separate(batch.mix)
                remixed, targets, lengths = mixcycle_remix(first.detach(), batch.lengths)
            estimates, _ = self.separate(remixed)
            return UnsupervisedOutputs(estimates, targets, lengths, "pit")
        mom, mixtures, lengths = mixture_of_mixtures(batch.mix, batch.lengths)
        estimates, _ = self.separate(mom)
        return UnsupervisedOutputs(estimates, mixtures, lengths, "mixit" if self.method == "mixit" else "pit")

    def compute_objectives(self, outputs, batch, stage):
        """MixIT's loss or the SNR PIT in training (mean over the items); the chassis' otherwise."""
        if stage != sb.Stage.TRAIN:
            return super().compute_objectives(outputs, batch, stage)
        if outputs.loss == "none":
            logger.warning("Training batch %s has one mixture: nothing to pair, no update from it", batch.ids)
            self._count_kept(outputs.estimates.new_zeros(()))
            return (outputs.estimates * 0).sum()
        loss_fn = mixit_loss if outputs.loss == "mixit" else snr_pit_loss
        per_item, _ = loss_fn(
            outputs.estimates, outputs.references, snr_max=self._hp("snr_max", 30.0), lengths=outputs.lengths
        )
        self._last_train = (None, per_item)  # the nonfinite-loss diagnosis names the batch
        self._count_kept(per_item.new_tensor(float(per_item.shape[0])))
        return per_item.mean()

    def _count_kept(self, kept):
        """Items that count in this accumulation window (a window of single-mixture batches does not step)."""
        self._kept_items = kept if self._kept_items is None else self._kept_items + kept
