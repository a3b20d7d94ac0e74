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
All candidates of all items are scored at once, from zero-mean float64
statistics (as :func:`modules.losses.pairwise_si_snr`'s, read by
:func:`modules.losses.si_snr_from_stats`): one batched matrix product of
every signal of the item (the two outputs, the ``C`` sources, the noise and a
valid-sample mask) with itself over time gives all inner products. No rest
is ever formed: each candidate's rest, ``total - s_i``, is a combination of
those signals, so its inner products and energy follow by linearity. The
best candidate of each item is an argmax on the device. No Python loop over
items or candidates, no host synchronisation; safe under autocast (float64
inside, which autocast leaves alone).
Items of one batch may have 1, 2 or 3 speakers, with or without noise
(``source_mask``, ``noise_mask``): padded sources are never candidates and
never part of a rest; an item without any candidate has loss 0.

What it costs is two passes over the signals and the overhead of some
seventy small ops on ``[B, C]``-sized tensors, so the loss keeps both low:

* the signals are gathered once into one contiguous tensor of rows
  (:func:`_rows`: float32, or float64 where an input is); its float64 copy
  exists only chunk by chunk on the CPU (``_CPU_CHUNK`` samples, one buffer
  that is read back from cache), in one pass elsewhere;
* the backward is written by hand (:class:`_OrPitLoss`): the forward also
  takes, for every candidate, the derivatives of its two scores with respect
  to their inner product and their output's energy, and keeps the chosen
  candidate's as weights of the rows; the backward is then one batched
  product of those weights with the rows (float32 for float32 inputs,
  float64 for float64). What it keeps is the rows, about the size of the
  inputs, and no float64 copy. Its float32 gradient differs from the
  float64 one by about 1e-6 relative;
* :func:`orpit_scores` runs the same statistics under autograd and checks the
  hand-written backward in the tests.

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
import math
import typing

import torch

from modules.losses.common import autocast_off, check_signals, output_dtype
from modules.losses.si_snr import si_snr_from_stats

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


# On the CPU the float64 copies are made in chunks of this many samples (a buffer of ``B x (C + 4)`` rows that
# stays in cache); on an accelerator in one pass.
_CPU_CHUNK = 16384
_DB = 10.0 / math.log(10.0)


def _rows(estimates, sources, noise, lengths):
    """``[B, K, T]``, ``K = C + 4``: the rows ``s_hat, r_hat, s_1 .. s_C, noise, valid mask``, one contiguous tensor.

    The valid-mask row (ones on each item's valid samples) gives every
    signal's sum and, against itself, the item's length; every other row is
    zero on padded samples, so padding counts nowhere. float32 (from lower
    precisions too), float64 where the estimates or the sources are; the
    loss keeps this tensor for its backward, whose gradient is a
    combination of the rows.
    """
    batch, length, n_src = sources.shape
    dtype = torch.float64 if torch.float64 in (estimates.dtype, sources.dtype) else torch.float32
    rows = torch.empty(batch, n_src + 4, length, dtype=dtype, device=sources.device)
    rows[:, :2].copy_(estimates.transpose(1, 2))
    rows[:, 2:-2].copy_(sources.transpose(1, 2))
    if noise is None:
        rows[:, -2].zero_()
    else:
        rows[:, -2].copy_(noise)
    if lengths is None:
        rows[:, -1].fill_(1.0)
    else:
        rows[:, -1].copy_(_valid(lengths, length, sources.device))
        rows[:, :-1].mul_(rows[:, -1:])
    return rows


def _valid(lengths, length, device):
    """``[B, T]`` bool, ``True`` on each item's valid samples."""
    return torch.arange(length, device=device)[None, :] < lengths.to(device)[:, None]


