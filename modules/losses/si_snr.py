"""Scale-invariant SNR as a training loss: the pairwise matrix and uPIT.

All public functions take signals laid out as ``[batch, time, n_src]``
(the SpeechBrain separation convention).

Numerics
--------
Energies and cross dot products are accumulated in float64 (inputs are
cast inside), so the scale-invariant SNR is read correctly even for very
good estimates (an 80 dB estimate given as float32 is read to well within
0.01 dB), and the functions are safe to call inside a ``torch.autocast``
region: autocast never downcasts float64 tensors. Outputs are float32, or
float64 when the estimates are float64.

Synchronisation
---------------
The permutation search is :func:`modules.losses.matching.best_permutation`:
on the device for up to ``max_exhaustive_src`` sources (7 by default), on the
host (Hungarian) above, the only place where these functions synchronise.

Padding
-------
Items of one batch may differ in length (``lengths``) and in their number of
sources (``source_mask``): padded samples are excluded from the statistics
(each item is centred and scored on its own samples only) and padded sources
from the matching and the mean, so an item scores the same inside a padded
batch as alone.
"""

from __future__ import annotations

import typing

import torch

from modules.losses.common import autocast_off, check_signals, output_dtype
from modules.losses.matching import MAX_EXHAUSTIVE_SRC, best_permutation, matched_scores

__all__ = [
    "SiSnrStats",
    "apply_perm",
    "centered_f64",
    "centered_stats",
    "pairwise_si_snr",
    "pit_si_snr_loss",
    "si_snr_from_stats",
]


class SiSnrStats(typing.NamedTuple):
    """What :func:`centered_stats` returns (all float64)."""

    cross: torch.Tensor  # [B, n_x, n_y] inner products (paired: [B, n])
    x_energy: torch.Tensor  # [B, n_x]
    y_energy: torch.Tensor  # [B, n_y]


