"""The contextual loss (equation 1 of the context-aware paper): InfoNCE with PIT, against a slow float64 loop."""

import itertools
import math

import pytest
import torch

from modules.losses import info_nce_pit_loss, pairwise_info_nce, pit_from_pairwise


def cosine(a, b):
    return float((a @ b) / (a.norm().clamp(min=1e-8) * b.norm().clamp(min=1e-8)))


def reference_item_pair(pred, tgt, n_frames, n_tgt, i, j, tau, negatives):
    """Equation 1 for prediction i against target j of one item, frame by frame, as written."""
    total = 0.0
    for t in range(n_frames):
        positive = cosine(pred[t, i], tgt[t, j]) / tau
        candidates = [positive]
        for k in range(n_tgt):
            for s in range(n_frames):
                if k == j and s == t:
                    continue  # the positive, already in
                same_speaker = k == j
                if negatives == "utterance" or (negatives == "frames") == same_speaker:
                    candidates.append(cosine(pred[t, i], tgt[s, k]) / tau)
        total += -(positive - math.log(sum(math.exp(c) for c in candidates)))
    return total / max(n_frames, 1)


def reference_loss(pred, tgt, frame_lengths, n_sources, tau=0.1, negatives="utterance"):
    """Slow PIT: every permutation, every frame and candidate in Python float64."""
    pred, tgt = pred.double(), tgt.double()
    losses, perms = [], []
    for b in range(pred.shape[0]):
        n_frames, n_tgt = int(frame_lengths[b]), int(n_sources[b])
        p, u = pred[b, :n_frames], tgt[b, :n_frames, :n_tgt]
        best = None
        for perm in itertools.permutations(range(pred.shape[2]), n_tgt):
            value = sum(reference_item_pair(p, u, n_frames, n_tgt, perm[j], j, tau, negatives) for j in range(n_tgt))
            value /= n_tgt
            if best is None or value < best[0] - 1e-12:
                best = (value, perm)
        losses.append(best[0])
        perms.append(best[1])
    return torch.tensor(losses, dtype=torch.float64), perms


def reference_loss_differentiable(pred, tgt, perms, frame_lengths, n_sources, tau, negatives):
    """The same loss as a torch graph under fixed permutations (for gradients), still looping."""
    losses = []
    for b, perm in enumerate(perms):
        n_frames, n_tgt = int(frame_lengths[b]), int(n_sources[b])
        item = 0.0
        for j in range(n_tgt):
            i = perm[j]
            for t in range(n_frames):
                q = pred[b, t, i] / pred[b, t, i].norm().clamp(min=1e-8)
                logits = []
                for k in range(n_tgt):
                    for s in range(n_frames):
                        same = k == j
                        keep = (k == j and s == t) or negatives == "utterance" or (negatives == "frames") == same
                        if keep:
                            key = tgt[b, s, k] / tgt[b, s, k].norm().clamp(min=1e-8)
                            logits.append((q @ key) / tau)
                positive = (q @ (tgt[b, t, j] / tgt[b, t, j].norm().clamp(min=1e-8))) / tau
                item = item + torch.logsumexp(torch.stack(logits), 0) - positive
        losses.append(item / max(n_frames, 1) / n_tgt)
    return torch.stack(losses)


def padded_batch(seed=0, dim=6, frames=(7, 5, 6), n_sources=(2, 2, 1), n_est=2):
    gen = torch.Generator().manual_seed(seed)
    batch, n_max = len(frames), max(frames)
    tgt = torch.randn(batch, n_max, max(n_sources), dim, generator=gen, dtype=torch.float64)
    pred = torch.randn(batch, n_max, n_est, dim, generator=gen, dtype=torch.float64)
    pred[0] = tgt[0][:, [1, 0]] + 0.3 * pred[0]  # item 0: the speakers swapped, noisy
    frame_mask = torch.arange(n_max)[None] < torch.tensor(frames)[:, None]
    target_mask = torch.arange(max(n_sources))[None] < torch.tensor(n_sources)[:, None]
    tgt = tgt * frame_mask[..., None, None] * target_mask[:, None, :, None]
    return pred, tgt, frame_mask, target_mask, torch.tensor(frames), torch.tensor(n_sources)