def _gram(rows):
    """float64 inner products ``[B, K, K]`` of the rows of :func:`_rows`.

    Products of float32 values are exact in float64, so the only rounding
    is float64 accumulation. Two blocks are computed, the outputs against
    every row and the other rows among themselves (the outputs against the
    others is the transpose of part of the first). On the CPU the float64
    copy is made ``_CPU_CHUNK`` samples at a time into one buffer, which is
    read back from cache and spares the allocator a large block per call.
    """
    batch, n_rows, length = rows.shape
    chunk = min(length, _CPU_CHUNK) if rows.device.type == "cpu" else length
    buffer = torch.empty(batch, n_rows, chunk, dtype=torch.float64, device=rows.device)
    with autocast_off(rows.device):
        for start in range(0, length, chunk):
            part = buffer[..., : min(chunk, length - start)]
            part.copy_(rows[..., start : start + chunk])
            if start == 0:
                outputs = torch.bmm(part[:, :2], part.transpose(1, 2))  # [B, 2, K]
                others = torch.bmm(part[:, 2:], part[:, 2:].transpose(1, 2))  # [B, K - 2, K - 2]
            else:
                outputs.baddbmm_(part[:, :2], part.transpose(1, 2))
                others.baddbmm_(part[:, 2:], part[:, 2:].transpose(1, 2))
    return torch.cat([outputs, torch.cat([outputs[:, :, 2:].transpose(1, 2), others], dim=2)], dim=1)


def _combine(coef, rows, dtype):
    """``[B, T, 2]`` in ``dtype``: ``sum_k coef[:, a, k] row_k`` for ``a`` = the two outputs (one batched product).

    The gradient of anything computed from :func:`_gram` with respect to the
    outputs is such a combination; it is zero on padded samples, as every row
    is there.
    """
    with autocast_off(rows.device):
        grad = torch.bmm(coef.to(rows.dtype), rows)
    return grad.transpose(1, 2).to(dtype)


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
    weights: torch.Tensor  # [B, 2C, C + 1]: W
    neg_means: torch.Tensor  # [B, K - 1, 1]: minus each row's mean over the valid samples
    silent: torch.Tensor  # [B] bool: items whose rest is silence (one real source, no noise)


def _statistics(gram, source_mask, noise_mask):
    """Zero-mean statistics of the outputs against every candidate's two references.

    The references are combinations of the sources and the noise: ``s_i``,
    and its rest ``total - s_i`` with ``total`` the real sources plus the
    real noise. With ``W`` (``[B, 2C, C + 1]``) their weights and ``G`` the
    zero-mean Gram matrix (``<x - mean x, y - mean y> = <x, y> - sum x sum y
    / n``), ``W G`` holds every inner product and ``diag(W G W^T)`` every
    energy (:class:`_Statistics`). An item with one real signal in all is
    flagged ``silent`` (when that signal is the noise, the item has no
    candidate and its flag is never read).
    """
    batch, n_src = source_mask.shape
    sums = gram[:, -1:, :-1]
    neg_means = sums / -gram[:, -1:, -1:]
    centred = torch.baddbmm(gram[:, :-1, :-1], sums.transpose(1, 2), neg_means)
    base, rest = _constants(n_src, gram.device)
    real = torch.cat([source_mask, noise_mask[:, None]], dim=1).to(gram.dtype)
    weights = torch.addcmul(base, rest, real[:, None, :])
    products = torch.bmm(weights, centred[:, 2:])  # [B, 2C, K - 1]
    ref_energy = (products[..., 2:] * weights).sum(-1).clamp_min(0.0).view(batch, 2, n_src)
    dot = products.view(batch, 2, n_src, -1)[..., :2].diagonal(dim1=1, dim2=3).transpose(1, 2)
    est_energy = torch.diagonal(centred, dim1=1, dim2=2)[:, :2]
    return _Statistics(dot, est_energy, ref_energy, weights, neg_means.transpose(1, 2), real.sum(-1) == 1)


