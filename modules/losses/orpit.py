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
statistics of the one SI-SNR kernel (:func:`modules.losses.centered_stats`,
read by :func:`modules.losses.si_snr_from_stats`, as for
:func:`modules.losses.pairwise_si_snr`): one batched matrix product of the
sources and the noise against every signal of the item (the two outputs, the
``C`` sources, the noise) gives all inner products. No rest is ever formed:
each candidate's rest, ``total - s_i``, is a combination of those signals,
so its inner products and energy follow by linearity. The best candidate of
each item is an argmax on the device. No Python loop over items or
candidates, no host synchronisation; safe under autocast (float64 inside,
autocast off in the kernel). Items of one batch may have 1, 2 or 3 speakers,
with or without noise (``source_mask``, ``noise_mask``): padded sources are
never candidates and never part of a rest; an item without any candidate has
loss 0.

The gradient is autograd's. A hand-written backward (one batched product of
the chosen candidate's weights with the signals) was dropped: autograd's
costs well under 1 % of SADDEL's full-size training step
(``tests/benchmarks/bench_si_snr_step.py``), and the loss is meant to be correct
and readable, not to beat a Python loop by a given factor.

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

import functools
import typing

import torch

from modules.losses.common import check_signals, output_dtype
from modules.losses.si_snr import centered_stats, si_snr_from_stats

__all__ = ["orpit_scores", "orpit_si_snr_loss", "rest_targets"]


def _masks(sources, source_mask, noise, noise_mask):
    """bool ``source_mask`` ``[B, C]`` and ``noise_mask`` ``[B]`` on the sources' device (defaults: all real)."""
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


@functools.lru_cache(maxsize=16)
def _constants(n_src, device):
    """Fixed parts of :func:`_statistics`' reference weights, per number of candidates and device."""
    base = torch.zeros(2 * n_src, n_src + 1, dtype=torch.float64)
    base[:n_src, :-1] = torch.eye(n_src)  # s_i
    base[n_src:, :-1] = -torch.eye(n_src)  # rest_i = total - s_i
    rest = torch.tensor([0.0] * n_src + [1.0] * n_src, dtype=torch.float64)[:, None]
    return base.to(device), rest.to(device)


class _Statistics(typing.NamedTuple):
    """What :func:`_statistics` returns."""

    dot: torch.Tensor  # [B, 2, C]: output a against reference a of candidate i
    est_energy: torch.Tensor  # [B, 2]
    ref_energy: torch.Tensor  # [B, 2, C] (clamped at 0)
    silent: torch.Tensor  # [B] bool: items whose rest is silence (one real source, no noise)


def _statistics(estimates, sources, noise, lengths, source_mask, noise_mask):
    """Zero-mean statistics of the outputs against every candidate's two references.

    One call of the SI-SNR kernel (:func:`modules.losses.centered_stats`) gives
    the zero-mean inner products ``G`` of the signals ``x`` = (the two outputs,
    the ``C`` sources, the noise) with the references' building blocks (the
    sources and the noise). The references are combinations of those: ``s_i``,
    and its rest ``total - s_i`` with ``total`` the real sources plus the real
    noise. With ``W`` (``[B, 2C, C + 1]``) their weights, ``W G`` holds every
    inner product and ``diag(W G W^T)`` every energy. An item with one real
    signal in all is flagged ``silent`` (when that signal is the noise, the
    item has no candidate and its flag is never read).
    """
    batch, _, n_src = sources.shape
    noise = sources.new_zeros(batch, sources.shape[1]) if noise is None else noise
    blocks = torch.cat([sources, noise.unsqueeze(-1)], dim=-1)  # [B, T, C + 1]
    stats = centered_stats(blocks, torch.cat([estimates, blocks], dim=-1), lengths)
    centred = stats.cross  # [B, C + 1, C + 3]: the blocks against (outputs, blocks)
    base, rest = _constants(n_src, centred.device)
    real = torch.cat([source_mask, noise_mask[:, None]], dim=1).to(centred.dtype)
    weights = torch.addcmul(base, rest, real[:, None, :])
    products = torch.bmm(weights, centred)  # [B, 2C, C + 3]
    ref_energy = (products[..., 2:] * weights).sum(-1).clamp_min(0.0).view(batch, 2, n_src)
    dot = products.view(batch, 2, n_src, -1)[..., :2].diagonal(dim1=1, dim2=3).transpose(1, 2)
    return _Statistics(dot, stats.y_energy[:, :2], ref_energy, real.sum(-1) == 1)


def _scores(dot, est_energy, ref_energy, silent, eps, silence_snr_max):
    """``[B, 2, C]`` scores: SI-SNR, and for a silent rest (``silent`` items) the capped residual level."""
    scores = si_snr_from_stats(dot, est_energy[:, :, None], ref_energy, eps)
    floor = 10.0 ** (-float(silence_snr_max) / 10.0)
    silence = torch.log10(est_energy[:, 1:] / (ref_energy[:, 0] + eps) + floor).mul(-10.0)  # [B, C]
    return torch.cat([scores[:, :1], torch.where(silent[:, None, None], silence[:, None], scores[:, 1:])], dim=1)


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
    :func:`modules.losses.si_snr_from_stats`), but no reference is ever
    formed: one batched matrix product of all signals (the two outputs, the
    ``C`` sources, the noise and a valid-sample mask) with themselves over
    time gives every inner product, and each candidate's rest,
    ``sum_{n != i} s_n + noise``, follows by linearity
    (``<r_hat, rest_i> = sum_k w_ik <r_hat, x_k>``,
    ``||rest_i||^2 = w_i^T G w_i``).

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
    _check(estimates, sources)
    source_mask, noise_mask = _masks(sources, source_mask, noise, noise_mask)
    stats = _statistics(estimates, sources, noise, lengths, source_mask, noise_mask)
    one, rest = _scores(*stats, eps, silence_snr_max).unbind(1)
    return one, rest, source_mask


def _check(estimates, sources):
    """Raise ``ValueError`` unless ``estimates`` are ``[B, T, 2]`` and agree with ``sources``."""
    check_signals(estimates, sources)
    if estimates.shape[-1] != 2:
        raise ValueError(f"one-and-rest PIT needs exactly two outputs (one, rest), got {estimates.shape[-1]}")


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
    _check(estimates, sources)
    source_mask, noise_mask = _masks(sources, source_mask, noise, noise_mask)
    stats = _statistics(estimates, sources, noise, lengths, source_mask, noise_mask)
    scores = _scores(*stats, eps, silence_snr_max).sum(dim=1)  # [B, C]
    padded = ~source_mask
    best, index = scores.masked_fill(padded, torch.finfo(scores.dtype).min).max(dim=-1)
    loss = best.mul(-0.5).masked_fill(padded.all(dim=-1), 0.0)  # minus the mean of the two scores
    return loss.to(output_dtype(estimates)), index