@pytest.mark.parametrize("negatives", ["utterance", "frames", "speakers"])
def test_values_and_gradients_match_the_loop_reference(negatives):
    pred, tgt, frame_mask, target_mask, frames, n_sources = padded_batch()
    pred.requires_grad_(True)
    tgt.requires_grad_(True)
    loss, perm = info_nce_pit_loss(pred, tgt, frame_mask, target_mask, temperature=0.1, negatives=negatives)
    expected, expected_perms = reference_loss(pred.detach(), tgt.detach(), frames, n_sources, 0.1, negatives)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-10)
    for b, p in enumerate(expected_perms):
        assert perm[b, : len(p)].tolist() == list(p)
    assert perm[0].tolist() == [1, 0]

    grads = torch.autograd.grad(loss.sum(), (pred, tgt))
    pred_ref = pred.detach().clone().requires_grad_(True)
    tgt_ref = tgt.detach().clone().requires_grad_(True)
    ref = reference_loss_differentiable(pred_ref, tgt_ref, expected_perms, frames, n_sources, 0.1, negatives)
    ref_grads = torch.autograd.grad(ref.sum(), (pred_ref, tgt_ref))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    # padded frames and the padded speaker of item 2 get no gradient
    assert grads[0][1, 5:].abs().max() == 0 and grads[1][2, :, 1].abs().max() == 0


def test_float32_matches_float64_and_is_finite_with_padding():
    pred, tgt, frame_mask, target_mask, _, _ = padded_batch(seed=3)
    loss64, _ = info_nce_pit_loss(pred, tgt, frame_mask, target_mask)
    loss32, _ = info_nce_pit_loss(pred.float(), tgt.float(), frame_mask, target_mask)
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), loss64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("negatives", ["utterance", "frames", "speakers"])
def test_invariant_to_a_consistent_relabelling_of_speakers(negatives):
    gen = torch.Generator().manual_seed(1)
    pred, tgt = torch.randn(4, 9, 3, 5, generator=gen), torch.randn(4, 9, 3, 5, generator=gen)
    loss, perm = info_nce_pit_loss(pred, tgt, negatives=negatives)
    relabel = torch.tensor([2, 0, 1])
    both, _ = info_nce_pit_loss(pred[:, :, relabel], tgt[:, :, relabel], negatives=negatives)
    torch.testing.assert_close(both, loss)
    only_predictions, perm_shuffled = info_nce_pit_loss(pred[:, :, relabel], tgt, negatives=negatives)
    torch.testing.assert_close(only_predictions, loss)  # PIT finds the relabelled predictions
    assert torch.equal(relabel[perm_shuffled], perm)


def test_pairwise_entries_are_the_single_pair_losses():
    gen = torch.Generator().manual_seed(2)
    pred, tgt = torch.randn(2, 8, 2, 4, generator=gen), torch.randn(2, 8, 2, 4, generator=gen)
    pairwise = pairwise_info_nce(pred, tgt, temperature=0.5)
    for i, j in itertools.product(range(2), range(2)):
        single = reference_item_pair(pred[0].double(), tgt[0].double(), 8, 2, i, j, 0.5, "utterance")
        assert abs(float(pairwise[0, i, j]) - single) < 1e-5
    # a perfect prediction scores lower than a random one
    perfect = pairwise_info_nce(tgt, tgt)
    assert (perfect.diagonal(dim1=1, dim2=2) < pairwise_info_nce(pred, tgt).diagonal(dim1=1, dim2=2)).all()


def test_pit_from_pairwise_averages_real_targets_only():
    pairwise = torch.tensor([[[1.0, 7.0], [3.0, 9.0]], [[2.0, 0.0], [0.0, 2.0]]])
    loss, perm = pit_from_pairwise(pairwise, target_mask=torch.tensor([[True, False], [True, True]]))
    assert loss.tolist() == [1.0, 0.0] and perm[0, 0] == 0 and perm[1].tolist() == [1, 0]


def test_autocast_and_bad_inputs():
    pred, tgt = torch.randn(1, 5, 2, 4), torch.randn(1, 5, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = info_nce_pit_loss(pred, tgt)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, info_nce_pit_loss(pred, tgt)[0])
    with pytest.raises(ValueError, match="negatives"):
        pairwise_info_nce(pred, tgt, negatives="memory_bank")
    with pytest.raises(ValueError, match="frames, n_src, dim"):
        pairwise_info_nce(pred[0], tgt[0])
    with pytest.raises(ValueError, match="at least as many predictions"):
        pairwise_info_nce(pred[:, :, :1], tgt)
