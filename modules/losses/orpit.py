"""One-and-rest PIT (OR-PIT): the loss of recursive separation, vectorised over items and candidates.

A recursive separator maps its input to two outputs, one speaker ``s_hat``
and the rest ``r_hat`` (Takahashi et al., 2019). Which speaker comes out
first is free, so the loss takes the best candidate (SADDEL, Wu et al.,
equation 2)::

    L = min_i  l(s_hat, s_i) + l(r_hat, sum_{n != i} s_n)        l = -SI-SNR

In SADDEL's multi-scenario training the input may also hold noise: the rest
then also holds the noise (for one speaker plus noise the rest *is* the noise,
and the recursion carries the noise on to the next step, SADDEL section 4.4).

Vectorised
----------
All candidates of all items are scored at once, from the zero-mean float64
statistics :func:`modules.losses.pairwise_si_snr` is built on (its hand-written
backward included): one batched matrix product of the two outputs and the
total (real sources plus real noise) against the ``C`` sources and the total.
The rests are never formed: their inner products and energies follow by
linearity, and :func:`modules.losses.si_snr_from_stats` turns them into SI-SNRs.
:func:`modules.losses.best_permutation` picks the best candidate of each item
on the device (a one-target assignment over ``C`` candidates) and
:func:`modules.losses.matched_scores` reads it. No Python loop over items or
candidates, no host synchronisation; safe under autocast (float64 inside).
Items of one batch may have 1, 2 or 3 speakers, with or without noise
(``source_mask``, ``noise_mask``): padded sources are never candidates and
never part of a rest; an item without any candidate has loss 0.

Silent rest
-----------
When the input holds one speaker and nothing else (the last step of the
unrolled recursion on a clean mixture), the rest target is silence and its
SI-SNR is undefined. The rest term is then the level of the residual below
that speaker, capped at ``silence_snr_max`` dB (MixIT's soft threshold for
inactive sources, Wisdom et al., 2020)::

    score_rest = -10 log10(||r_hat||^2 / ||s_i||^2 + 10^(-silence_snr_max / 10))

which trains the residual towards silence on the same dB scale as SI-SNR
(the reference implementation fills missing targets with zeros under its
log-MSE loss for the same purpose).

Departures
----------
* The value is equation 2 divided by two (the mean of the two negative
  SI-SNRs, not their sum): the minimiser is the same, and the loss reads on
  the scale of uPIT's mean over outputs, so the recipes' -30 dB loss
  threshold keeps its meaning.
* No ``1 / (K - 1)`` weight on the rest term: SADDEL drops the reference
  implementation's weight (fgnt/padertorch ``or_pit``), SI-SNR being
  scale-invariant.
* The reference implementation's loss is log-MSE; SADDEL's is SI-SNR.
"""

from __future__ import annotations

import torch

from modules.losses.common import check_signals, output_dtype
from modules.losses.matching import best_permutation, matched_scores
from modules.losses.si_snr import si_snr_from_stats

__all__ = ["orpit_scores", "orpit_si_snr_loss", "rest_targets"]


def _masks(sources, source_mask, noise, noise_mask):
    batch, _, n_src = sources.shape
    if source_mask is None:
        source_mask = torch.ones(batch, n_src, dtype=torch.bool, device=sources.device)
    source_mask = source_mask.to(device=sources.device, dtype=torch.bool)
    if noise is not None and noise_mask is None:
        noise_mask = torch.ones(batch, dtype=torch.bool, device=sources.device)
    if noise is None:
        noise_mask = torch.zeros(batch, dtype=torch.bool, device=sources.device)
    return source_mask, noise_mask.to(device=sources.device, dtype=torch.bool)


def rest_targets(sources, source_mask=None, noise=None, noise_mask=None):
    """The "rest" of each candidate: the other real sources plus the noise.

    Arguments
    ---------
    sources : torch.Tensor
        ``[batch, time, C]`` (zero for padded sources).
    source_mask : torch.Tensor, optional
        ``[batch, C]`` bool, ``True`` for real sources.
    noise : torch.Tensor, optional
        ``[batch, time]``.
    noise_mask : torch.Tensor, optional
        ``[batch]`` bool, ``True`` for items whose noise is real.

    Returns
    -------
    torch.Tensor
        ``[batch, time, C]``: column ``i`` is ``sum_{n != i} s_n + noise``
        over the item's real sources (for a padded ``i``: all of them).

    Example
    -------
    >>> s = torch.tensor([[[1.0, 10.0, 100.0]]])  # one sample, three sources
    >>> rest_targets(s, torch.tensor([[True, True, False]]), noise=torch.tensor([[1000.0]])).tolist()
    [[[1010.0, 1001.0, 1011.0]]]
    """
    source_mask, noise_mask = _masks(sources, source_mask, noise, noise_mask)
    real = sources * source_mask[:, None, :].to(sources.dtype)
    total = real.sum(dim=-1, keepdim=True)
    if noise is not None:
        total = total + (noise * noise_mask[:, None].to(noise.dtype)).unsqueeze(-1)
    return total - real


