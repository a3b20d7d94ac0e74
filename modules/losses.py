"""Permutation-invariant SI-SNR training loss.

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
For up to ``max_exhaustive_src`` sources (7 by default) the best
permutation is found on the device by scoring all ``n_src!`` permutations
in one batched operation; nothing is copied to the host. For more sources
the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) is run
on the host, which is the only place where these functions synchronise.
"""

from __future__ import annotations

import functools
import itertools

import torch

__all__ = ["apply_perm", "pairwise_si_snr", "pit_si_snr_loss"]

#: Default largest number of sources whose permutations are enumerated.
MAX_EXHAUSTIVE_SRC = 7


def _check_signals(estimates: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are ``[batch, time, n]`` alike."""
    if estimates.ndim != 3 or targets.ndim != 3:
        raise ValueError(
            "expected estimates and targets of shape [batch, time, n_src], got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    if estimates.shape[:2] != targets.shape[:2]:
        raise ValueError(
            "estimates and targets must agree in batch and time, got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )


def _output_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _centered_f64(signals: torch.Tensor) -> torch.Tensor:
    """Float64 ``[B, n, T]`` contiguous copy of ``[B, T, n]`` signals, zero-mean.

    Time is made the contiguous axis so that the reductions over it and the
    skinny batched matrix products of :class:`_CenteredStats` run on
    unit-stride rows.
    """
    signals = signals.transpose(1, 2).to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    return signals.sub_(signals.mean(dim=-1, keepdim=True))


def _si_snr_from_stats(
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
        est = _centered_f64(estimates)  # [B, n_est, T]
        tgt = _centered_f64(targets)  # [B, n_tgt, T]
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


def pairwise_si_snr(estimates: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SI-SNR in dB of every estimate against every target.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, ``[batch, time, n_est]``.
    targets : torch.Tensor
        Target sources, ``[batch, time, n_tgt]``.
    eps : float
        Small constant guarding divisions and the logarithm.

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
    _check_signals(estimates, targets)
    dot, est_energy, tgt_energy = _CenteredStats.apply(estimates, targets)
    si_snr = _si_snr_from_stats(dot, est_energy.unsqueeze(2), tgt_energy.unsqueeze(1), eps)
    return si_snr.to(_output_dtype(estimates))


@functools.cache
def _permutation_table(n_src: int, device: torch.device) -> torch.Tensor:
    """All permutations of ``range(n_src)``, ``[n_src!, n_src]`` long.

    Rows follow ``itertools.permutations`` order; cached per (n, device).
    """
    table = torch.tensor(list(itertools.permutations(range(n_src))), dtype=torch.long)
    return table.to(device)


def _best_perm_exhaustive(scores: torch.Tensor) -> torch.Tensor:
    """Best assignment of ``scores`` ``[B, n_est, n_tgt]`` by enumeration."""
    n_src = scores.shape[-1]
    table = _permutation_table(n_src, scores.device)  # [K, n]
    columns = torch.arange(n_src, device=scores.device)
    # totals[b, k] = sum_j scores[b, table[k, j], j]
    totals = scores[:, table, columns].sum(dim=-1)  # [B, K]
    return table[totals.argmax(dim=-1)]  # [B, n]


def _best_perm_hungarian(scores: torch.Tensor) -> torch.Tensor:
    """Best assignment of ``scores`` ``[B, n_est, n_tgt]`` (Hungarian).

    Runs ``scipy.optimize.linear_sum_assignment`` on the host: this copies
    the score matrix to the CPU and therefore synchronises with the device.
    """
    from scipy.optimize import linear_sum_assignment

    host = scores.detach().to("cpu", torch.float64).numpy()
    perms = []
    for item in host:
        # Rows are targets (returned sorted), columns the assigned estimates.
        _, est_index = linear_sum_assignment(item.T, maximize=True)
        perms.append(torch.as_tensor(est_index, dtype=torch.long))
    return torch.stack(perms).to(scores.device)


def apply_perm(estimates: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the sources of ``estimates`` to match the targets.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, n_src]``.
    perm : torch.Tensor
        ``[batch, n_src]`` long, as returned by :func:`pit_si_snr_loss`.

    Returns
    -------
    torch.Tensor
        ``[batch, time, n_src]`` with
        ``output[b, :, j] == estimates[b, :, perm[b, j]]``, so that source
        ``j`` of the output is aligned with target ``j``.

    Example
    -------
    >>> est = torch.arange(12.0).reshape(1, 4, 3)
    >>> apply_perm(est, torch.tensor([[2, 0, 1]]))[0, 0]
    tensor([2., 0., 1.])
    """
    if estimates.ndim != 3 or perm.shape != (estimates.shape[0], estimates.shape[2]):
        raise ValueError(
            "expected estimates [batch, time, n_src] and perm [batch, n_src], "
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant negative SI-SNR.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, ``[batch, time, n_src]``.
    targets : torch.Tensor
        Target sources, ``[batch, time, n_src]``.
    eps : float
        Small constant, see :func:`pairwise_si_snr`.
    max_exhaustive_src : int
        Up to this many sources all ``n_src!`` permutations are scored in
        one batched operation on the device (no host synchronisation);
        above it the exact Hungarian algorithm runs on the host.

    Returns
    -------
    loss : torch.Tensor
        ``[batch]``: minus the SI-SNR (dB) averaged over sources under the
        best permutation. Differentiable with respect to ``estimates``.
    perm : torch.Tensor
        ``[batch, n_src]`` long: ``estimates[b, :, perm[b, j]]`` is the
        estimate assigned to ``targets[b, :, j]`` (see :func:`apply_perm`).

    Raises
    ------
    ValueError
        If the inputs are not 3-D or differ in shape.

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
    _check_signals(estimates, targets)
    if estimates.shape != targets.shape:
        raise ValueError(
            "estimates and targets must have the same number of sources, got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    pairwise = pairwise_si_snr(estimates, targets, eps=eps)  # [B, n, n]
    scores = pairwise.detach()
    if estimates.shape[-1] <= max_exhaustive_src:
        perm = _best_perm_exhaustive(scores)
    else:
        perm = _best_perm_hungarian(scores)
    # matched[b, j] = pairwise[b, perm[b, j], j]
    matched = pairwise.gather(1, perm.unsqueeze(1)).squeeze(1)
    return -matched.mean(dim=-1), perm
