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

Patch-wise contrastive loss
---------------------------
:func:`nass_contrastive_loss` (NASS, equation 6) works on encoder features
laid out as ``[batch, n_src, N, L]`` (``N`` filters, ``L`` frames) and
reuses the permutation of :func:`pit_si_snr_loss`. Its logits and
log-softmax are computed in float32 with autocast disabled; it never
synchronises with the host.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from typing import Callable

import torch

__all__ = [
    "apply_perm",
    "nass_contrastive_loss",
    "pairwise_si_snr",
    "patch_nce_loss",
    "pit_si_snr_loss",
    "sample_patch_positions",
]

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


# ----------------------------------------------------------------------------
# Patch-wise contrastive loss (NASS)

#: Directions of the NASS contrastive loss: speech -> noise, noise -> speech, or the sum of both.
NASS_DIRECTIONS = ("s2n", "n2s", "both")


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast for ``device``'s type (a no-op where autocast is unknown)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not support
        return contextlib.nullcontext()


def sample_patch_positions(
    n_frames: int,
    n_patches: int,
    batch: int,
    device: torch.device | str | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random frame positions, drawn independently for every batch item.

    Arguments
    ---------
    n_frames : int
        Number of frames ``L`` to draw from (positions are in ``[0, L)``).
    n_patches : int
        Number of positions ``M`` per batch item.
    batch : int
        Number of batch items.
    device : torch.device or str or None
        Device of the returned tensor (``None``: the CPU).
    generator : torch.Generator, optional
        Source of randomness (the global one by default). The numbers are
        drawn on the generator's device and the result moved to ``device``,
        so a seeded CPU generator gives the same positions on any device.

    Returns
    -------
    torch.Tensor
        ``[batch, n_patches]`` long. Without replacement (distinct positions
        in each row, a uniformly random subset in random order) when
        ``n_patches <= n_frames``; with replacement (independent uniform
        draws) otherwise. Rows are drawn in one vectorised call: the
        argsort of uniform noise, or ``torch.randint``.

    Raises
    ------
    ValueError
        If ``n_frames`` or ``n_patches`` is below 1 or ``batch`` is negative.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> pos = sample_patch_positions(100, 8, 2, "cpu", generator=gen)
    >>> pos.shape, pos.dtype
    (torch.Size([2, 8]), torch.int64)
    >>> [len(set(row.tolist())) for row in pos]  # distinct within each item
    [8, 8]
    >>> sample_patch_positions(3, 10, 1, "cpu").shape  # more patches than frames: with replacement
    torch.Size([1, 10])
    """
    if n_frames < 1 or n_patches < 1 or batch < 0:
        raise ValueError(
            f"expected n_frames >= 1, n_patches >= 1 and batch >= 0, got {n_frames}, {n_patches} and {batch}"
        )
    device = torch.device("cpu") if device is None else torch.device(device)
    draw_device = generator.device if generator is not None else device
    if n_patches <= n_frames:
        noise = torch.rand(batch, n_frames, generator=generator, device=draw_device)
        positions = noise.argsort(dim=-1)[:, :n_patches]
    else:
        positions = torch.randint(n_frames, (batch, n_patches), generator=generator, device=draw_device)
    return positions.to(device)


def patch_nce_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float = 0.07,
) -> torch.Tensor:
    """PatchNCE (InfoNCE) loss of embedded patches, per batch item.

    For query patch ``i`` of source ``s`` the logits are
    ``[q_i . p_i, q_i . n_1, ..., q_i . n_K] / tau`` and the loss is the
    cross-entropy with the positive in class 0.

    Arguments
    ---------
    query : torch.Tensor
        ``[B, S, M, Q]``: ``M`` query embeddings for each of ``S`` sources.
    positive : torch.Tensor
        ``[B, S, M, Q]``: ``positive[b, s, i]`` is the positive of
        ``query[b, s, i]``.
    negatives : torch.Tensor
        ``[B, S, K, Q]``: the ``K`` negatives shared by all queries of
        ``(b, s)`` (``K = M`` in NASS).
    tau : float
        Temperature (0.07 in NASS).

    Returns
    -------
    torch.Tensor
        ``[B]``: the cross-entropy averaged over the ``M`` patches and over
        the ``S`` sources. float32 (float64 if ``query`` is float64).

    Raises
    ------
    ValueError
        On inconsistent shapes or a non-positive ``tau``.

    Notes
    -----
    Embeddings are expected L2-normalised (see
    :class:`modules.models.PatchSampler`), so that the dot products are
    cosine similarities; this function does not normalise them.

    Reduction: the mean over patches is that of PyTorch's
    ``CrossEntropyLoss`` as used by CUT's PatchNCE loss and by the NASS
    authors' code; equation 6 of the paper writes a sum over ``i``, which
    is ``M`` times this value. The weight lambda (2 or 3 in the paper) was
    tuned for the mean form. The mean over sources is equation 6's
    ``1 / C``. Every negative is kept: unlike the authors' code (adapted
    from CUT, where keys and positives come from the same tensor) the
    negative at the query's own position is not masked out.

    The inputs are cast to float32 and the logits (one batched matrix
    product ``[B, S, M, Q] x [B, S, Q, K]`` for the negatives) and their
    log-sum-exp are computed with autocast disabled, so the function is
    safe inside a ``torch.autocast`` region. Gradients flow to all three
    inputs; detach the ones that should be constants before calling.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> q = torch.nn.functional.normalize(torch.randn(2, 3, 16, 8), dim=-1)
    >>> n = torch.nn.functional.normalize(torch.randn(2, 3, 16, 8), dim=-1)
    >>> loss = patch_nce_loss(q, q, n)  # positives identical to the queries
    >>> loss.shape
    torch.Size([2])
    >>> bool((loss < patch_nce_loss(q, n, q)).all())  # ... beat positives among the negatives
    True
    """
    if query.ndim != 4 or positive.ndim != 4 or negatives.ndim != 4:
        raise ValueError(
            "expected query, positive and negatives of shape [B, S, M, Q], [B, S, M, Q] and [B, S, K, Q], got "
            f"{tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}"
        )
    if (
        positive.shape != query.shape
        or negatives.shape[:2] != query.shape[:2]
        or negatives.shape[3] != query.shape[3]
        or query.shape[2] < 1
        or negatives.shape[2] < 1
    ):
        raise ValueError(
            "query and positive must have the same shape [B, S, M, Q] and negatives [B, S, K, Q] "
            f"(M, K >= 1), got {tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}"
        )
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    dtype = _output_dtype(query)
    with _autocast_off(query.device):
        query, positive, negatives = query.to(dtype), positive.to(dtype), negatives.to(dtype)
        pos_logit = (query * positive).sum(dim=-1, keepdim=True)  # [B, S, M, 1]
        neg_logits = torch.matmul(query, negatives.transpose(-1, -2))  # [B, S, M, K]
        logits = torch.cat([pos_logit, neg_logits], dim=-1) / tau
        # cross-entropy with target class 0
        loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # [B, S, M]
    return loss.mean(dim=(1, 2))


def _gather_patches(feats: torch.Tensor, sources: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Patches of ``feats`` ``[B, K, N, L]`` as ``[B, S, M, N]``.

    ``out[b, s, i] = feats[b, sources[b, s], :, positions[b, i]]``, with
    ``sources`` ``[B, S]`` and ``positions`` ``[B, M]`` long, in one
    advanced-indexing gather.
    """
    batch_index = torch.arange(feats.shape[0], device=feats.device)[:, None, None]
    return feats.transpose(2, 3)[batch_index, sources[:, :, None], positions[:, None, :]]