def centered_f64(signals: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Float64 ``[B, n, T]`` copy of ``[B, T, n]`` signals, zero-mean over each item's valid samples.

    With ``lengths``, samples at and beyond ``lengths[b]`` are zero and the
    mean is that of the first ``lengths[b]`` samples. Differentiable (plain
    autograd).
    """
    signals = signals.transpose(1, 2).to(torch.float64, memory_format=torch.contiguous_format)
    if lengths is None:
        return signals - signals.mean(dim=-1, keepdim=True)
    valid = torch.arange(signals.shape[-1], device=signals.device) < lengths.to(signals.device)[:, None]
    valid = valid[:, None, :].to(torch.float64)  # [B, 1, T]
    kept = signals * valid
    mean = kept.sum(dim=-1, keepdim=True) / valid.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return (kept - mean) * valid


def centered_stats(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    paired: bool = False,
) -> SiSnrStats:
    """The SI-SNR statistics kernel: zero-mean float64 inner products and energies.

    Every SI-SNR of the collection (:func:`pairwise_si_snr` and uPIT, SADDEL's
    one-and-rest PIT in :mod:`modules.losses.orpit`, the metric
    :func:`modules.metrics.si_snr`) is read from these statistics by
    :func:`si_snr_from_stats`.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, n_x]`` signals (any floating dtype).
    y : torch.Tensor, optional
        ``[batch, time, n_y]``; ``None``: ``x`` against itself (the Gram matrix,
        centred once).
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item: later samples count nowhere and
        each item is centred on its own samples (:func:`centered_f64`).
    paired : bool
        ``True``: only ``<x_i, y_i>`` (``[batch, n]``, ``n_x == n_y``), not
        every pair.

    Returns
    -------
    SiSnrStats
        ``cross`` ``[batch, n_x, n_y]`` (paired: ``[batch, n]``), ``x_energy``
        ``[batch, n_x]``, ``y_energy`` ``[batch, n_y]``, float64.

    Notes
    -----
    The signals are cast to float64 before anything else (products of float32
    values are exact in float64: the only rounding is float64 accumulation),
    and autocast is disabled inside, so the statistics are the same under
    bf16/fp16 autocast. The gradient is autograd's (a batched matrix product
    per input and a few elementwise float64 ops): under 1 % of a full-size
    training step (``tests/benchmarks/bench_si_snr_step.py``),
    so no backward is written by hand.

    Example
    -------
    >>> x = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 1.0]]])  # one item, 3 samples, 2 signals
    >>> stats = centered_stats(x)
    >>> stats.cross.tolist(), stats.x_energy.tolist()
    ([[[8.0, 2.0], [2.0, 2.0]]], [[8.0, 2.0]])
    >>> centered_stats(x, lengths=torch.tensor([2])).x_energy.tolist()
    [[2.0, 2.0]]
    """
    with autocast_off(x.device):
        xc = centered_f64(x, lengths)  # [B, n_x, T]
        yc = xc if y is None else centered_f64(y, lengths)
        x_energy = xc.square().sum(dim=-1)
        y_energy = x_energy if y is None else yc.square().sum(dim=-1)
        if paired:
            cross = (xc * yc).sum(dim=-1)
        else:
            cross = torch.bmm(xc, yc.transpose(1, 2))
    return SiSnrStats(cross, x_energy, y_energy)


def si_snr_from_stats(
    dot: torch.Tensor,
    est_energy: torch.Tensor,
    tgt_energy: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """SI-SNR in dB from zero-mean inner products and energies.

    With ``alpha = <est, tgt> / (||tgt||^2 + eps)`` the target component is
    ``alpha * tgt`` and the noise energy is
    ``||est||^2 - 2 alpha <est, tgt> + alpha^2 ||tgt||^2`` (clamped at 0),
    which is the same quantity, ``eps`` placement included, as
    ``speechbrain.nnet.losses.cal_si_snr``, without forming the noise
    signal. Arguments broadcast against each other and should be float64.
    """
    alpha = dot / (tgt_energy + eps)
    target_energy = alpha.square() * tgt_energy
    noise_energy = (est_energy - 2.0 * alpha * dot + target_energy).clamp_min(0.0)
    return 10.0 * torch.log10(target_energy / (noise_energy + eps) + eps)


def pairwise_si_snr(
    estimates: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 1e-8,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """SI-SNR in dB of every estimate against every target.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, ``[batch, time, n_est]``.
    targets : torch.Tensor
        Target sources, ``[batch, time, n_tgt]``.
    eps : float
        Small constant guarding divisions and the logarithm.
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item; samples beyond them are ignored
        (see :func:`centered_f64`).

    Returns
    -------
    torch.Tensor
        ``[batch, n_est, n_tgt]``; entry ``[b, i, j]`` is the SI-SNR of
        ``estimates[b, :, i]`` with respect to ``targets[b, :, j]``.
        float32 (float64 if ``estimates`` is float64).

    Notes
    -----
    Signals are made zero-mean and all statistics are computed in float64
    in one batched pass: a single batched matrix product for the cross dot
    products and vector norms for the energies; no ``[B, T, n, n]`` tensor
    is formed. The noise energy is obtained from these statistics (exact
    in float64 to far beyond 80 dB). The statistics are those of the one
    kernel, :func:`centered_stats`, differentiated by autograd; gradients
    flow to both ``estimates`` and ``targets``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> targets = torch.randn(2, 8000, 3)
    >>> estimates = targets + 0.1 * torch.randn(2, 8000, 3)
    >>> pw = pairwise_si_snr(estimates, targets)
    >>> pw.shape
    torch.Size([2, 3, 3])
    >>> bool((pw.diagonal(dim1=1, dim2=2) > 19).all())
    True
    """
    check_signals(estimates, targets)
    dot, est_energy, tgt_energy = centered_stats(estimates, targets, lengths)
    si_snr = si_snr_from_stats(dot, est_energy.unsqueeze(2), tgt_energy.unsqueeze(1), eps)
    return si_snr.to(output_dtype(estimates))


def apply_perm(estimates: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the sources of ``estimates`` to match the targets.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, n_src]``.
    perm : torch.Tensor
        ``[batch, k]`` long, as returned by :func:`pit_si_snr_loss`
        (``k <= n_src``: fewer targets than estimates).

    Returns
    -------
    torch.Tensor
        ``[batch, time, k]`` with
        ``output[b, :, j] == estimates[b, :, perm[b, j]]``, so that source
        ``j`` of the output is aligned with target ``j``.

    Example
    -------
    >>> est = torch.arange(12.0).reshape(1, 4, 3)
    >>> apply_perm(est, torch.tensor([[2, 0, 1]]))[0, 0]
    tensor([2., 0., 1.])
    """
    bad_perm = perm.ndim != 2 or perm.shape[0] != estimates.shape[0] or perm.shape[1] > estimates.shape[-1]
    if estimates.ndim != 3 or bad_perm:
        raise ValueError(
            "expected estimates [batch, time, n_src] and perm [batch, k <= n_src], "
            f"got {tuple(estimates.shape)} and {tuple(perm.shape)}"
        )
    index = perm.to(device=estimates.device, dtype=torch.long)
    index = index.unsqueeze(1).expand(-1, estimates.shape[1], -1)
    return torch.gather(estimates, 2, index)


