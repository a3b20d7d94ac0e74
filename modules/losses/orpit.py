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
hundred small ops on ``[B, C]``-sized tensors, so the loss keeps both low:

* the float64 copies exist only chunk by chunk on the CPU (``_CPU_CHUNK``
  samples, a buffer that is read back from cache), in one pass elsewhere;
* the backward is written by hand (:class:`_OrPitLoss`): per item, the
  derivatives of the two chosen scores with respect to their inner product
  and their output's energy, then one combination of the input signals
  themselves (float32 for float32 inputs, float64 for float64), so nothing
  the size of the signals is kept for it. Its float32 gradient differs from
  the float64 one by about 1e-6 relative;
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


# On the CPU the signals are read in chunks of this many samples (a float64 buffer of ``B x (C + 4)`` rows
# that stays in cache); on an accelerator in one pass.
_CPU_CHUNK = 16384
_DB = 10.0 / math.log(10.0)


def _valid(lengths, length, device):
    """``[B, T]`` bool, ``True`` on each item's valid samples."""
    return torch.arange(length, device=device)[None, :] < lengths.to(device)[:, None]


def _gram(estimates, sources, noise, lengths):
    """float64 inner products ``[B, K, K]`` of the rows ``s_hat, r_hat, s_1 .. s_C, noise, valid mask``.

    The valid-mask row (ones on each item's valid samples) gives every
    signal's sum and, against itself, the item's length; padded samples
    count nowhere. Time is cut into chunks on the CPU (module constant
    ``_CPU_CHUNK``) so that the float64 copies are read back from cache.
    """
    batch, length, n_src = sources.shape
    n_rows = n_src + 4
    chunk = min(length, _CPU_CHUNK) if sources.device.type == "cpu" else length
    gram = torch.zeros(batch, n_rows, n_rows, dtype=torch.float64, device=sources.device)
    buffer = torch.empty(batch, n_rows, chunk, dtype=torch.float64, device=sources.device)
    if noise is None:
        buffer[:, -2].zero_()
    if lengths is None:
        buffer[:, -1].fill_(1.0)
    else:
        valid = _valid(lengths, length, sources.device)
    with autocast_off(sources.device):
        for start in range(0, length, chunk):
            stop = min(start + chunk, length)
            rows = buffer if stop - start == chunk else buffer[..., : stop - start]
            rows[:, :2].copy_(estimates[:, start:stop].transpose(1, 2))
            rows[:, 2:-2].copy_(sources[:, start:stop].transpose(1, 2))
            if noise is not None:
                rows[:, -2].copy_(noise[:, start:stop])
            if lengths is not None:
                rows[:, -1].copy_(valid[:, start:stop])
                rows[:, :-1].mul_(rows[:, -1:])
            gram.baddbmm_(rows, rows.transpose(1, 2))
    return gram


def _combine(coef, estimates, sources, noise, lengths):
    """``[B, T, 2]``: ``sum_k coef[:, a, k] row_k`` for ``a`` = the two outputs, on the valid samples.

    The gradient of anything computed from :func:`_gram` with respect to the
    outputs is such a combination. It is formed from the inputs themselves
    (float32 for float32 and lower inputs, float64 for float64), in two
    batched products, not from float64 copies of them.
    """
    dtype = output_dtype(estimates)
    coef = coef.to(dtype)
    with autocast_off(estimates.device):
        grad = torch.baddbmm(coef[:, :, -1:], coef[:, :, :2], estimates.to(dtype).transpose(1, 2))
        grad.baddbmm_(coef[:, :, 2:-2], sources.to(dtype).transpose(1, 2))
        if noise is not None:
            grad.addcmul_(coef[:, :, -2:-1], noise.to(dtype)[:, None, :])
    if lengths is not None:
        grad.mul_(_valid(lengths, grad.shape[-1], grad.device)[:, None, :])
    return grad.transpose(1, 2).to(estimates.dtype)


