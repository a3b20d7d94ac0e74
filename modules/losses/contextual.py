"""Contextual loss of context-aware two-stage training (equation 1): InfoNCE with PIT over speakers.

Paper: Wang et al., "Context-Aware Two-Step Training Scheme for Domain Invariant
Speech Separation" (arXiv:2503.12589, equation 1). In the
group stage a shared predictor maps each speaker's context embedding to
``U~_i`` (one vector per SSL frame), and the loss pulls ``U~_i`` towards the SSL
representation ``U_i`` of the clean source ``s_i`` at the same frame, against
negative distractors:

.. math::

    L_C(U_i, \\tilde U_i) = -\\log \\frac{\\exp(\\psi(U_i, \\tilde U_i) / \\omega)}
                                   {\\sum_{U \\in Q_U} \\exp(\\psi(U, \\tilde U_i) / \\omega)}

with ``psi`` the cosine similarity and ``omega = 0.1``. The speakers of the
prediction are matched to the speakers of the targets by permutation-invariant
training through :func:`modules.losses.best_permutation` (the chassis'
matching step), on the matrix of pairwise losses.

What the paper leaves open, and what this module does (``negatives``):

* The query is one frame ``t`` of ``U~_i``; the positive is ``U_j[t]``, the target
  frame of the speaker ``j`` that ``i`` is matched to. The loss is averaged over
  the valid frames of the item (equation 1 is written for one frame).
* The candidates ``Q_U`` are the positive and negative distractors taken from the
  same utterance (the paper names no memory bank and no cross-utterance
  negatives). ``negatives="utterance"`` (default): every other frame of the same
  speaker ``U_j[s], s != t`` and every frame of the other speakers
  ``U_k[s], k != j`` (including the other speaker at the same frame, the hardest
  negative for separation). ``"frames"``: the other frames of the same speaker
  only (CPC-style, no speaker contrast). ``"speakers"``: the other speakers'
  frames only (the positive is then the only frame of ``U_j`` in ``Q_U``).
* Padded frames (beyond an item's length) are neither queries nor candidates;
  padded speakers (``target_mask``) are not candidates and get no assignment
  weight (items with fewer sources than the batch's largest).
* Equation 1 has no gradient stop: gradients reach the prediction; the targets
  come from a frozen teacher (they are differentiable here, the Brain detaches them).

Numerics: cosine similarities and the log-sum-exp in float32 (float64 for
float64 inputs) with autocast off; masked candidates get a large negative
finite logit (never ``-inf``, so a fully masked row gives no NaN gradient) and
rows of padded speakers are zeroed with ``torch.where``. The similarity tensor
is ``[B, n_est, F, n_tgt, F]``: 2 x 150 x 2 x 150 floats per item for 3 s
crops at 50 frames/s. No host synchronisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modules.losses.common import autocast_off, output_dtype
from modules.losses.matching import best_permutation, matched_scores

__all__ = ["INFO_NCE_NEGATIVES", "info_nce_pit_loss", "pairwise_info_nce", "pit_from_pairwise"]

#: Which negative distractors equation 1's candidate set holds (see the module docstring).
INFO_NCE_NEGATIVES = ("utterance", "frames", "speakers")


def _check_embeddings(predicted, targets, frame_mask, target_mask):
    if predicted.ndim != 4 or targets.ndim != 4:
        raise ValueError(
            "expected predicted and targets of shape [batch, frames, n_src, dim], got "
            f"{tuple(predicted.shape)} and {tuple(targets.shape)}"
        )
    if predicted.shape[:2] != targets.shape[:2] or predicted.shape[-1] != targets.shape[-1]:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and targets {tuple(targets.shape)} must agree in batch, frames and dim"
        )
    if predicted.shape[2] < targets.shape[2]:
        raise ValueError(f"need at least as many predictions as targets, got {predicted.shape[2]} < {targets.shape[2]}")
    if frame_mask is not None and tuple(frame_mask.shape) != tuple(predicted.shape[:2]):
        expected = tuple(predicted.shape[:2])
        raise ValueError(f"frame_mask must be [batch, frames] = {expected}, got {tuple(frame_mask.shape)}")
    if target_mask is not None and tuple(target_mask.shape) != (targets.shape[0], targets.shape[2]):
        expected = (targets.shape[0], targets.shape[2])
        raise ValueError(f"target_mask must be [batch, n_tgt] = {expected}, got {tuple(target_mask.shape)}")


def pairwise_info_nce(
    predicted: torch.Tensor,
    targets: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    temperature: float = 0.1,
    negatives: str = "utterance",
) -> torch.Tensor:
    """InfoNCE loss (equation 1) of every predicted speaker against every target speaker.

    Arguments
    ---------
    predicted : torch.Tensor
        ``[batch, frames, n_est, dim]``: the predicted contextual representations ``U~``.
    targets : torch.Tensor
        ``[batch, frames, n_tgt, dim]``: the SSL representations ``U`` of the clean sources.
    frame_mask : torch.Tensor, optional
        ``[batch, frames]`` bool, ``True`` for valid frames (default: all).
    target_mask : torch.Tensor, optional
        ``[batch, n_tgt]`` bool, ``True`` for an item's real sources (default: all).
    temperature : float
        ``omega`` (0.1 in the paper).
    negatives : str
        The candidate set, one of :data:`INFO_NCE_NEGATIVES` (see the module docstring).

    Returns
    -------
    torch.Tensor
        ``[batch, n_est, n_tgt]``: entry ``[b, i, j]`` is the loss of prediction ``i``
        against target ``j``, averaged over the item's valid frames; 0 for a padded
        target and for an item without valid frames. float32 (float64 for float64 inputs).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> targets = torch.randn(1, 20, 2, 8)
    >>> pairs = pairwise_info_nce(targets[:, :, [1, 0]] + 0.01 * torch.randn(1, 20, 2, 8), targets)
    >>> pairs.shape, bool(pairs[0, 0, 1] < 0.1), bool(pairs[0, 0, 0] > 1.0)  # prediction 0 is speaker 1
    (torch.Size([1, 2, 2]), True, True)
    """
    _check_embeddings(predicted, targets, frame_mask, target_mask)
    if negatives not in INFO_NCE_NEGATIVES:
        raise ValueError(f"negatives must be one of {INFO_NCE_NEGATIVES}, not {negatives!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = predicted.device
    batch, n_frames, n_tgt = targets.shape[0], targets.shape[1], targets.shape[2]
    if frame_mask is None:
        frame_mask = torch.ones(batch, n_frames, dtype=torch.bool, device=device)
    if target_mask is None:
        target_mask = torch.ones(batch, n_tgt, dtype=torch.bool, device=device)
    frame_mask, target_mask = frame_mask.to(device, torch.bool), target_mask.to(device, torch.bool)
    dtype = output_dtype(predicted)
    with autocast_off(device):
        query = F.normalize(predicted.to(dtype), dim=-1, eps=1e-8)
        keys = F.normalize(targets.to(dtype), dim=-1, eps=1e-8)
        # logits[b, i, t, k, s] = cos(U~_i[t], U_k[s]) / omega, within [-1/omega, 1/omega]
        logits = torch.einsum("btid,bskd->bitks", query, keys) / temperature
        masked_value = -4.0 / temperature - 1e3  # exp(masked - any real logit) == 0 in float32
        candidate = target_mask[:, None, None, :, None] & frame_mask[:, None, None, None, :]
        masked = logits.masked_fill(~candidate, masked_value)
        positive = torch.diagonal(logits, dim1=2, dim2=4).transpose(2, 3)  # [B, I, F(t), K]: logits[b, i, t, k, t]
        per_speaker = masked.logsumexp(dim=-1)  # [B, I, F, K]: over the frames of each target speaker
        if negatives == "frames":
            denominator = per_speaker
        else:
            eye = torch.eye(n_tgt, dtype=torch.bool, device=device)
            # lse over the other speakers' frames, for each target j: [B, I, F, J]
            others = per_speaker[..., None, :].masked_fill(eye, masked_value).logsumexp(dim=-1)
            if negatives == "utterance":
                denominator = torch.logaddexp(per_speaker, others)
            else:  # speakers
                denominator = torch.logaddexp(positive, others)
        per_frame = denominator - positive  # [B, I, F, J]
        weights = frame_mask.to(dtype)[:, None, :, None]
        pairwise = (per_frame * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1.0)  # [B, I, J]
        return torch.where(target_mask[:, None, :], pairwise, torch.zeros_like(pairwise))


def pit_from_pairwise(pairwise: torch.Tensor, target_mask: torch.Tensor | None = None):
    """Per-item loss under the best assignment of a pairwise loss matrix (PIT).

    Arguments
    ---------
    pairwise : torch.Tensor
        ``[batch, n_est, n_tgt]`` losses (lower is better), e.g. a weighted sum of
        :func:`pairwise_info_nce` matrices and minus :func:`modules.losses.pairwise_si_snr`.
    target_mask : torch.Tensor, optional
        ``[batch, n_tgt]`` bool, the real targets.

    Returns
    -------
    loss : torch.Tensor
        ``[batch]``: the matched losses averaged over each item's real targets.
    perm : torch.Tensor
        ``[batch, n_tgt]`` long, the estimate assigned to each target
        (:func:`modules.losses.best_permutation` on ``-pairwise``).

    Example
    -------
    >>> loss, perm = pit_from_pairwise(torch.tensor([[[3.0, 1.0], [0.5, 4.0]]]))
    >>> loss.tolist(), perm.tolist()
    ([0.75], [[1, 0]])
    """
    perm = best_permutation(-pairwise, target_mask)
    matched = matched_scores(pairwise, perm)
    if target_mask is None:
        return matched.mean(dim=-1), perm
    weights = target_mask.to(device=matched.device, dtype=matched.dtype)
    return (matched * weights).sum(dim=-1) / weights.sum(dim=-1).clamp(min=1.0), perm


def info_nce_pit_loss(
    predicted: torch.Tensor,
    targets: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    temperature: float = 0.1,
    negatives: str = "utterance",
):
    """Equation 1 with PIT over speakers: :func:`pairwise_info_nce` then :func:`pit_from_pairwise`.

    Arguments are those of :func:`pairwise_info_nce`.

    Returns
    -------
    loss : torch.Tensor
        ``[batch]``.
    perm : torch.Tensor
        ``[batch, n_tgt]`` long.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> targets = torch.randn(2, 30, 2, 16)
    >>> loss, perm = info_nce_pit_loss(targets[:, :, [1, 0]], targets)  # the speakers swapped
    >>> chance, _ = info_nce_pit_loss(torch.randn(2, 30, 2, 16), targets)
    >>> perm.tolist(), bool((loss < 0.5 * chance).all())
    ([[1, 0], [1, 0]], True)
    """
    pairwise = pairwise_info_nce(predicted, targets, frame_mask, target_mask, temperature, negatives)
    return pit_from_pairwise(pairwise, target_mask)