def pit_si_snr_loss(
    estimates: torch.Tensor,
    targets: torch.Tensor,
    eps: float = 1e-8,
    max_exhaustive_src: int = MAX_EXHAUSTIVE_SRC,
    *,
    source_mask: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant negative SI-SNR.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, ``[batch, time, n_src]``.
    targets : torch.Tensor
        Target sources, ``[batch, time, n_tgt]``, ``n_tgt <= n_src`` (the
        extra estimates stay unmatched).
    eps : float
        Small constant, see :func:`pairwise_si_snr`.
    max_exhaustive_src : int
        Up to this many sources all ``n_src!`` permutations are scored in
        one batched operation on the device (no host synchronisation);
        above it the exact Hungarian algorithm runs on the host
        (:func:`modules.losses.matching.best_permutation`).
    source_mask : torch.Tensor, optional
        ``[batch, n_tgt]`` bool: ``False`` marks padded targets (an item with
        fewer sources than the batch's widest); they are left out of the
        matching and of the mean. An item with no real target has loss 0.
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item (padded batches).

    Returns
    -------
    loss : torch.Tensor
        ``[batch]``: minus the SI-SNR (dB) averaged over the (real) targets
        under the best assignment. Differentiable with respect to ``estimates``.
    perm : torch.Tensor
        ``[batch, n_tgt]`` long: ``estimates[b, :, perm[b, j]]`` is the
        estimate assigned to ``targets[b, :, j]`` (see :func:`apply_perm`).

    Raises
    ------
    ValueError
        If the inputs are not 3-D, differ in batch or time, or there are
        fewer estimates than targets.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> targets = torch.randn(2, 8000, 3)
    >>> estimates = targets[:, :, [2, 0, 1]] + 0.01 * torch.randn(2, 8000, 3)
    >>> loss, perm = pit_si_snr_loss(estimates, targets)
    >>> loss.shape
    torch.Size([2])
    >>> perm
    tensor([[1, 2, 0],
            [1, 2, 0]])
    >>> aligned = apply_perm(estimates, perm)
    >>> bool((aligned - targets).abs().max() < 0.1)
    True
    """
    check_signals(estimates, targets)
    if estimates.shape[-1] < targets.shape[-1]:
        raise ValueError(
            f"need at least as many estimates as targets, got {tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    pairwise = pairwise_si_snr(estimates, targets, eps=eps, lengths=lengths)  # [B, n_est, n_tgt]
    perm = best_permutation(pairwise, source_mask, max_exhaustive=max_exhaustive_src)
    matched = matched_scores(pairwise, perm)  # [B, n_tgt]
    if source_mask is None:
        return -matched.mean(dim=-1), perm
    mask = source_mask.to(device=matched.device, dtype=torch.bool)
    total = torch.where(mask, matched, torch.zeros_like(matched)).sum(dim=-1)
    return -total / mask.sum(dim=-1).clamp(min=1).to(matched.dtype), perm
