"""Mixture invariant training (MixIT) and the SNR-based PIT of MixPIT / MixCycle.

MixIT (Wisdom et al., "Unsupervised sound separation using mixture invariant
training", NeurIPS 2020): a mixture of two mixtures ``x1 + x2`` is separated
into ``M`` sources ``s_hat``; the loss is the best, over every mixing matrix
``A`` in ``{0, 1}^{2 x M}`` with one 1 per column (each estimate goes to exactly
one mixture: ``2^M`` matrices), of ``sum_i L(x_i, (A s_hat)_i)``, with ``L`` the
negative thresholded SNR

``L(y, y_hat) = 10 log10(||y - y_hat||^2 + tau ||y||^2) - 10 log10 ||y||^2``,
``tau = 10^(-snr_max / 10)`` (``snr_max = 30`` dB, the paper's and MixCycle's).

The same kernel scores any set of 0/1 assignment matrices: with the
permutation matrices it is the PIT over SNR that MixPIT and MixCycle
(Karamatli and Kirbiz, IEEE SPL 2022) train with (:func:`snr_pit_loss`).

Vectorised: the assignment matrices are built once per size (cached) and all
of them are scored at once from three Gram statistics in float64
(``<s_m, s_n>``, ``<y_c, s_m>``, ``||y_c||^2``):
``||y_c - sum_m A_cm s_m||^2 = ||y_c||^2 - 2 sum_m A_cm <y_c, s_m> + sum_mn A_cm A_cn <s_m, s_n>``,
so no remixed signal ``[B, P, T, C]`` is materialised and there is no Python
loop over assignments or items, and no host synchronisation. Statistics are
float64 under autocast; the loss comes back in float32 (float64 inputs:
float64).

Departures, stated: the thresholded SNR gets ``eps`` (1e-8, in squared
amplitude) inside both logarithms so that a silent mixture (``||y|| = 0``)
gives a finite loss (MixCycle's code adds no such term; the MixIT paper does
not say); the per-mixture losses are summed, as the MixIT paper writes the
loss (MixCycle's code averages them: a factor 2).
"""

from __future__ import annotations

import functools
import itertools

import torch

from modules.losses.common import autocast_off, check_signals, output_dtype

__all__ = [
    "MIXIT_SNR_MAX",
    "assignment_losses",
    "mixit_assignments",
    "mixit_loss",
    "permutation_assignments",
    "snr_pit_loss",
    "thresholded_snr",
]

#: Soft threshold of MixIT's SNR in dB: tau = 10^(-snr_max / 10).
MIXIT_SNR_MAX = 30.0
#: Added to both energies of the thresholded SNR (squared amplitude): a silent mixture stays finite.
SNR_EPS = 1e-8


@functools.cache
def _mixit_matrices_cpu(n_outputs: int, n_mixtures: int) -> torch.Tensor:
    rows = torch.tensor(list(itertools.product(range(n_mixtures), repeat=n_outputs)), dtype=torch.long)
    return torch.nn.functional.one_hot(rows, n_mixtures).transpose(1, 2).to(torch.float64)


@functools.cache
def mixit_assignments(n_outputs: int, n_mixtures: int = 2, device: torch.device | None = None) -> torch.Tensor:
    """Every mixing matrix of MixIT: ``[n_mixtures ** n_outputs, n_mixtures, n_outputs]`` float64, 0/1.

    Matrix ``p`` sends output ``m`` to mixture ``c`` where ``A[p, c, m] == 1``
    (one 1 per column); rows follow ``itertools.product(range(n_mixtures),
    repeat=n_outputs)`` (output 0 is the slowest digit). Cached per sizes and device.

    Example
    -------
    >>> A = mixit_assignments(2)
    >>> A.shape, A[1].tolist()
    (torch.Size([4, 2, 2]), [[1.0, 0.0], [0.0, 1.0]])
    >>> bool((A.sum(1) == 1).all())
    True
    """
    if n_outputs < 1 or n_mixtures < 1:
        raise ValueError(f"need at least one output and one mixture, got {n_outputs} and {n_mixtures}")
    return _mixit_matrices_cpu(n_outputs, n_mixtures).to(device or "cpu")