def _check_index(name: str, index: torch.Tensor, shape: tuple) -> None:
    """Raise ``ValueError`` unless ``index`` is an integer tensor of ``shape``."""
    bad_dtype = index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool
    if bad_dtype or tuple(index.shape) != tuple(shape):
        raise ValueError(
            f"expected {name} as an integer tensor of shape {tuple(shape)}, got {index.dtype} {tuple(index.shape)}"
        )


def nass_contrastive_loss(
    est_feats: torch.Tensor,
    true_feats: torch.Tensor,
    perm: torch.Tensor,
    sampler: Callable[[torch.Tensor], torch.Tensor],
    n_spks: int,
    n_patches: int = 256,
    tau: float = 0.07,
    direction: str = "s2n",
    generator: torch.Generator | None = None,
    *,
    positions: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Patch-wise contrastive loss of NASS (equation 6), vectorised over batch, speakers and patches.

    Arguments
    ---------
    est_feats : torch.Tensor
        ``[B, n_spks + 1, N, L]``: the masked encoder features
        ``h_k = m_k * h_x`` of all outputs, the noise-speaker included
        (it is an ordinary output under PIT).
    true_feats : torch.Tensor
        ``[B, n_spks + 1, N, L]``: the encoder applied to the clean
        sources, speakers first and the noise last. Always treated as a
        constant (detached inside).
    perm : torch.Tensor
        ``[B, n_spks + 1]`` long, from :func:`pit_si_snr_loss` over the
        ``n_spks + 1`` targets (speakers first, noise last):
        ``est_feats[b, perm[b, j]]`` is the estimate matched to target
        ``j`` (the :func:`apply_perm` contract), for every item ``b``.
    sampler : callable
        Shared projection of patches ``[..., N] -> [..., Q]`` returning
        L2-normalised embeddings, e.g. :class:`modules.models.PatchSampler`.
    n_spks : int
        Number of speakers ``C``.
    n_patches : int
        Number of sampled positions ``M`` per batch item (256 in NASS);
        drawn without replacement when ``M <= L``, with replacement
        otherwise (see :func:`sample_patch_positions`).
    tau : float
        Temperature (0.07 in NASS).
    direction : str
        ``"s2n"`` (the paper's default, S→N): for each speaker ``t``, the
        query is the estimate matched to ``t``, the positive the ground
        truth of ``t`` at the same positions and the negatives the noise
        estimate at the ``M`` positions. ``"n2s"`` (N→S): the query is the
        noise estimate, the positive the true noise and the negatives the
        estimate of speaker ``t``, one term per speaker. ``"both"``: the
        sum of the two.
    generator : torch.Generator, optional
        Source of randomness for the positions.
    positions : torch.Tensor, optional
        ``[B, M]`` long frame positions to use instead of drawing them
        (``n_patches`` and ``generator`` are then ignored).
    reduction : str
        ``"mean"`` (default): the mean over batch items, a scalar;
        ``"none"``: the per-item losses ``[B]``.

    Returns
    -------
    torch.Tensor
        The loss (float32, or float64 for float64 embeddings), not yet
        weighted by lambda: the caller adds ``lambda * loss`` to the
        SI-SNR loss (equation 8). Per item it is the mean over the ``C``
        speakers of the PatchNCE cross-entropy averaged over the ``M``
        patches (see :func:`patch_nce_loss` for the mean-versus-sum
        convention); ``"both"`` adds the two directions.

    Raises
    ------
    ValueError
        On inconsistent shapes, an unknown ``direction`` or ``reduction``,
        ``n_spks < 1``, ``n_patches < 1`` or a non-positive ``tau``.

    Notes
    -----
    The ``M`` positions are drawn once per batch item and shared by the
    query, the positive and the negatives, by all speakers and by both
    directions. Gradients reach ``est_feats`` only through the query
    branch (``"s2n"``: the speakers' estimates; ``"n2s"``: the noise
    estimate; ``"both"``: all outputs) and the sampler's parameters only
    through the query embeddings: the positive and negative embeddings are
    computed without gradient, which is the same as detaching them after
    the projection as CUT's PatchNCE loss and the NASS authors' code do.
    Unlike that code, which reorders the outputs of the whole batch with
    the permutation of item 0, ``perm`` is applied per item. Everything
    stays on the device: no host synchronisation.

    Example
    -------
    >>> from modules.models import PatchSampler
    >>> _ = torch.manual_seed(0)
    >>> true_feats = torch.rand(2, 3, 16, 50)  # 2 speakers + noise, N = 16, L = 50
    >>> perm = torch.tensor([[1, 0, 2], [2, 1, 0]])
    >>> est_feats = torch.empty_like(true_feats)
    >>> _ = est_feats.scatter_(1, perm[:, :, None, None].expand_as(true_feats), true_feats)  # perfect estimates
    >>> _ = est_feats.requires_grad_()
    >>> sampler = PatchSampler(16, features=32)
    >>> loss = nass_contrastive_loss(est_feats, true_feats, perm, sampler, n_spks=2, n_patches=20)
    >>> loss.shape, loss.dtype
    (torch.Size([]), torch.float32)
    >>> loss.backward()
    >>> noise_out = perm[:, 2]  # outputs matched to the noise get no gradient in S→N
    >>> bool((est_feats.grad[torch.arange(2), noise_out] == 0).all())
    True
    """
    if est_feats.ndim != 4 or true_feats.ndim != 4:
        raise ValueError(
            "expected est_feats and true_feats of shape [batch, n_spks + 1, N, L], got "
            f"{tuple(est_feats.shape)} and {tuple(true_feats.shape)}"
        )
    if n_spks < 1:
        raise ValueError(f"n_spks must be at least 1, got {n_spks}")
    batch, n_src, _, n_frames = est_feats.shape
    if n_src != n_spks + 1 or true_feats.shape != est_feats.shape:
        raise ValueError(
            f"expected est_feats and true_feats both of shape [batch, n_spks + 1 = {n_spks + 1}, N, L], got "
            f"{tuple(est_feats.shape)} and {tuple(true_feats.shape)}"
        )
    if n_frames < 1:
        raise ValueError(f"expected at least one frame, got {tuple(est_feats.shape)}")
    _check_index("perm", perm, (batch, n_src))
    if direction not in NASS_DIRECTIONS:
        raise ValueError(f"direction must be one of {NASS_DIRECTIONS}, got {direction!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    device = est_feats.device
    if positions is None:
        if n_patches < 1:
            raise ValueError(f"n_patches must be at least 1, got {n_patches}")
        positions = sample_patch_positions(n_frames, n_patches, batch, device, generator=generator)
    else:
        if positions.ndim != 2 or positions.shape[1] < 1:
            raise ValueError(f"expected positions of shape [batch, M], got {tuple(positions.shape)}")
        _check_index("positions", positions, (batch, positions.shape[1]))
    positions = positions.to(device=device, dtype=torch.long)
    perm = perm.to(device=device, dtype=torch.long)

    # Estimates reordered to the targets (speakers, then noise) at the sampled positions.
    est_patches = _gather_patches(est_feats, perm, positions)  # [B, C + 1, M, N]
    # Ground-truth embeddings (no gradient), only of the sources a direction compares with.
    first = n_spks if direction == "n2s" else 0
    last = n_spks if direction == "s2n" else n_src
    with torch.no_grad():
        sources = torch.arange(first, last, device=device).expand(batch, last - first)
        true_emb = sampler(_gather_patches(true_feats.detach(), sources, positions))  # [B, last - first, M, Q]
    true_spk, true_noise = true_emb[:, : n_spks - first], true_emb[:, n_spks - first :]

    # Only the query branch is projected with gradient.
    if direction == "both":
        est_emb = sampler(est_patches)
        spk_query, noise_query = est_emb[:, :n_spks], est_emb[:, n_spks:]
        spk_keys, noise_keys = spk_query.detach(), noise_query.detach()
    elif direction == "s2n":
        spk_query = sampler(est_patches[:, :n_spks])
        with torch.no_grad():
            noise_keys = sampler(est_patches[:, n_spks:].detach())
    else:
        noise_query = sampler(est_patches[:, n_spks:])
        with torch.no_grad():
            spk_keys = sampler(est_patches[:, :n_spks].detach())

    terms = []
    if direction in ("s2n", "both"):
        terms.append(patch_nce_loss(spk_query, true_spk, noise_keys.expand_as(spk_query), tau=tau))
    if direction in ("n2s", "both"):
        terms.append(patch_nce_loss(noise_query.expand_as(spk_keys), true_noise.expand_as(spk_keys), spk_keys, tau=tau))
    loss = terms[0] if len(terms) == 1 else terms[0] + terms[1]  # [B]
    return loss.mean() if reduction == "mean" else loss