def _scores(dot, est_energy, ref_energy, silent, eps, silence_snr_max):
    """``[B, 2, C]`` scores: SI-SNR, and for a silent rest (``silent`` items) the capped residual level."""
    scores = si_snr_from_stats(dot, est_energy[:, :, None], ref_energy, eps)
    floor = 10.0 ** (-float(silence_snr_max) / 10.0)
    silence = torch.log10(est_energy[:, 1:] / (ref_energy[:, 0] + eps) + floor).mul(-10.0)  # [B, C]
    return torch.cat([scores[:, :1], torch.where(silent[:, None, None], silence[:, None], scores[:, 1:])], dim=1)


def _scores_and_partials(dot, est_energy, ref_energy, silent, eps, floor):
    """:func:`_scores` in bels, with their derivatives, for every candidate (all ``[B, 2, C]``).

    With the statistics read as :func:`modules.losses.si_snr_from_stats`
    reads them (``alpha = dot / (E_ref + eps)``, target ``alpha^2 E_ref``,
    noise ``N = max(E_est - 2 alpha dot + alpha^2 E_ref, 0) + eps``, ratio
    ``r = target / N``), returns ``log10(r + eps)`` (the score in bels: the
    score in dB is ``S = 10 log10(r + eps)``) and ``d``, ``q`` such that::

        d S / d dot   =  2 D d      d = (p - q) alpha E_ref / (E_ref + eps) + 2 alpha q
        d S / d E_est = -D q        p = 1 / ((r + eps) N),   q = p r (0 where N was clamped)

    with ``D = 10 / ln 10``. For a silent rest the score is
    ``log10((E + eps) / level)``, ``level = E_est + floor (E + eps)``, and
    ``q = 1 / level``. The constant factors are left to the caller, which
    folds them into one scale of the gradient.
    """
    est_energy = est_energy[:, :, None]
    ref_eps = ref_energy + eps
    alpha = dot / ref_eps
    target = alpha.square().mul_(ref_energy)
    raw_noise = torch.addcmul(target + est_energy, alpha, dot, value=-2.0)
    noise = raw_noise.clamp_min(0.0).add_(eps)
    ratio = target / noise
    shifted = ratio + eps
    p = (shifted * noise).reciprocal_()
    q = (p * ratio).masked_fill_(raw_noise < 0, 0.0)  # the clamp passes no gradient where its input is below 0
    d = torch.addcmul((p - q).mul_(ref_energy / ref_eps).mul_(alpha), alpha, q, value=2.0)
    # A silent rest: only the residual's energy counts (its reference weights are all zero, so its dot, alpha and
    # d are exactly 0 already).
    level = torch.add(est_energy[:, 1], ref_eps[:, 0], alpha=floor)[:, None]  # [B, 1, C]
    silent_rest = silent[:, None, None] & _rest_output(silent.device)
    scores = torch.where(silent_rest, torch.log10(ref_eps[:, :1] / level), torch.log10(shifted))
    return scores, d, torch.where(silent_rest, level.reciprocal(), q)


@functools.lru_cache(maxsize=16)
def _rest_output(device):
    """``[2, 1]`` bool: ``True`` for the rest output."""
    return torch.tensor([[False], [True]], device=device)


@functools.lru_cache(maxsize=16)
def _own_energy(device):
    """``[2, 1, 2]``: ``-I``, where each output's ``q`` enters on its own row (:func:`_chosen_coefficients`)."""
    return torch.eye(2, dtype=torch.float64, device=device)[:, None, :].neg()


def _chosen_coefficients(index, d, q, weights, neg_means):
    """``[B, 2, K]``: the gradient of the chosen candidate's two scores as weights of the rows, over ``2 D``.

    With ``d``, ``q`` of :func:`_scores_and_partials`, the gradient on output
    ``a`` is ``2 D (d (ref - mean ref) - q (est_a - mean est_a))`` on the
    valid samples (``d dot / d est_a = ref - mean ref``, ``d E_est / d est_a
    = 2 (est_a - mean est_a)``): ``-q`` on the output's own row, the
    reference's weights times ``d``, and on the valid-mask row the weighted
    sum of ``neg_means`` (:func:`_statistics`).
    """
    batch, _, n_src = d.shape
    body = torch.cat([q[..., None] * _own_energy(q.device), weights.view(batch, 2, n_src, -1) * d[..., None]], -1)
    body = body.gather(2, index[:, None, None, None].expand(-1, 2, 1, body.shape[-1]))[:, :, 0]  # [B, 2, K - 1]
    return torch.cat([body, torch.bmm(body, neg_means)], dim=-1)