@functools.cache
def permutation_assignments(n: int, device: torch.device | None = None) -> torch.Tensor:
    """The ``n!`` permutation matrices ``[n!, n, n]`` float64: ``A[p, c, m] == 1`` sends output ``m`` to ``c``.

    Example
    -------
    >>> permutation_assignments(2).tolist()
    [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]
    """
    rows = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)  # rows[p, c] = output of c
    return torch.nn.functional.one_hot(rows, n).to(torch.float64).to(device or "cpu")


def _masked_f64(signals: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    signals = signals.to(torch.float64)
    if lengths is None:
        return signals
    valid = torch.arange(signals.shape[1], device=signals.device)[None, :] < lengths.to(signals.device)[:, None]
    return signals * valid[..., None]


def thresholded_snr(estimates, references, snr_max=MIXIT_SNR_MAX, lengths=None, eps=SNR_EPS):
    """MixIT's thresholded SNR of each column, ``[B, C]`` (higher is better).

    ``10 log10 ||y||^2 - 10 log10(||y - y_hat||^2 + tau ||y||^2)`` with
    ``tau = 10^(-snr_max / 10)``: at most ``snr_max`` dB, so that well separated
    items stop dominating the gradient. ``snr_max=None`` is the plain SNR.

    Example
    -------
    >>> y = torch.ones(1, 100, 1, dtype=torch.float64)
    >>> round(float(thresholded_snr(y, y)[0, 0]), 6)  # a perfect estimate reaches the threshold
    30.0
    """
    check_signals(estimates, references)
    if estimates.shape != references.shape:
        raise ValueError(
            f"estimates and references differ in shape: {tuple(estimates.shape)}, {tuple(references.shape)}"
        )
    tau = 0.0 if snr_max is None else 10.0 ** (-float(snr_max) / 10.0)
    with autocast_off(estimates.device):
        est, ref = _masked_f64(estimates, lengths), _masked_f64(references, lengths)
        energy = ref.square().sum(1)
        error = (ref - est).square().sum(1)
        snr = 10 * torch.log10(energy + eps) - 10 * torch.log10(error + tau * energy + eps)
    return snr.to(output_dtype(estimates))


def assignment_losses(estimates, references, assignments, snr_max=MIXIT_SNR_MAX, lengths=None, eps=SNR_EPS):
    """Negative thresholded SNR of every assignment, summed over the references: ``[B, P]`` float64.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[B, T, M]``.
    references : torch.Tensor
        ``[B, T, C]`` (MixIT: the two mixtures).
    assignments : torch.Tensor
        ``[P, C, M]`` 0/1 matrices; reference ``c`` is compared with
        ``sum_m A[p, c, m] * estimates[..., m]``.
    snr_max : float or None
        The threshold in dB (None: plain SNR).
    lengths : torch.Tensor, optional
        ``[B]`` valid samples per item; later samples are ignored.
    eps : float
        Added to both energies (a silent reference stays finite).
    """
    check_signals(estimates, references)
    n_ref, n_out = references.shape[-1], estimates.shape[-1]
    if assignments.ndim != 3 or tuple(assignments.shape[1:]) != (n_ref, n_out):
        raise ValueError(
            f"expected assignments of shape [P, {n_ref}, {n_out}] for {n_out} estimates and {n_ref} references, "
            f"got {tuple(assignments.shape)}"
        )
    tau = 0.0 if snr_max is None else 10.0 ** (-float(snr_max) / 10.0)
    with autocast_off(estimates.device):
        est, ref = _masked_f64(estimates, lengths), _masked_f64(references, lengths)
        A = assignments.to(device=est.device, dtype=torch.float64)
        gram = torch.einsum("btm,btn->bmn", est, est)  # <s_m, s_n>
        cross = torch.einsum("btc,btm->bcm", ref, est)  # <y_c, s_m>
        energy = ref.square().sum(1)  # ||y_c||^2, [B, C]
        quad = torch.einsum("pcm,bmn,pcn->bpc", A, gram, A)
        error = energy[:, None, :] - 2 * torch.einsum("pcm,bcm->bpc", A, cross) + quad
        error = error.clamp(min=0.0)  # rounding of the expanded square
        losses = 10 * torch.log10(error + tau * energy[:, None, :] + eps) - 10 * torch.log10(energy[:, None, :] + eps)
    return losses.sum(-1)


def mixit_loss(estimates, mixtures, snr_max=MIXIT_SNR_MAX, lengths=None, eps=SNR_EPS):
    """MixIT: the best of the ``2^M`` assignments of the estimates to the two mixtures.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[B, T, M]``: the separator's outputs on the mixture of mixtures.
    mixtures : torch.Tensor
        ``[B, T, 2]``: the two mixtures that were summed into its input (any
        number of mixtures works; MixIT uses two).
    snr_max : float or None
        Soft threshold of the SNR in dB (30: ``tau = 1e-3``); None: plain SNR.
    lengths : torch.Tensor, optional
        ``[B]`` valid samples per item.
    eps : float
        See :data:`SNR_EPS`.

    Returns
    -------
    loss : torch.Tensor
        ``[B]``: ``min_A sum_i -SNR_tau(x_i, (A s_hat)_i)``.
    assignment : torch.Tensor
        ``[B, 2, M]`` 0/1: the chosen mixing matrix of each item.

    Example
    -------
    >>> s = torch.randn(3, 400, 4, dtype=torch.float64)
    >>> mixtures = torch.stack([s[..., 0] + s[..., 3], s[..., 1] + s[..., 2]], dim=-1)
    >>> loss, assignment = mixit_loss(s, mixtures)
    >>> [round(v, 4) for v in loss.tolist()], assignment[0].tolist()
    ([-60.0, -60.0, -60.0], [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    """
    check_signals(estimates, mixtures)
    assignments = mixit_assignments(estimates.shape[-1], mixtures.shape[-1], estimates.device)
    losses = assignment_losses(estimates, mixtures, assignments, snr_max, lengths, eps)
    best, index = losses.min(dim=1)
    return best.to(output_dtype(estimates)), assignments[index].to(output_dtype(estimates))


def snr_pit_loss(estimates, references, snr_max=MIXIT_SNR_MAX, lengths=None, eps=SNR_EPS):
    """PIT with the thresholded SNR (MixPIT, MixCycle): the best permutation of ``C`` estimates to ``C`` references.

    Returns
    -------
    loss : torch.Tensor
        ``[B]``: ``min_perm sum_c -SNR_tau(y_c, s_hat_perm(c))``.
    perm : torch.Tensor
        ``[B, C]`` long: the estimate matched to each reference (as
        :func:`modules.losses.apply_perm` takes it).

    Example
    -------
    >>> y = torch.randn(2, 300, 2, dtype=torch.float64)
    >>> loss, perm = snr_pit_loss(y.flip(-1), y)
    >>> perm.tolist(), [round(v, 4) for v in loss.tolist()]
    ([[1, 0], [1, 0]], [-60.0, -60.0])
    """
    check_signals(estimates, references)
    if estimates.shape[-1] != references.shape[-1]:
        raise ValueError(
            f"snr_pit_loss needs as many estimates as references, got {estimates.shape[-1]} and {references.shape[-1]}"
        )
    assignments = permutation_assignments(references.shape[-1], estimates.device)
    losses = assignment_losses(estimates, references, assignments, snr_max, lengths, eps)
    best, index = losses.min(dim=1)
    return best.to(output_dtype(estimates)), assignments[index].argmax(-1)