class _OutputStats(torch.autograd.Function):
    """float64 inner products of the two outputs with the references, and the outputs' energies.

    ``forward(estimates [B, T, 2], refs [B, K, T] float64)`` returns
    ``(<est_a, ref_k> [B, 2, K], ||est_a||^2 [B, 2])`` on the raw (uncentred)
    signals; the last reference row is ones on each item's valid samples and
    zeros beyond (with ``padded``, the estimates are masked by it, so padded
    samples never count). Like ``pairwise_si_snr``'s statistics, the
    backward is written by hand: one batched matrix product and one fused
    multiply-add instead of autograd's chain of float64 ops over the signals.
    """

    @staticmethod
    def forward(ctx, estimates, refs, padded):
        """Statistics in float64 (with ``padded``, the references' last row, ones on valid samples, masks them)."""
        est = estimates.transpose(1, 2).to(torch.float64, memory_format=torch.contiguous_format, copy=True)
        if padded:
            est.mul_(refs[:, -1:])
        ctx.save_for_backward(est, refs)
        ctx.dtype = estimates.dtype
        return torch.bmm(est, refs.transpose(1, 2)), torch.linalg.vecdot(est, est)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_cross, grad_energy):
        """Gradient with respect to the estimates (zero on padded samples)."""
        est, refs = ctx.saved_tensors
        grad = torch.bmm(grad_cross, refs)  # [B, 2, T]
        grad.addcmul_(est, (2.0 * grad_energy).unsqueeze(-1))
        return grad.transpose(1, 2).to(ctx.dtype), None, None


def orpit_scores(
    estimates,
    sources,
    source_mask=None,
    noise=None,
    noise_mask=None,
    lengths=None,
    eps=1e-8,
    silence_snr_max=30.0,
):
    """Per-candidate scores of a one-and-rest output pair (higher is better).

    The statistics are those of :func:`modules.losses.pairwise_si_snr`
    (zero-mean float64 inner products and energies, read by
    :func:`modules.losses.si_snr_from_stats`), but the rests are never
    formed: with ``total`` the sum of the real sources and the real noise,
    ``<r_hat, rest_i> = <r_hat, total> - <r_hat, s_i>`` and
    ``||rest_i||^2 = ||total||^2 - 2 <total, s_i> + ||s_i||^2``, so one
    batched matrix product of ``(s_hat, r_hat, total)`` against
    ``(s_1, ..., s_C, total)`` over time gives every score.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, 2]``: the one speaker, then the rest.
    sources, source_mask, noise, noise_mask
        See :func:`rest_targets`.
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item.
    eps : float
        As in :func:`modules.losses.pairwise_si_snr`.
    silence_snr_max : float
        Cap (dB) of the silent-rest score (module docstring).

    Returns
    -------
    one : torch.Tensor
        ``[batch, C]`` float64: SI-SNR (dB) of ``s_hat`` against source ``i``.
    rest : torch.Tensor
        ``[batch, C]`` float64: SI-SNR of ``r_hat`` against the rest of ``i``,
        or the silent-rest score when that rest is silence.
    candidate : torch.Tensor
        ``[batch, C]`` bool: which sources are candidates (the real ones).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> s = torch.randn(1, 4000, 2)
    >>> one, rest, candidate = orpit_scores(torch.stack([s[..., 1], s[..., 0]], -1), s)
    >>> bool(one[0, 1] > 60 and rest[0, 1] > 60 and one[0, 0] < 0), candidate.tolist()
    (True, [[True, True]])
    """
    check_signals(estimates, sources)
    if estimates.shape[-1] != 2:
        raise ValueError(f"one-and-rest PIT needs exactly two outputs (one, rest), got {estimates.shape[-1]}")
    source_mask, noise_mask = _masks(sources, source_mask, noise, noise_mask)
    batch, length, n_src = sources.shape
    # References in float64, time contiguous: s_1 .. s_C, the total (real sources + real noise), ones.
    refs = torch.empty(batch, n_src + 2, length, dtype=torch.float64, device=sources.device)
    refs[:, :n_src].copy_(sources.detach().transpose(1, 2))
    total = refs[:, n_src]
    if noise is None:
        total.zero_()
    else:
        total.copy_(noise.detach()).mul_(noise_mask[:, None])
    total.add_(torch.bmm(source_mask.to(torch.float64)[:, None, :], refs[:, :n_src])[:, 0])
    refs[:, n_src + 1].fill_(1.0)
    if lengths is None:
        count = refs.new_full((batch, 1), float(length))
    else:
        refs.mul_(torch.arange(length, device=refs.device)[None, None, :] < lengths.to(refs.device)[:, None, None])
        count = lengths.to(refs.device, torch.float64)[:, None]
    raw_cross, raw_energy = _OutputStats.apply(estimates, refs, lengths is not None)  # [B, 2, C + 2], [B, 2]
    raw_total = torch.bmm(refs[:, : n_src + 1], refs[:, n_src:].transpose(1, 2))  # <s_i | total, total | 1>
    raw_src_energy = torch.linalg.vecdot(refs[:, :n_src], refs[:, :n_src])  # [B, C]
    # Zero-mean statistics over each item's valid samples: <x - mean x, y - mean y> = <x, y> - sum x sum y / n.
    est_sum, ref_sum = raw_cross[..., -1], raw_total[..., 1]  # [B, 2], [B, C + 1] (sources, total)
    cross = raw_cross[..., :-1] - est_sum[:, :, None] * ref_sum[:, None, :] / count[:, :, None]  # [B, 2, C + 1]
    est_energy = raw_energy - est_sum.square() / count  # [B, 2]
    with_total = raw_total[..., 0] - ref_sum * ref_sum[:, -1:] / count  # <s_i | total, total> [B, C + 1]
    src_energy = raw_src_energy - ref_sum[:, :n_src].square() / count  # ||s_i||^2 [B, C]

    # Each candidate's rest, total - s_i, by linearity.
    src_dots = cross[..., :n_src]  # <s_hat | r_hat, s_i> [B, 2, C]
    rest_dots = cross[:, 1, n_src:] - src_dots[:, 1]  # <r_hat, total - s_i> [B, C]
    rest_energy = (with_total[:, n_src:] - 2.0 * with_total[:, :n_src] + src_energy).clamp_min(0.0)

    one = si_snr_from_stats(src_dots[:, 0], est_energy[:, :1], src_energy, eps)
    rest = si_snr_from_stats(rest_dots, est_energy[:, 1:], rest_energy, eps)

    # Silent rest (one real source, no noise): the residual's level below that source, capped.
    silent = (source_mask.sum(-1) == 1) & ~noise_mask  # [B]
    floor = 10.0 ** (-float(silence_snr_max) / 10.0)
    silence = -10.0 * torch.log10(est_energy[:, 1:] / (src_energy + eps) + floor)
    rest = torch.where(silent[:, None], silence, rest)
    return one, rest, source_mask


