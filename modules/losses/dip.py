"""DIP pretraining losses: mixture predictive coding (MPC) and mixture invariant coding (MIC).

Paper: Wang, Pan, Li, Wang and Li, "Speech Separation with Pretrained Frontend
to Minimize Domain Mismatch", IEEE/ACM TASLP 2024 (equations 3-12); authors'
code: the fairseq fork github.com/Wufan0Willan/DIP (criterion
``wav2vec_mmd_cls5``, model ``wav2vec2mmd8content``, config
``wav2vec2_loss10_neg100f.yaml``), read for the constants only.

* :func:`sample_negative_indices`, :func:`contrastive_logits`, :func:`mpc_nce_loss`:
  equation 5, the wav2vec 2.0 contrastive task. For every masked frame the
  context vector (``final_proj`` of the transformer output) must pick its own
  quantised target among ``K`` distractors drawn uniformly from the other masked
  frames of the same utterance; cosine similarity over a temperature (0.1).
* :func:`codebook_diversity_loss`: the diversity term ``L_d`` of equation 3
  (wav2vec 2.0's, as the authors' code computes it).
* :func:`mpc_loss`: equation 3, ``L_NCE + w_d L_d + w_f L_f``.
* :func:`cue_probability`: equations 8-10, the InfoNCE estimate of each
  utterance's contextual-cue probability, without gradient.
* :func:`utterance_statistics`, :func:`mmd_loss`: equation 11 on utterance-level
  statistics, linear or Gaussian kernel.
* :func:`mic_loss`: equation 12, ``L_MPC(C_x, Z_x) + L_MPC(C_y, Z_y) + alpha L_MMD``.

Shapes: ``B`` utterances, ``M`` masked frames per utterance (the masking of
:func:`modules.models.dip.compute_span_mask` gives every utterance of a batch
the same count, as fairseq's ``require_same_masks``), ``F`` the projected
dimension (256), ``K`` distractors, ``G`` codebooks of ``V`` entries.

Departures from the paper and the authors' code (each also in the README):

* Diversity loss. Equation 4 as printed (``-log`` of the mean of ``p log p``)
  is not a loss that is minimal for uniform code use; we implement wav2vec 2.0's
  ``(GV - sum_g exp(H(pbar_g))) / GV``, which the authors' code uses, with their
  weight 0.1. Their configuration also adds wav2vec 2.0's feature penalty
  (mean square of the CNN output) with weight 10: included (``penalty_weight``).
* MMD statistics and weights. The paper writes equation 11 over "cues" with
  probabilities ``p(C_j)`` and no normalisation; the authors' code uses one
  statistic per utterance (mean and unbiased variance over time of the
  transformer output, concatenated) weighted by the estimated probability and
  averaged over the batch: ``|mean_j p_j phi_j - mean_k q_k psi_k|^2``. We do
  the same (weights ``p_j / M``), which is equation 11 with those weights; for
  the linear kernel the two agree exactly. Without the ``1 / M`` the loss would
  scale with the squared batch size, and alpha = 10 was tuned with it.
* Loss scale. The authors' criterion averages the two branches' per-frame terms
  over the pooled masked frames and adds ``alpha * MMD / 2``; with equal
  masked-frame counts this is exactly half of equation 12 as written here
  (``MPC_x + MPC_y + alpha MMD``), so the relative weights are theirs and only
  the overall scale differs (Adam is insensitive to it).
* Cue probability. The authors' loop over batch rotations re-permutes the
  quantised targets cumulatively and leaves them permuted for the contrastive
  loss (for an even batch size the MPC positives then come from another
  utterance); we read it as equation 10 says: every utterance ``x`` of the batch
  (itself included) once, the contrastive targets untouched.
* Gaussian kernel. The authors' code ships a multi-bandwidth Gaussian kernel
  (5 bandwidths, ratio 2, centred on the mean pairwise squared distance, without
  gradient) but trains with the linear one; ``kernel="gaussian"`` uses theirs
  with the weights of equation 11.

Numerics: similarities, softmaxes and the MMD are computed in float32 (float64
for float64 inputs) with autocast off; no host synchronisation; negatives are
drawn on the inputs' device.
"""

