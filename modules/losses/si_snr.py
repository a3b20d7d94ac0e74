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

import torch

from modules.losses.common import check_signals, output_dtype
from modules.losses.matching import MAX_EXHAUSTIVE_SRC, best_permutation, matched_scores

__all__ = [
    "apply_perm",
    "centered_f64",
    "mask_time",
    "pairwise_si_snr",
    "pit_si_snr_loss",
    "si_snr_from_stats",
]


def centered_f64(signals: torch.Tensor) -> torch.Tensor:
    """Float64 ``[B, n, T]`` contiguous copy of ``[B, T, n]`` signals, zero-mean.

    Time is made the contiguous axis so that the reductions over it and the
    skinny batched matrix products of :class:`_CenteredStats` run on
    unit-stride rows.
    """
    signals = signals.transpose(1, 2).to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    return signals.sub_(signals.mean(dim=-1, keepdim=True))


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


class _CenteredStats(torch.autograd.Function):
    """Zero-mean float64 statistics of two ``[B, T, n]`` signal sets.

    Returns ``dot`` ``[B, n_est, n_tgt]`` (cross inner products),
    ``est_energy`` ``[B, n_est]`` and ``tgt_energy`` ``[B, n_tgt]``. The
    hand-written backward needs one batched matrix product and one fused
    multiply-add per input instead of autograd's chain of elementwise
    float64 ops over the signals. Its gradient is a combination of
    zero-mean signals, hence already zero-mean, so the backward of the
    mean removal is the identity.
    """

    @staticmethod
    def forward(ctx, estimates, targets):
        """Compute the statistics in float64."""
        est = centered_f64(estimates)  # [B, n_est, T]
        tgt = centered_f64(targets)  # [B, n_tgt, T]
        dot = torch.bmm(est, tgt.transpose(1, 2))
        est_energy = torch.linalg.vector_norm(est, dim=-1).square()
        tgt_energy = torch.linalg.vector_norm(tgt, dim=-1).square()
        ctx.save_for_backward(est, tgt)
        ctx.dtypes = (estimates.dtype, targets.dtype)
        return dot, est_energy, tgt_energy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_dot, grad_est_energy, grad_tgt_energy):
        """Gradients with respect to the (uncentred) input signals."""
        est, tgt = ctx.saved_tensors
        grad_est = grad_tgt = None
        if ctx.needs_input_grad[0]:
            grad_est = torch.bmm(grad_dot, tgt)  # [B, n_est, T]
            grad_est.addcmul_(est, (2.0 * grad_est_energy).unsqueeze(-1))
            grad_est = grad_est.transpose(1, 2).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grad_tgt = torch.bmm(grad_dot.transpose(1, 2), est)  # [B, n_tgt, T]
            grad_tgt.addcmul_(tgt, (2.0 * grad_tgt_energy).unsqueeze(-1))
            grad_tgt = grad_tgt.transpose(1, 2).to(ctx.dtypes[1])
        return grad_est, grad_tgt


def mask_time(signals: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each item centred on its own ``lengths[b]`` samples, zero beyond them.

    Arguments
    ---------
    signals : torch.Tensor
        ``[batch, time, n]``.
    lengths : torch.Tensor or None
        ``[batch]`` numbers of valid samples (``None``: all valid, the signals
        are returned unchanged).

    Returns
    -------
    torch.Tensor
        ``[batch, time, n]``; over the full time axis every source then sums to
        zero, so the float64 centring of :func:`pairwise_si_snr` leaves it as it
        is and the statistics are those of the unpadded item.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [7.0]]])
    >>> mask_time(x, torch.tensor([2]))[0, :, 0].tolist() == [-1.0, 1.0, 0.0]
    True
    """
    if lengths is None:
        return signals
    lengths = lengths.to(signals.device)
    valid = (torch.arange(signals.shape[1], device=signals.device) < lengths[:, None]).unsqueeze(-1)
    kept = signals * valid
    mean = kept.sum(dim=1, keepdim=True) / lengths.clamp(min=1).to(kept.dtype)[:, None, None]
    return (kept - mean) * valid


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
        (see :func:`mask_time`).

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
    in float64 to far beyond 80 dB). The backward pass is hand-written
    (one batched matrix product per input); gradients flow to both
    ``estimates`` and ``targets``.

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
    estimates, targets = mask_time(estimates, lengths), mask_time(targets, lengths)
    dot, est_energy, tgt_energy = _CenteredStats.apply(estimates, targets)
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
