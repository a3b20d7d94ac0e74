"""Batched BSS-eval signal-to-distortion ratio (SDR) in PyTorch.

SpeechBrain's separation recipes score SDR with ``mir_eval``, one batch item
at a time on the CPU (and, in several recipes, for the first item of a batch
only). :func:`sdr` gives the same values (BSS-eval v3, as
``mir_eval.separation.bss_eval_sources(..., compute_permutation=False)``)
for a whole batch in one pass on any device.

Authors
 * robust-sep-recipes contributors 2025
"""

import torch


def sdr(estimates, references, filter_length=512):
    """BSS-eval (v3) signal-to-distortion ratio of each estimate.

    Source ``j`` of ``estimates`` is scored against source ``j`` of
    ``references`` (no permutation search: align the sources first, e.g.
    with the permutation returned by a PIT loss).

    BSS-eval writes an estimate ``e`` of source ``j`` as
    ``s_target + e_interf + e_artif`` where ``s_target`` is its projection on
    the ``filter_length`` delayed copies of reference ``j``, so that
    ``SDR = 10 log10(||P e||^2 / ||e - P e||^2)``. Only the Toeplitz Gram
    matrix of reference ``j`` is needed; the correlations are computed with
    FFTs and the ``B * C`` systems are solved together in float64.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, of shape [B, T, C].
    references : torch.Tensor
        Reference sources, of shape [B, T, C].
    filter_length : int
        Length of the distortion filter (512 in BSS-eval).

    Returns
    -------
    sdr : torch.Tensor
        Shape [B, C], float64, in dB. A silent reference (which ``mir_eval``
        rejects) gives ``nan``.

    Example
    -------
    >>> references = torch.randn(2, 4000, 2)
    >>> estimates = references + 0.1 * torch.randn(2, 4000, 2)
    >>> scores = sdr(estimates, references)
    >>> scores.shape
    torch.Size([2, 2])
    >>> bool(((scores > 18) & (scores < 22)).all())
    True
    """
    if estimates.dim() != 3 or estimates.shape != references.shape:
        raise ValueError(
            "estimates and references must both have shape [B, T, C], "
            f"got {tuple(estimates.shape)} and {tuple(references.shape)}"
        )
    if filter_length < 1:
        raise ValueError(f"filter_length must be positive: {filter_length}")
    n_time, flen = estimates.shape[1], filter_length
    n_fft = 1 << (n_time + flen - 2).bit_length()
    est = estimates.double().transpose(1, 2)  # [B, C, T]
    ref = references.double().transpose(1, 2)

    ref_f = torch.fft.rfft(ref, n=n_fft)
    est_f = torch.fft.rfft(est, n=n_fft)
    # acf[k] = <ref, ref delayed by k>, xcorr[k] = <est, ref delayed by k>
    power = ref_f.real.square() + ref_f.imag.square()
    acf = torch.fft.irfft(power, n=n_fft)[..., :flen]
    xcorr = torch.fft.irfft(ref_f.conj() * est_f, n=n_fft)[..., :flen]
    # A silent reference gets an identity Gram matrix (its xcorr is 0).
    silent = ref.square().sum(dim=-1, keepdim=True) == 0
    acf = torch.cat([acf[..., :1] + silent, acf[..., 1:]], dim=-1)

    # Gram matrix G[i, j] = acf[|i - j|]; solve with its row-reversed
    # (Hankel) form, a strided view: hankel[i, j] = G[L - 1 - i, j].
    sym = torch.cat([acf.flip(-1), acf[..., 1:]], dim=-1)
    hankel = sym.unfold(-1, flen, 1)  # [B, C, L, L]
    coeffs = torch.linalg.solve_ex(hankel, xcorr.flip(-1).unsqueeze(-1))[0]
    gram_coeffs = (hankel.flip(-2) @ coeffs).squeeze(-1)
    coeffs = coeffs.squeeze(-1)
    # ||P e||^2 = c'Gc, ||e - P e||^2 = ||e||^2 - 2 c'x + c'Gc
    proj_energy = (coeffs * gram_coeffs).sum(dim=-1)
    residual = est.square().sum(dim=-1) - 2.0 * (coeffs * xcorr).sum(dim=-1)
    residual = (residual + proj_energy).clamp_min(0.0)
    value = 10.0 * torch.log10(proj_energy / residual)
    return value.masked_fill(silent[..., 0], float("nan"))