class _Gram(torch.autograd.Function):
    """:func:`_gram`, differentiable in the outputs (for :func:`orpit_scores`)."""

    @staticmethod
    def forward(ctx, estimates, sources, noise, lengths):
        """float64 ``[B, K, K]``."""
        rows = _rows(estimates, sources, noise, lengths)
        ctx.save_for_backward(rows)
        ctx.dtype = estimates.dtype
        return _gram(rows)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        """``d/d row_a = sum_k (grad[a, k] + grad[k, a]) row_k`` for the two output rows."""
        coef = grad[:, :2] + grad[:, :, :2].transpose(1, 2)
        return _combine(coef, *ctx.saved_tensors, ctx.dtype), None, None, None


class _OrPitLoss(torch.autograd.Function):
    """The whole loss in one pass, with its gradient written by hand.

    The forward is :func:`orpit_scores`' computation plus the choice of the
    best candidate, and the derivatives of every candidate's two scores with
    respect to their inner product and their output's energy
    (:func:`_scores_and_partials`). The gradient of the chosen candidate's
    two scores is a combination of the rows, whose weights the forward keeps
    (:func:`_chosen_coefficients`); the backward scales them by the incoming
    gradient and takes one batched product (:func:`_combine`). This replaces
    autograd's backward through some 40 small ops (their overhead is much of
    what the loss costs); :func:`orpit_scores`, which autograd
    differentiates through :class:`_Gram`, checks it in the tests.
    """

    @staticmethod
    def forward(ctx, estimates, sources, source_mask, noise, noise_mask, lengths, eps, silence_snr_max):
        """Loss ``[B]`` (float32, float64 for float64 estimates) and the chosen candidate ``[B]``."""
        rows = _rows(estimates, sources, noise, lengths)
        gram = _gram(rows)
        stats = _statistics(gram, source_mask, noise_mask)
        floor = 10.0 ** (-float(silence_snr_max) / 10.0)
        scores, d, q = _scores_and_partials(*stats[:3], stats.silent, eps, floor)  # bels
        padded = ~source_mask
        best, index = scores.sum(1).masked_fill_(padded, torch.finfo(scores.dtype).min).max(dim=-1)
        no_candidate = padded.all(dim=-1)
        coef = _chosen_coefficients(index, d, q, stats.weights, stats.neg_means)
        ctx.save_for_backward(rows, coef.masked_fill_(no_candidate[:, None, None], 0.0))
        ctx.dtype = estimates.dtype
        ctx.mark_non_differentiable(index)
        ctx.set_materialize_grads(False)  # no zeros for the index's gradient
        loss = best.mul(-5.0).masked_fill_(no_candidate, 0.0)  # minus the mean of the two scores in dB
        return loss.to(output_dtype(estimates)), index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_index):
        """Gradient with respect to the estimates (zero on padded samples and for items without candidate)."""
        if grad_loss is None:  # gradients are not materialised: nothing reached the loss
            return (None,) * 8
        rows, coef = ctx.saved_tensors
        coef = coef * grad_loss.mul(-_DB)[:, None, None]  # -0.5 times the 2 D of the coefficients
        return _combine(coef, rows, ctx.dtype), None, None, None, None, None, None, None


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
    gram = _Gram.apply(estimates, sources, noise, lengths)
    stats = _statistics(gram, source_mask, noise_mask)
    one, rest = _scores(*stats[:3], stats.silent, eps, silence_snr_max).unbind(1)
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
    loss, index = _OrPitLoss.apply(
        estimates, sources, source_mask, noise, noise_mask, lengths, float(eps), float(silence_snr_max)
    )
    return loss, index