@functools.lru_cache(maxsize=16)
def _constants(n_src, device):
    """Fixed parts of :func:`_statistics`' reference rows, per number of candidates and device."""
    n_rows = n_src + 3
    base = torch.zeros(2 * n_src, n_rows, dtype=torch.float64)
    base[:n_src, 2:-1] = torch.eye(n_src)  # s_i
    base[n_src:, 2:-1] = -torch.eye(n_src)  # rest_i = total - s_i
    rest = torch.tensor([0.0] * n_src + [1.0] * n_src, dtype=torch.float64)[:, None]
    return base.to(device), rest.to(device)


def _statistics(gram, source_mask, noise_mask):
    """Zero-mean statistics of the outputs against every candidate's two references.

    The references are combinations of the rows: ``s_i``, and its rest
    ``total - s_i`` with ``total`` the real sources plus the real noise, so
    with ``R`` (``[B, 2C, K]``) their weights and ``G`` the zero-mean Gram
    matrix (``<x - mean x, y - mean y> = <x, y> - sum x sum y / n``), ``R G``
    holds every inner product and ``diag(R G R^T)`` every energy.

    Returns
    -------
    dot : ``[B, 2, C]``: output ``a`` against reference ``a`` of candidate ``i``.
    est_energy : ``[B, 2]``.
    ref_energy : ``[B, 2, C]`` (clamped at 0).
    refs : ``[B, 2C, K]``, ``R``.
    """
    batch, n_src = source_mask.shape
    sums = gram[:, -1:, :-1]
    centred = torch.baddbmm(gram[:, :-1, :-1], sums.transpose(1, 2), sums / -gram[:, -1:, -1:])
    base, rest = _constants(n_src, gram.device)
    total = torch.nn.functional.pad(torch.cat([source_mask, noise_mask[:, None]], dim=1).to(gram.dtype), (2, 0))
    refs = torch.addcmul(base, rest, total[:, None, :])
    products = torch.bmm(refs, centred)  # [B, 2C, K]
    ref_energy = (products * refs).sum(-1).clamp_min(0.0).view(batch, 2, n_src)
    dot = products[..., :2].reshape(batch, 2, n_src, 2).diagonal(dim1=1, dim2=3).transpose(1, 2)
    return dot, torch.diagonal(centred, dim1=1, dim2=2)[:, :2], ref_energy, refs


def _scores(dot, est_energy, ref_energy, silent, eps, silence_snr_max):
    """``[B, 2, C]`` scores: SI-SNR, and for a silent rest (``silent`` items) the capped residual level."""
    scores = si_snr_from_stats(dot, est_energy[:, :, None], ref_energy, eps)
    floor = 10.0 ** (-float(silence_snr_max) / 10.0)
    silence = torch.log10(est_energy[:, 1:] / (ref_energy[:, 0] + eps) + floor).mul(-10.0)  # [B, C]
    return torch.cat([scores[:, :1], torch.where(silent[:, None, None], silence[:, None], scores[:, 1:])], dim=1)


def _si_snr_partials(dot, est_energy, ref_energy, eps):
    """Derivatives of :func:`modules.losses.si_snr_from_stats` with respect to ``dot`` and ``est_energy``."""
    alpha = dot / (ref_energy + eps)
    target_energy = alpha.square() * ref_energy
    raw_noise = est_energy - 2.0 * alpha * dot + target_energy
    noise_energy = raw_noise.clamp_min(0.0) + eps
    ratio = target_energy / noise_energy
    d_ratio = _DB / (ratio + eps) / noise_energy
    d_target = 2.0 * alpha * ref_energy / (ref_energy + eps)  # d target_energy / d dot
    live = raw_noise >= 0  # clamp_min passes the gradient where its input is not below 0
    d_dot = d_ratio * (d_target - ratio * torch.where(live, d_target - 4.0 * alpha, 0.0))
    d_energy = torch.where(live, -d_ratio * ratio, 0.0)
    return d_dot, d_energy


class _Gram(torch.autograd.Function):
    """:func:`_gram`, differentiable in the outputs (for :func:`orpit_scores`)."""

    @staticmethod
    def forward(ctx, estimates, sources, noise, lengths):
        """float64 ``[B, K, K]``."""
        ctx.save_for_backward(estimates, sources, noise, lengths)
        return _gram(estimates, sources, noise, lengths)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        """``d/d row_a = sum_k (grad[a, k] + grad[k, a]) row_k`` for the two output rows."""
        coef = grad[:, :2] + grad[:, :, :2].transpose(1, 2)
        return _combine(coef, *ctx.saved_tensors), None, None, None