from __future__ import annotations

import math

import torch

from modules.losses.common import autocast_off, output_dtype

__all__ = [
    "MMD_KERNELS",
    "codebook_diversity_loss",
    "contrastive_logits",
    "cue_probability",
    "mic_loss",
    "mmd_loss",
    "mpc_loss",
    "mpc_nce_loss",
    "sample_negative_indices",
    "utterance_statistics",
]

MMD_KERNELS = ("linear", "gaussian")


def sample_negative_indices(batch_size, num_frames, num_negatives, device=None, generator=None):
    """Distractor positions: for frame ``t`` of utterance ``b``, ``K`` other frames of ``b``.

    Drawn uniformly with replacement among the ``M - 1`` other frames (fairseq's
    ``sample_negatives``: draw in ``[0, M - 2]`` and shift the draws at or past
    ``t`` by one).

    Arguments
    ---------
    batch_size, num_frames, num_negatives : int
        ``B``, ``M`` (at least 2 when ``K > 0``) and ``K``.
    device : torch.device, optional
    generator : torch.Generator, optional
        On ``device``.

    Returns
    -------
    torch.Tensor
        ``[B, M, K]`` long, frame indices within each utterance.

    Example
    -------
    >>> idx = sample_negative_indices(2, 5, 100, generator=torch.Generator().manual_seed(0))
    >>> idx.shape, bool((idx != torch.arange(5)[None, :, None]).all()), int(idx.min()), int(idx.max())
    (torch.Size([2, 5, 100]), True, 0, 4)
    """
    if num_negatives == 0:
        return torch.zeros(batch_size, num_frames, 0, dtype=torch.long, device=device)
    if num_frames < 2:
        raise ValueError(f"negatives need at least 2 masked frames per utterance, got {num_frames}")
    draw = torch.randint(0, num_frames - 1, (batch_size, num_frames, num_negatives), device=device, generator=generator)
    own = torch.arange(num_frames, device=draw.device)[None, :, None]
    return draw + (draw >= own).long()


