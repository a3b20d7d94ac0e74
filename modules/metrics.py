"""Separation metrics: BSS-eval SDR and SI-SNR, batched in torch.

All functions take signals laid out as ``[batch, time, n_src]`` and score
source ``j`` of the estimates against source ``j`` of the references (no
permutation search; align first with :func:`modules.losses.apply_perm`).
Results are float64 ``[batch, n_src]`` in dB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from modules.losses import centered_stats, check_signals, si_snr_from_stats

__all__ = ["improvement", "sdr", "si_snr", "with_improvement"]


def _check_same_shape(estimates: torch.Tensor, references: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are ``[batch, time, n_src]`` alike."""
    check_signals(estimates, references)
    if estimates.shape != references.shape:
        raise ValueError(
            "estimates and references must have the same shape, got "
            f"{tuple(estimates.shape)} and {tuple(references.shape)}"
        )


def si_snr(
    estimates: torch.Tensor, references: torch.Tensor, eps: float = 1e-8, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale-invariant SNR of each estimate against its own reference.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, n_src]``.
    references : torch.Tensor
        ``[batch, time, n_src]``.
    eps : float
        Small constant, as in :func:`modules.losses.pairwise_si_snr`.
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item (padded batches): each item is
        scored on its own samples, as the loss does.

    Returns
    -------
    torch.Tensor
        ``[batch, n_src]`` float64 SI-SNR in dB; equals the diagonal of
        :func:`modules.losses.pairwise_si_snr` (computed in float64), except
        for a silent reference (no energy once its mean is removed): SI-SNR
        is undefined there and the result is ``nan`` (the loss reads -80 dB,
        a number a test average must not contain).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(2, 8000, 2)
    >>> est = 3.0 * refs + 0.3 * torch.randn(2, 8000, 2)  # scale is ignored
    >>> si_snr(est, refs).round()
    tensor([[20., 20.],
            [20., 20.]], dtype=torch.float64)
    >>> si_snr(est, torch.zeros_like(refs)).isnan().all().item()  # silent references: undefined
    True
    """
    _check_same_shape(estimates, references)
    dot, est_energy, ref_energy = centered_stats(estimates, references, lengths, paired=True)  # the loss's kernel
    value = si_snr_from_stats(dot, est_energy, ref_energy, eps)
    return value.masked_fill(ref_energy == 0, float("nan"))


def sdr(estimates: torch.Tensor, references: torch.Tensor, filter_length: int = 512) -> torch.Tensor:
    """BSS-eval (v3) signal-to-distortion ratio, as in ``mir_eval``.

    Matches ``mir_eval.separation.bss_eval_sources(references, estimates,
    compute_permutation=False)[0]`` for every batch item.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, n_src]``.
    references : torch.Tensor
        ``[batch, time, n_src]``.
    filter_length : int
        Length of the allowed distortion filter (512 in BSS-eval).

    Returns
    -------
    torch.Tensor
        ``[batch, n_src]`` float64 SDR in dB, source ``j`` of the estimates
        scored against source ``j`` of the references.

    Notes
    -----
    BSS-eval decomposes the (zero-padded) estimate ``e`` of source ``j`` as
    ``s_true + e_spat + e_interf + e_artif`` and defines
    ``SDR = 10 log10(||s_true + e_spat||^2 / ||e_interf + e_artif||^2)``.
    Since ``s_true + e_spat = P_j e``, the least-squares projection of ``e``
    on the ``filter_length`` delayed copies of reference ``j``, the
    interference/artefact split cancels out:
    ``SDR = 10 log10(||P_j e||^2 / ||e - P_j e||^2)``, so only the
    ``filter_length x filter_length`` Toeplitz Gram matrix of reference
    ``j`` is needed (the projection on all references matters for SIR and
    SAR only). Auto- and cross-correlations are computed with FFTs and all
    ``batch * n_src`` systems are solved in one batched
    ``torch.linalg.solve_ex`` in float64 (no host synchronisation; a
    singular system is not reported and yields ``nan``/``inf``).

    A silent (all-zero) reference, which ``mir_eval`` rejects with an
    error, makes SDR undefined: the result is ``nan`` (never ``-inf``). A
    silent estimate of a non-silent reference also gives ``nan``. A perfect
    estimate gives a very large value (up to ``+inf``).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(2, 4000, 2)
    >>> est = refs + 0.1 * torch.randn(2, 4000, 2)
    >>> scores = sdr(est, refs)
    >>> scores.shape, scores.dtype
    (torch.Size([2, 2]), torch.float64)
    >>> bool(((scores > 19) & (scores < 22)).all())
    True
    """
    _check_same_shape(estimates, references)
    if filter_length < 1:
        raise ValueError(f"filter_length must be positive, got {filter_length}")
    n_time = estimates.shape[1]
    flen = filter_length
    n_fft = 1 << (n_time + flen - 2).bit_length()  # power of 2 >= T + L - 1
    est = estimates.to(torch.float64).transpose(1, 2)  # [B, n, T]
    ref = references.to(torch.float64).transpose(1, 2)

    ref_f = torch.fft.rfft(ref, n=n_fft)
    est_f = torch.fft.rfft(est, n=n_fft)
    # acf[k] = <ref, ref delayed by k>, xcorr[k] = <est, ref delayed by k>
    power = ref_f.real.square() + ref_f.imag.square()
    acf = torch.fft.irfft(power, n=n_fft)[..., :flen]  # [B, n, L]
    xcorr = torch.fft.irfft(ref_f.conj() * est_f, n=n_fft)[..., :flen]
    # A silent reference gets an identity Gram matrix; as its xcorr is 0,
    # the projection is empty.
    silent = ref.square().sum(dim=-1, keepdim=True) == 0
    acf = torch.cat([acf[..., :1] + silent, acf[..., 1:]], dim=-1)

    # Gram matrix G[i, j] = acf[|i - j|] (symmetric Toeplitz). Solve with the
    # row-reversed (Hankel) matrix, a zero-copy strided view:
    # hankel[i, j] = acf[|i + j - (L - 1)|] = G[L - 1 - i, j].
    sym = torch.cat([acf.flip(-1), acf[..., 1:]], dim=-1)  # [B, n, 2L - 1]
    hankel = sym.unfold(-1, flen, 1)  # [B, n, L, L]
    coeffs = torch.linalg.solve_ex(hankel, xcorr.flip(-1).unsqueeze(-1))[0]
    gram_coeffs = (hankel.flip(-2) @ coeffs).squeeze(-1)  # G c
    coeffs = coeffs.squeeze(-1)
    # ||P e||^2 = c'Gc and ||e - P e||^2 = ||e||^2 - 2 c'x + c'Gc; the
    # residual form is stationary in c, so solver round-off in c only enters
    # it to second order (unlike ||e||^2 - c'x).
    proj_energy = (coeffs * gram_coeffs).sum(dim=-1)
    residual_energy = (est.square().sum(dim=-1) - 2.0 * (coeffs * xcorr).sum(dim=-1) + proj_energy).clamp_min(0.0)
    return (10.0 * torch.log10(proj_energy / residual_energy)).masked_fill(silent[..., 0], float("nan"))


def improvement(
    metric_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    estimates: torch.Tensor,
    references: torch.Tensor,
    mixture: torch.Tensor,
) -> torch.Tensor:
    """Metric improvement over the unprocessed mixture (e.g. SI-SNRi, SDRi).

    Arguments
    ---------
    metric_fn : callable
        ``metric_fn(estimates, references) -> [batch, n_src]``, e.g.
        :func:`si_snr` or :func:`sdr`.
    estimates : torch.Tensor
        ``[batch, time, n_src]``.
    references : torch.Tensor
        ``[batch, time, n_src]``.
    mixture : torch.Tensor
        ``[batch, time]``, used as the estimate of every source.

    Returns
    -------
    torch.Tensor
        ``metric_fn(estimates, references) - metric_fn(mixture, references)``
        with shape ``[batch, n_src]``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(1, 8000, 2)
    >>> mix = refs.sum(dim=-1)
    >>> gain = improvement(si_snr, refs + 0.01 * torch.randn_like(refs), refs, mix)
    >>> bool((gain > 30).all())
    True
    """
    return with_improvement(metric_fn, estimates, references, mixture)[1]


def with_improvement(
    metric_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    estimates: torch.Tensor,
    references: torch.Tensor,
    mixture: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A metric and its improvement over the mixture, computing the metric twice only.

    Arguments are those of :func:`improvement`.

    Returns
    -------
    value, gain : torch.Tensor
        ``metric_fn(estimates, references)`` and
        ``value - metric_fn(mixture, references)``, both ``[batch, n_src]``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(1, 8000, 2)
    >>> est = refs + 0.1 * torch.randn_like(refs)
    >>> value, gain = with_improvement(si_snr, est, refs, refs.sum(-1))
    >>> torch.equal(gain, improvement(si_snr, est, refs, refs.sum(-1))), torch.equal(value, si_snr(est, refs))
    (True, True)
    """
    if mixture.ndim != 2 or mixture.shape != references.shape[:2]:
        raise ValueError(
            f"expected mixture [batch, time] matching references {tuple(references.shape)}, got {tuple(mixture.shape)}"
        )
    value = metric_fn(estimates, references)
    return value, value - metric_fn(mixture.unsqueeze(-1).expand_as(references), references)