class _OrPitLoss(torch.autograd.Function):
    """The whole loss in one pass, with its gradient written by hand.

    The forward is :func:`orpit_scores`' computation plus the choice of the
    best candidate. The backward needs, per item, only the derivatives of
    the two chosen scores with respect to their inner product and their
    output's energy: the gradient on output ``a`` is
    ``d_dot (ref - mean ref) + 2 d_energy (est_a - mean est_a)`` on the
    valid samples, a combination of the rows (:func:`_combine`). This
    replaces autograd's backward through some 40 small ops (their overhead
    is much of what the loss costs); :func:`orpit_scores`, which autograd
    differentiates through :class:`_Gram`, checks it in the tests.
    """

    @staticmethod
    def forward(ctx, estimates, sources, source_mask, noise, noise_mask, lengths, eps, silence_snr_max):
        """Loss ``[B]`` (float64) and the chosen candidate ``[B]``."""
        gram = _gram(estimates, sources, noise, lengths)
        dot, est_energy, ref_energy, refs = _statistics(gram, source_mask, noise_mask)
        silent = (source_mask.sum(-1) == 1) & ~noise_mask
        scores = _scores(dot, est_energy, ref_energy, silent, eps, silence_snr_max).sum(1)  # [B, C]
        best, index = torch.where(source_mask, scores, torch.finfo(scores.dtype).min).max(dim=-1)
        has_candidate = source_mask.any(dim=-1)
        ctx.save_for_backward(
            estimates, sources, noise, lengths, gram[:, -1], refs, dot, est_energy, ref_energy, index, silent
        )
        ctx.eps, ctx.silence_floor, ctx.has_candidate = eps, 10.0 ** (-float(silence_snr_max) / 10.0), has_candidate
        ctx.mark_non_differentiable(index)
        return torch.where(has_candidate, -0.5 * best, 0.0), index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_index):
        """Gradient with respect to the estimates (zero on padded samples and for items without candidate)."""
        estimates, sources, noise, lengths, sums, refs, dot, est_energy, ref_energy, index, silent = ctx.saved_tensors
        batch, n_src = dot.shape[0], dot.shape[-1]
        pick = index[:, None, None].expand(-1, 2, 1)
        ref_energy = ref_energy.gather(2, pick)[..., 0]  # [B, 2]: the chosen candidate's
        d_dot, d_energy = _si_snr_partials(dot.gather(2, pick)[..., 0], est_energy, ref_energy, ctx.eps)
        # A silent rest scores -10 log10(e / (E + eps) + floor): only the residual's energy e counts.
        d_silence = -_DB / (est_energy[:, 1] + ctx.silence_floor * (ref_energy[:, 0] + ctx.eps))
        d_dot[:, 1].masked_fill_(silent, 0.0)
        d_energy[:, 1] = torch.where(silent, d_silence, d_energy[:, 1])
        # The chosen references' rows, weighted; the outputs' own energies; then each row's mean (sum / n).
        chosen = refs.view(batch, 2, n_src, -1).gather(2, pick[..., None].expand(-1, -1, -1, refs.shape[-1]))
        coef = chosen[:, :, 0] * d_dot[..., None]  # [B, 2, K]
        coef[:, :, :2] += torch.diag_embed(2.0 * d_energy)
        offset = -(coef * sums[:, None, :-1]).sum(-1, keepdim=True) / sums[:, None, -1:]
        weight = torch.where(ctx.has_candidate, -0.5 * grad_loss.to(torch.float64), 0.0)[:, None, None]
        coef = torch.cat([coef, offset], dim=-1).mul_(weight)  # [B, 2, K + 1]
        return _combine(coef, estimates, sources, noise, lengths), None, None, None, None, None, None, None


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
    dot, est_energy, ref_energy, _ = _statistics(gram, source_mask, noise_mask)
    silent = (source_mask.sum(-1) == 1) & ~noise_mask
    one, rest = _scores(dot, est_energy, ref_energy, silent, eps, silence_snr_max).unbind(1)
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
    return loss.to(output_dtype(estimates)), index