def _unit(x):
    """``x / |x|`` along the last dimension (the norm floored at 1e-8, as ``F.cosine_similarity``)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def _gather_frames(frames, indices):
    """``frames[b, indices[b, m, k]]``: ``[B, M, F]`` and ``[B, M, K]`` -> ``[B, M, K, F]``."""
    batch, count, k = indices.shape
    gather = indices.reshape(batch, count * k, 1).expand(-1, -1, frames.shape[-1])
    return frames.gather(1, gather).reshape(batch, count, k, -1)


def contrastive_logits(predictions, targets, negative_indices, temperature=0.1):
    """Logits of equation 5: the positive target first, then the ``K`` distractors.

    A distractor identical to the positive (a repeated frame) gets ``-inf``, as in fairseq.

    Arguments
    ---------
    predictions : torch.Tensor
        ``[B, M, F]`` context vectors at the masked frames.
    targets : torch.Tensor
        ``[B, M, F]`` quantised targets at the same frames.
    negative_indices : torch.Tensor
        ``[B, M, K]`` from :func:`sample_negative_indices`.
    temperature : float

    Returns
    -------
    torch.Tensor
        ``[B, M, 1 + K]`` (float32, float64 for float64 inputs).
    """
    dtype = output_dtype(predictions)
    with autocast_off(predictions.device):
        predictions, targets = predictions.to(dtype), targets.to(dtype)
        negatives = _gather_frames(targets, negative_indices)  # [B, M, K, F]
        repeated = (negatives == targets.unsqueeze(2)).all(-1)
        anchor = _unit(predictions)
        positive = (anchor * _unit(targets)).sum(-1, keepdim=True)
        negative = torch.einsum("bmf,bmkf->bmk", anchor, _unit(negatives)).masked_fill(repeated, -math.inf)
        return torch.cat([positive, negative], dim=-1) / temperature


def mpc_nce_loss(predictions, targets, negative_indices, temperature=0.1):
    """InfoNCE of equation 5 averaged over the masked frames, and the frames' accuracy.

    Arguments
    ---------
    predictions, targets, negative_indices, temperature
        See :func:`contrastive_logits`.

    Returns
    -------
    loss : torch.Tensor
        0-d, mean over the ``B * M`` masked frames.
    accuracy : torch.Tensor
        0-d, fraction of frames whose positive scores highest (no gradient).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> z = torch.randn(2, 6, 8)
    >>> idx = sample_negative_indices(2, 6, 4)
    >>> perfect, acc = mpc_nce_loss(z * 3, z, idx)
    >>> bool(perfect < 0.01), float(acc)
    (True, 1.0)
    """
    logits = contrastive_logits(predictions, targets, negative_indices, temperature)
    log_p = torch.log_softmax(logits, dim=-1)[..., 0]
    with torch.no_grad():
        accuracy = (logits.argmax(-1) == 0).to(log_p.dtype).mean()
    return -log_p.mean(), accuracy


def codebook_diversity_loss(code_logits, mask=None):
    """Codebook diversity ``(G V - sum_g exp(H(pbar_g))) / (G V)`` (wav2vec 2.0, the authors' code).

    ``pbar_g`` is the softmax over the ``V`` entries of codebook ``g``, averaged
    over the frames; ``exp(H)`` is its perplexity. 0 when every entry is used
    equally, ``1 - 1 / V`` when each codebook always picks the same entry.

    Arguments
    ---------
    code_logits : torch.Tensor
        ``[..., G, V]`` quantiser logits of the frames.
    mask : torch.Tensor, optional
        ``[...]`` bool, the frames to average over (default: all).

    Returns
    -------
    torch.Tensor
        0-d.

    Example
    -------
    >>> round(float(codebook_diversity_loss(torch.zeros(10, 2, 4))), 5)  # uniform use
    0.0
    >>> round(float(codebook_diversity_loss(torch.tensor([[[50.0, 0, 0, 0]]]))), 4)  # one entry: 1 - 1/4
    0.75
    """
    dtype = output_dtype(code_logits)
    with autocast_off(code_logits.device):
        probs = torch.softmax(code_logits.to(dtype), dim=-1)
        groups, entries = probs.shape[-2:]
        probs = probs.reshape(-1, groups, entries)
        if mask is None:
            mean = probs.mean(0)
        else:
            weight = mask.reshape(-1, 1, 1).to(dtype)
            mean = (probs * weight).sum(0) / weight.sum().clamp(min=1.0)
        perplexity = torch.exp(-(mean * torch.log(mean + 1e-7)).sum(-1)).sum()
        total = groups * entries
        return (total - perplexity) / total


def mpc_loss(
    predictions,
    targets,
    negative_indices,
    code_logits,
    feature_penalty=None,
    temperature=0.1,
    diversity_weight=0.1,
    penalty_weight=10.0,
):
    """Equation 3 for one branch: ``L_NCE + w_d L_d (+ w_f L_f)``.

    Arguments
    ---------
    predictions, targets, negative_indices, temperature
        See :func:`contrastive_logits`.
    code_logits : torch.Tensor
        ``[B, M, G, V]`` quantiser logits of the masked frames.
    feature_penalty : torch.Tensor, optional
        0-d, mean square of the CNN features (wav2vec 2.0's ``features_pen``).
    diversity_weight, penalty_weight : float
        0.1 and 10 in the authors' configuration.

    Returns
    -------
    dict
        ``loss`` (0-d, differentiable), the InfoNCE term (keyed by the middle
        word of ``mpc_nce_loss``), ``diversity``, ``penalty``, ``accuracy`` (0-d).
    """
    info_nce, accuracy = mpc_nce_loss(predictions, targets, negative_indices, temperature)
    diversity = codebook_diversity_loss(code_logits)
    loss = info_nce + diversity_weight * diversity
    penalty = feature_penalty if feature_penalty is not None else info_nce.new_zeros(())
    if feature_penalty is not None and penalty_weight:
        loss = loss + penalty_weight * feature_penalty.to(loss.dtype)
    out = {"loss": loss}
    out["nce"] = info_nce  # codespell:ignore nce
    out.update(diversity=diversity, penalty=penalty, accuracy=accuracy)
    return out


@torch.no_grad()
def cue_probability(contexts, targets, distractor_indices, temperature=0.1):
    """InfoNCE estimate of each utterance's contextual-cue probability (equations 8-10), without gradient.

    For utterance ``j`` and every utterance ``x`` of the batch (``j`` included),
    ``p(C_j | x) = exp(-mean_t NCE_t)`` where ``NCE_t`` is the cross-entropy of
    picking ``C_j`` at masked frame ``t`` given ``Z_x`` at frame ``t``, among
    ``C_j,t`` and ``K`` distractors ``C_j,t'`` (other masked frames of ``j``,
    ``distractor_indices``), cosine similarity over ``temperature``; then
    ``p(C_j) = mean_x p(C_j | x)`` (``p(x) = 1 / M``, equation 10). With
    ``K = 0`` every probability is 1 (the plain sample average).

    Arguments
    ---------
    contexts : torch.Tensor
        ``[B, M, F]`` context vectors at the masked frames (``C``).
    targets : torch.Tensor
        ``[B, M, F]`` quantised targets at the same frames (``Z``).
    distractor_indices : torch.Tensor
        ``[B, M, K]`` from :func:`sample_negative_indices`.
    temperature : float
        The contrastive temperature (0.1, as the authors' code).

    Returns
    -------
    torch.Tensor
        ``[B]`` in ``(0, 1]``, detached.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> c, z = torch.randn(3, 8, 4), torch.randn(3, 8, 4)
    >>> p = cue_probability(c, z, sample_negative_indices(3, 8, 5))
    >>> p.shape, bool(((p > 0) & (p <= 1)).all()), cue_probability(c, z, sample_negative_indices(3, 8, 0)).tolist()
    (torch.Size([3]), True, [1.0, 1.0, 1.0])
    """
    dtype = output_dtype(contexts)
    with autocast_off(contexts.device):
        contexts, targets = contexts.detach().to(dtype), targets.detach().to(dtype)
        batch, _, k = distractor_indices.shape
        if k == 0:
            return contexts.new_ones(batch)
        distractors = _gather_frames(contexts, distractor_indices)  # [B_j, M, K, F]
        repeated = (distractors == contexts.unsqueeze(2)).all(-1)  # [B_j, M, K]
        anchor = _unit(targets)  # Z_x,t
        positive = torch.einsum("xtf,jtf->jxt", anchor, _unit(contexts)).unsqueeze(-1)
        negative = torch.einsum("xtf,jtkf->jxtk", anchor, _unit(distractors)).masked_fill(repeated[:, None], -math.inf)
        logits = torch.cat([positive, negative], dim=-1) / temperature  # [B_j, B_x, M, 1 + K]
        info_nce = -torch.log_softmax(logits, dim=-1)[..., 0].mean(-1)  # [B_j, B_x]
        return torch.exp(-info_nce).mean(-1)


def utterance_statistics(hidden, lengths=None):
    """Utterance-level statistics of the contextual cues: ``concat(mean_t, var_t)`` (unbiased variance).

    Arguments
    ---------
    hidden : torch.Tensor
        ``[B, T, D]`` transformer output.
    lengths : torch.Tensor, optional
        ``[B]`` valid frames (default: all ``T``).

    Returns
    -------
    torch.Tensor
        ``[B, 2 D]`` in ``hidden``'s float precision (float32 at least).

    Example
    -------
    >>> h = torch.tensor([[[1.0], [3.0]], [[2.0], [2.0]]])
    >>> utterance_statistics(h).tolist()
    [[2.0, 2.0], [2.0, 0.0]]
    """
    dtype = output_dtype(hidden)
    with autocast_off(hidden.device):
        hidden = hidden.to(dtype)
        if lengths is None:
            return torch.cat([hidden.mean(1), hidden.var(1)], dim=-1)
        valid = (torch.arange(hidden.shape[1], device=hidden.device)[None] < lengths[:, None]).to(dtype)[..., None]
        count = valid.sum(1)
        mean = (hidden * valid).sum(1) / count.clamp(min=1)
        var = ((hidden - mean[:, None]).square() * valid).sum(1) / (count - 1).clamp(min=1)
        return torch.cat([mean, var], dim=-1)


def _gaussian_gram(stats, weights, kernel_num, kernel_mul, bandwidth):
    """``weights^T K weights`` pieces of a multi-bandwidth Gaussian kernel over ``stats`` ``[N, F]``."""
    sq = torch.cdist(stats, stats).square()
    if bandwidth is None:
        n = stats.shape[0]
        bandwidth = sq.detach().sum() / max(n * n - n, 1)
        bandwidth = bandwidth.clamp(min=torch.finfo(stats.dtype).tiny)
    base = bandwidth / kernel_mul ** (kernel_num // 2)
    gram = sum(torch.exp(-sq / (base * kernel_mul**i)) for i in range(kernel_num))
    return weights @ gram @ weights


def mmd_loss(
    x_stats,
    y_stats,
    x_prob=None,
    y_prob=None,
    kernel="linear",
    bandwidth=None,
    kernel_num=5,
    kernel_mul=2.0,
):
    """Weighted maximum mean discrepancy of equation 11 between two batches of statistics.

    With weights ``w_j = p(C_x_j) / M`` and ``v_k = p(C_y_k) / N`` (uniform
    ``1 / M`` without probabilities)::

        MMD = sum_jk w_j w_k k(x_j, x_k) - 2 sum_jk w_j v_k k(x_j, y_k) + sum_jk v_j v_k k(y_j, y_k)

    ``linear``: ``k(u, v) = <u, v>``, so MMD is ``|sum_j w_j x_j - sum_k v_k y_k|^2``
    (the authors' code). ``gaussian``: ``k(u, v) = sum_i exp(-|u - v|^2 / s_i)``
    over ``kernel_num`` bandwidths ``s_i = s * kernel_mul^(i - kernel_num // 2)``;
    ``s`` is ``bandwidth`` or, by default, the mean squared distance between
    distinct statistics of both batches (without gradient), as the authors' code.

    Arguments
    ---------
    x_stats, y_stats : torch.Tensor
        ``[M, F]`` and ``[N, F]`` (e.g. :func:`utterance_statistics`).
    x_prob, y_prob : torch.Tensor, optional
        ``[M]`` and ``[N]`` probabilities (:func:`cue_probability`); used as given (detach them).
    kernel : str
        ``linear`` or ``gaussian``.
    bandwidth : float, optional
    kernel_num : int
    kernel_mul : float

    Returns
    -------
    torch.Tensor
        0-d.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(4, 6)
    >>> float(mmd_loss(x, x)), float(mmd_loss(x, x, kernel="gaussian")) < 1e-6
    (0.0, True)
    >>> bool(mmd_loss(x, x + 1) > mmd_loss(x, x + 0.5) > 0)
    True
    """
    if kernel not in MMD_KERNELS:
        raise ValueError(f"kernel must be one of {MMD_KERNELS}, got {kernel!r}")
    dtype = output_dtype(x_stats)
    with autocast_off(x_stats.device):
        x_stats, y_stats = x_stats.to(dtype), y_stats.to(dtype)
        m, n = x_stats.shape[0], y_stats.shape[0]
        w = (x_prob.to(dtype) if x_prob is not None else x_stats.new_ones(m)) / m
        v = (y_prob.to(dtype) if y_prob is not None else y_stats.new_ones(n)) / n
        if kernel == "linear":
            delta = w @ x_stats - v @ y_stats
            return delta.square().sum()
        stats = torch.cat([x_stats, y_stats])
        signed = torch.cat([w, -v])
        return _gaussian_gram(stats, signed, kernel_num, kernel_mul, bandwidth)


def mic_loss(
    real,
    synthetic,
    alpha=10.0,
    kernel="linear",
    temperature=0.1,
    diversity_weight=0.1,
    penalty_weight=10.0,
    bandwidth=None,
):
    """Equation 12: ``L_MPC(C_x, Z_x) + L_MPC(C_y, Z_y) + alpha L_MMD(C_x, C_y)``.

    Both branches come from the same network (the Siamese step); with
    ``alpha = 0`` this is MPC on both branches (Table II's MPC row) and the cue
    probabilities are not computed.

    Arguments
    ---------
    real, synthetic : dict
        One branch each (``x`` real, ``y`` synthetic), with ``predictions``,
        ``targets``, ``negatives`` (``[B, M, K]``), ``code_logits``,
        ``feature_penalty`` (0-d or None), ``contexts`` (``[B, T, D]``
        transformer output, for the utterance statistics), ``lengths``
        (``[B]`` frames or None) and ``distractors`` (``[B, M, K']``, for
        :func:`cue_probability`).
    alpha : float
        MMD weight (10 in the paper and the authors' code).
    kernel : str
        ``linear`` (authors' code) or ``gaussian``.
    temperature, diversity_weight, penalty_weight : float
        See :func:`mpc_loss`.
    bandwidth : float, optional
        Gaussian kernel bandwidth (default: data-driven).

    Returns
    -------
    dict
        ``loss`` (0-d, differentiable) and the detached terms: ``mpc_real``,
        ``mpc_synthetic``, ``mmd``, ``nce_real``, ``nce_synthetic``,
        ``diversity``, ``accuracy``, ``prob_real``, ``prob_synthetic`` (means).
    """
    terms = {}
    branches = {}
    for name, branch in (("real", real), ("synthetic", synthetic)):
        out = mpc_loss(
            branch["predictions"],
            branch["targets"],
            branch["negatives"],
            branch["code_logits"],
            branch.get("feature_penalty"),
            temperature=temperature,
            diversity_weight=diversity_weight,
            penalty_weight=penalty_weight,
        )
        branches[name] = out
        terms[f"mpc_{name}"] = out["loss"].detach()
        terms[f"nce_{name}"] = out["nce"].detach()  # codespell:ignore nce
    loss = branches["real"]["loss"] + branches["synthetic"]["loss"]
    terms["diversity"] = (branches["real"]["diversity"] + branches["synthetic"]["diversity"]).detach() / 2
    terms["accuracy"] = (branches["real"]["accuracy"] + branches["synthetic"]["accuracy"]) / 2
    if alpha:
        probs = {
            name: cue_probability(b["predictions"], b["targets"], b["distractors"], temperature)
            for name, b in (("real", real), ("synthetic", synthetic))
        }
        stats = {
            name: utterance_statistics(b["contexts"], b.get("lengths"))
            for name, b in (("real", real), ("synthetic", synthetic))
        }
        mmd = mmd_loss(
            stats["real"], stats["synthetic"], probs["real"], probs["synthetic"], kernel=kernel, bandwidth=bandwidth
        )
        loss = loss + alpha * mmd
        terms["mmd"] = mmd.detach()
        terms["prob_real"], terms["prob_synthetic"] = probs["real"].mean(), probs["synthetic"].mean()
    else:
        terms["mmd"] = loss.new_zeros(()).detach()
    return {"loss": loss, **terms}