def orpit_si_snr_loss(
    estimates,
    sources,
    source_mask=None,
    noise=None,
    noise_mask=None,
    lengths=None,
    eps=1e-8,
    silence_snr_max=30.0,
):
    """One-and-rest PIT negative SI-SNR (SADDEL equation 2, halved; module docstring).

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, 2]``: the one speaker, then the rest.
    sources : torch.Tensor
        ``[batch, time, C]`` clean speakers (the candidates).
    source_mask : torch.Tensor, optional
        ``[batch, C]`` bool: real sources. In an unrolled recursion, the
        sources extracted at earlier steps are masked out.
    noise : torch.Tensor, optional
        ``[batch, time]``: the noise in the input (part of every rest).
    noise_mask : torch.Tensor, optional
        ``[batch]`` bool: items whose noise is real.
    lengths : torch.Tensor, optional
        ``[batch]`` valid samples per item.
    eps : float
    silence_snr_max : float
        Cap of the silent-rest score in dB.

    Returns
    -------
    loss : torch.Tensor
        ``[batch]``: minus the mean of the two scores of the best candidate
        (0 for an item without candidate). float32, or float64 for float64
        estimates; differentiable with respect to ``estimates``.
    index : torch.Tensor
        ``[batch]`` long: the source matched to the first output.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> s, n = torch.randn(2, 4000, 3), torch.randn(2, 4000)
    >>> mask = torch.tensor([[True, True, True], [True, True, False]])  # 3 and 2 speakers
    >>> one = torch.stack([s[0, :, 2], s[1, :, 1]])  # item 0: speaker 3 first; item 1: speaker 2
    >>> rest = torch.stack([s[0, :, 0] + s[0, :, 1], s[1, :, 0]]) + n
    >>> loss, index = orpit_si_snr_loss(torch.stack([one, rest], -1), s, mask, noise=n)
    >>> index.tolist(), bool((loss < -60).all())
    ([2, 1], True)
    """
    one, rest, candidate = orpit_scores(
        estimates, sources, source_mask, noise, noise_mask, lengths, eps=eps, silence_snr_max=silence_snr_max
    )
    total = one + rest  # [B, C]
    lowest = torch.finfo(total.dtype).min
    search = torch.where(candidate, total, torch.full_like(total, lowest)).unsqueeze(-1)  # [B, C, 1]
    index = best_permutation(search)  # [B, 1]: the candidate matched to the one target
    matched = matched_scores(total.unsqueeze(-1), index)[:, 0]  # [B]
    has_candidate = candidate.any(dim=-1)
    loss = torch.where(has_candidate, -0.5 * matched, torch.zeros_like(matched))
    return loss.to(output_dtype(estimates)), index[:, 0]
