"""The matching step of permutation-invariant training, for any pairwise score matrix.

uPIT (:func:`modules.losses.pit_si_snr_loss`) scores every estimate against
every target and keeps the assignment with the best total; one-and-rest PIT and
PIT over embeddings (InfoNCE) do the same with other score matrices. This
module is that one step: :func:`best_permutation` takes a score matrix
``[batch, n_est, n_tgt]`` (higher is better), an optional mask of the real
targets (items of one batch may have 1, 2 or 3 speakers), and returns for each
target the estimate assigned to it, distinct estimates per item.

Search
------
Up to ``max_exhaustive`` estimates, every injective assignment of targets to
estimates (``n_est! / (n_est - n_tgt)!`` of them, 5040 for 7 x 7) is scored in
one batched gather on the device: no Python loop over items or permutations,
no host synchronisation. Above that, the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) runs per item on the host.

Padded targets
--------------
A target whose mask is ``False`` scores 0 against every estimate, so it never
changes which assignment is best for the real targets; it still receives a
distinct estimate (one not used by a real target), so the result is always a
valid injective map and :func:`modules.losses.apply_perm` works unchanged.
"""

from __future__ import annotations

import functools
import itertools

import torch

__all__ = ["MAX_EXHAUSTIVE_SRC", "assignment_table", "best_permutation", "matched_scores"]

#: Default largest number of estimates whose assignments are enumerated.
MAX_EXHAUSTIVE_SRC = 7


@functools.cache
def _assignment_table_cpu(n_est: int, n_tgt: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(n_est), n_tgt)), dtype=torch.long).reshape(-1, n_tgt)


@functools.cache
def assignment_table(n_est: int, n_tgt: int, device: torch.device) -> torch.Tensor:
    """Every injective map of ``n_tgt`` targets to ``n_est`` estimates: ``[K, n_tgt]`` long.

    Row ``k`` gives, for each target ``j``, the estimate ``table[k, j]``; rows
    follow ``itertools.permutations(range(n_est), n_tgt)`` order (so for
    ``n_est == n_tgt`` the first row is the identity). Cached per sizes and device.

    Example
    -------
    >>> assignment_table(3, 2, torch.device("cpu")).tolist()
    [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    """
    return _assignment_table_cpu(n_est, n_tgt).to(device)


def _check_scores(scores: torch.Tensor, target_mask: torch.Tensor | None) -> None:
    if scores.ndim != 3:
        raise ValueError(f"expected scores of shape [batch, n_est, n_tgt], got {tuple(scores.shape)}")
    if scores.shape[1] < scores.shape[2]:
        raise ValueError(
            f"need at least as many estimates as targets, got {scores.shape[1]} estimates "
            f"and {scores.shape[2]} targets (scores {tuple(scores.shape)})"
        )
    if target_mask is not None and tuple(target_mask.shape) != (scores.shape[0], scores.shape[2]):
        raise ValueError(
            f"expected target_mask of shape [batch, n_tgt] = {(scores.shape[0], scores.shape[2])}, "
            f"got {tuple(target_mask.shape)}"
        )


def _exhaustive(scores: torch.Tensor) -> torch.Tensor:
    n_est, n_tgt = scores.shape[1], scores.shape[2]
    table = assignment_table(n_est, n_tgt, scores.device)  # [K, n_tgt]
    columns = torch.arange(n_tgt, device=scores.device)
    # totals[b, k] = sum_j scores[b, table[k, j], j]
    totals = scores[:, table, columns].sum(dim=-1)  # [B, K]
    return table[totals.argmax(dim=-1)]  # [B, n_tgt]


def _hungarian(scores: torch.Tensor) -> torch.Tensor:
    """Per-item Hungarian assignment on the host (synchronises with the device)."""
    from scipy.optimize import linear_sum_assignment

    host = scores.detach().to("cpu", torch.float64).numpy()
    perms = []
    for item in host:
        # Rows are targets (returned in order), columns the assigned estimates.
        _, est_index = linear_sum_assignment(item.T, maximize=True)
        perms.append(torch.as_tensor(est_index, dtype=torch.long))
    return torch.stack(perms).to(scores.device)


def best_permutation(
    scores: torch.Tensor,
    target_mask: torch.Tensor | None = None,
    max_exhaustive: int = MAX_EXHAUSTIVE_SRC,
) -> torch.Tensor:
    """The assignment of estimates to targets with the highest total score.

    Arguments
    ---------
    scores : torch.Tensor
        ``[batch, n_est, n_tgt]``, ``n_est >= n_tgt``; entry ``[b, i, j]`` is
        how well estimate ``i`` matches target ``j`` (higher is better; pass
        minus a loss). Not differentiated (the search runs on a detached copy).
    target_mask : torch.Tensor, optional
        ``[batch, n_tgt]`` bool, ``True`` for the item's real targets. Padded
        targets do not influence the result (see the module docstring).
    max_exhaustive : int
        Up to this many estimates the search is exhaustive on the device;
        above it, the Hungarian algorithm runs on the host.

    Returns
    -------
    torch.Tensor
        ``[batch, n_tgt]`` long: ``perm[b, j]`` is the estimate assigned to
        target ``j``; the estimates of one item are distinct.

    Example
    -------
    >>> scores = torch.tensor([[[0.0, 9.0], [8.0, 1.0], [1.0, 1.0]]])  # 3 estimates, 2 targets
    >>> best_permutation(scores)
    tensor([[1, 0]])
    >>> best_permutation(scores, target_mask=torch.tensor([[False, True]]))[0, 1].item()  # target 1 only
    0
    """
    _check_scores(scores, target_mask)
    scores = scores.detach()
    if target_mask is not None:
        scores = scores.masked_fill(~target_mask.to(scores.device, torch.bool)[:, None, :], 0.0)
    if scores.shape[1] <= max_exhaustive:
        return _exhaustive(scores)
    return _hungarian(scores)


def matched_scores(pairwise: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``pairwise[b, perm[b, j], j]`` for every target ``j``: ``[batch, n_tgt]`` (differentiable).

    Example
    -------
    >>> pw = torch.arange(12.0).reshape(1, 3, 4)[..., :2]  # [1, 3 estimates, 2 targets]
    >>> matched_scores(pw, torch.tensor([[2, 0]]))
    tensor([[8., 1.]])
    """
    return pairwise.gather(1, perm.to(pairwise.device).unsqueeze(1)).squeeze(1)
