"""Tests for the NASS patch-wise contrastive loss (modules.losses) and the PatchSampler (modules.models)."""

import copy
import math

import pytest
import torch

from modules.losses import nass_contrastive_loss, patch_nce_loss, sample_patch_positions
from modules.models import PatchSampler

N_FEATS = 6  # encoder filters N
Q_FEATS = 8  # embedding size Q
TAU = 0.07


def _sampler(seed=0, in_channels=N_FEATS, features=Q_FEATS):
    torch.manual_seed(seed)
    return PatchSampler(in_channels, features=features)


def _features(batch, n_spks, n_frames, seed=0):
    """Non-negative (ReLU-encoder-like) est/true features and a random perm per item."""
    gen = torch.Generator().manual_seed(seed)
    n_src = n_spks + 1
    true_feats = torch.rand(batch, n_src, N_FEATS, n_frames, generator=gen)
    est_feats = torch.rand(batch, n_src, N_FEATS, n_frames, generator=gen)
    perm = torch.stack([torch.randperm(n_src, generator=gen) for _ in range(batch)])
    return est_feats, true_feats, perm


def _unit(shape, gen, dtype=torch.float32):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)


def _slow_nce(queries, positives, negatives, tau):
    """Mean over i of -log softmax([q_i.p_i, q_i.n_1, ..., q_i.n_K] / tau)[0], Python floats."""
    total = 0.0
    for q, p in zip(queries, positives):
        logits = [float(q @ p) / tau] + [float(q @ n) / tau for n in negatives]
        total += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    return total / len(queries)


def _slow_patch_nce(query, positive, negatives, tau):
    """Loops over batch items and sources, float64; ``[B]``."""
    query, positive, negatives = query.double(), positive.double(), negatives.double()
    out = []
    for b in range(query.shape[0]):
        n_src = query.shape[1]
        out.append(sum(_slow_nce(query[b, s], positive[b, s], negatives[b, s], tau) for s in range(n_src)) / n_src)
    return torch.tensor(out, dtype=torch.float64)


def _slow_nass(est_feats, true_feats, perm, sampler, n_spks, positions, tau, direction):
    """Explicit float64 reference: loops over batch items, speakers and patches; ``[B]``."""
    sampler = copy.deepcopy(sampler).double()
    est_feats, true_feats = est_feats.detach().double(), true_feats.detach().double()
    out = []
    with torch.no_grad():
        for b in range(est_feats.shape[0]):
            frames = positions[b].tolist()
            noise_out = int(perm[b, n_spks])

            def patches(feats, src, b=b, frames=frames):
                return [sampler(feats[b, src, :, frame]) for frame in frames]

            item = 0.0
            for t in range(n_spks):
                spk_out = int(perm[b, t])
                if direction in ("s2n", "both"):
                    item += (
                        _slow_nce(
                            patches(est_feats, spk_out), patches(true_feats, t), patches(est_feats, noise_out), tau
                        )
                        / n_spks
                    )
                if direction in ("n2s", "both"):
                    item += (
                        _slow_nce(
                            patches(est_feats, noise_out), patches(true_feats, n_spks), patches(est_feats, spk_out), tau
                        )
                        / n_spks
                    )
            out.append(item)
    return torch.tensor(out, dtype=torch.float64)


# ----------------------------------------------------------------------------
# sample_patch_positions


def test_positions_without_replacement_are_distinct_per_item():
    gen = torch.Generator().manual_seed(0)
    pos = sample_patch_positions(50, 50, 4, "cpu", generator=gen)
    assert pos.shape == (4, 50) and pos.dtype == torch.long
    for row in pos:
        assert sorted(row.tolist()) == list(range(50))  # M == L: a permutation
    assert not torch.equal(pos[0], pos[1])  # items draw independently
    pos = sample_patch_positions(1000, 30, 3, "cpu", generator=gen)
    assert all(len(set(row.tolist())) == 30 for row in pos)
    assert int(pos.min()) >= 0 and int(pos.max()) < 1000


def test_positions_with_replacement_when_more_patches_than_frames():
    gen = torch.Generator().manual_seed(0)
    pos = sample_patch_positions(5, 200, 2, "cpu", generator=gen)
    assert pos.shape == (2, 200)
    assert int(pos.min()) >= 0 and int(pos.max()) < 5
    assert set(pos[0].tolist()) == set(range(5))


def test_positions_reproducible_with_generator():
    first = sample_patch_positions(64, 16, 3, "cpu", generator=torch.Generator().manual_seed(7))
    second = sample_patch_positions(64, 16, 3, "cpu", generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


@pytest.mark.parametrize("args", [(0, 4, 1), (4, 0, 1), (4, 4, -1)])
def test_positions_reject_bad_sizes(args):
    with pytest.raises(ValueError):
        sample_patch_positions(*args, "cpu")


# ----------------------------------------------------------------------------
# patch_nce_loss


@pytest.mark.parametrize("n_neg", [5, 12])
def test_patch_nce_matches_slow_reference(n_neg):
    gen = torch.Generator().manual_seed(0)
    query, positive = _unit((2, 3, 9, Q_FEATS), gen), _unit((2, 3, 9, Q_FEATS), gen)
    negatives = _unit((2, 3, n_neg, Q_FEATS), gen)
    loss = patch_nce_loss(query, positive, negatives, tau=TAU)
    assert loss.shape == (2,) and loss.dtype == torch.float32
    reference = _slow_patch_nce(query, positive, negatives, TAU)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-5)
    loss64 = patch_nce_loss(query.double(), positive.double(), negatives.double(), tau=TAU)
    assert loss64.dtype == torch.float64
    torch.testing.assert_close(loss64, reference, rtol=1e-10, atol=1e-10)


def test_patch_nce_equals_cross_entropy_mean():
    gen = torch.Generator().manual_seed(1)
    query, positive, negatives = (_unit((1, 1, 7, Q_FEATS), gen) for _ in range(3))
    logits = torch.cat([(query * positive).sum(-1, keepdim=True), query @ negatives.transpose(-1, -2)], -1) / TAU
    expected = torch.nn.functional.cross_entropy(logits[0, 0], torch.zeros(7, dtype=torch.long))
    torch.testing.assert_close(patch_nce_loss(query, positive, negatives, tau=TAU)[0], expected)


def test_patch_nce_is_float32_under_autocast():
    gen = torch.Generator().manual_seed(2)
    query, positive, negatives = (_unit((2, 2, 16, Q_FEATS), gen) for _ in range(3))
    reference = patch_nce_loss(query, positive, negatives)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = patch_nce_loss(query, positive, negatives)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference)  # no bf16 matmul inside


@pytest.mark.parametrize(
    "shapes",
    [
        ((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4)),  # negatives not 4-D
        ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 4, 8)),  # positive differs from query
        ((2, 3, 4, 8), (2, 3, 4, 8), (2, 2, 4, 8)),  # negatives' source axis
        ((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4, 7)),  # embedding size
    ],
)
def test_patch_nce_rejects_bad_shapes(shapes):
    q, p, n = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(ValueError):
        patch_nce_loss(q, p, n)


def test_patch_nce_rejects_bad_tau():
    x = torch.randn(1, 1, 2, 3)
    with pytest.raises(ValueError):
        patch_nce_loss(x, x, x, tau=0.0)


# ----------------------------------------------------------------------------
# nass_contrastive_loss: values


@pytest.mark.parametrize("direction", ["s2n", "n2s", "both"])
@pytest.mark.parametrize("n_spks", [2, 3])
@pytest.mark.parametrize("n_frames, n_patches", [(16, 10), (12, 20)])
def test_nass_matches_slow_reference(direction, n_spks, n_frames, n_patches):
    est_feats, true_feats, perm = _features(2, n_spks, n_frames, seed=n_spks + n_frames)
    sampler = _sampler()
    loss = nass_contrastive_loss(
        est_feats,
        true_feats,
        perm,
        sampler,
        n_spks,
        n_patches=n_patches,
        tau=TAU,
        direction=direction,
        generator=torch.Generator().manual_seed(5),
        reduction="none",
    )
    positions = sample_patch_positions(n_frames, n_patches, 2, "cpu", generator=torch.Generator().manual_seed(5))
    reference = _slow_nass(est_feats, true_feats, perm, sampler, n_spks, positions, TAU, direction)
    assert loss.shape == (2,) and loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), reference, rtol=1e-4, atol=1e-4)
    # the scalar default is the batch mean, and explicit positions give the same draw
    mean = nass_contrastive_loss(
        est_feats, true_feats, perm, sampler, n_spks, tau=TAU, direction=direction, positions=positions
    )
    assert mean.shape == ()
    torch.testing.assert_close(mean, loss.mean())


def test_both_is_sum_of_directions():
    est_feats, true_feats, perm = _features(3, 2, 20, seed=3)
    sampler = _sampler()
    positions = sample_patch_positions(20, 15, 3, "cpu", generator=torch.Generator().manual_seed(0))
    kwargs = {"positions": positions, "reduction": "none"}
    s2n = nass_contrastive_loss(est_feats, true_feats, perm, sampler, 2, direction="s2n", **kwargs)
    n2s = nass_contrastive_loss(est_feats, true_feats, perm, sampler, 2, direction="n2s", **kwargs)
    both = nass_contrastive_loss(est_feats, true_feats, perm, sampler, 2, direction="both", **kwargs)
    torch.testing.assert_close(both, s2n + n2s)


@pytest.mark.parametrize("direction", ["s2n", "n2s", "both"])
def test_invariant_to_consistent_relabelling(direction):
    n_spks, n_frames = 3, 24
    est_feats, true_feats, perm = _features(2, n_spks, n_frames, seed=11)
    sampler = _sampler()
    positions = sample_patch_positions(n_frames, 16, 2, "cpu", generator=torch.Generator().manual_seed(1))
    kwargs = {"direction": direction, "positions": positions, "reduction": "none"}
    base = nass_contrastive_loss(est_feats, true_feats, perm, sampler, n_spks, **kwargs)

    # Reorder the speaker targets (noise stays last): new target j is old target sigma[j].
    sigma = torch.tensor([2, 0, 1, 3])
    relabelled = nass_contrastive_loss(est_feats, true_feats[:, sigma], perm[:, sigma], sampler, n_spks, **kwargs)
    torch.testing.assert_close(relabelled, base)

    # Reorder the outputs (noise output included): new output k is old output rho[k].
    rho = torch.tensor([3, 1, 0, 2])
    rho_inv = torch.argsort(rho)
    reordered = nass_contrastive_loss(est_feats[:, rho], true_feats, rho_inv[perm], sampler, n_spks, **kwargs)
    torch.testing.assert_close(reordered, base)


@pytest.mark.parametrize("direction", ["s2n", "n2s", "both"])
def test_perm_is_used_per_batch_item(direction):
    n_spks, n_frames = 2, 20
    est_feats, true_feats, _ = _features(3, n_spks, n_frames, seed=4)
    perm = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 2, 0]])
    sampler = _sampler()
    positions = sample_patch_positions(n_frames, 12, 3, "cpu", generator=torch.Generator().manual_seed(2))
    batch = nass_contrastive_loss(
        est_feats, true_feats, perm, sampler, n_spks, direction=direction, positions=positions, reduction="none"
    )
    for b in range(3):
        alone = nass_contrastive_loss(
            est_feats[b : b + 1],
            true_feats[b : b + 1],
            perm[b : b + 1],
            sampler,
            n_spks,
            direction=direction,
            positions=positions[b : b + 1],
            reduction="none",
        )
        torch.testing.assert_close(batch[b : b + 1], alone)
    # item 0's permutation applied to the whole batch (the authors' shortcut) gives other values
    shortcut = nass_contrastive_loss(
        est_feats,
        true_feats,
        perm[:1].expand(3, -1),
        sampler,
        n_spks,
        direction=direction,
        positions=positions,
        reduction="none",
    )
    assert not torch.allclose(shortcut[1:], batch[1:])


def test_separated_case_beats_swapped_case():
    n_spks, n_frames = 2, 40
    gen = torch.Generator().manual_seed(0)
    true_feats = torch.zeros(1, n_spks + 1, N_FEATS, n_frames)
    true_feats[:, 0, :2] = torch.rand(2, n_frames, generator=gen) + 0.1  # disjoint supports
    true_feats[:, 1, 2:4] = torch.rand(2, n_frames, generator=gen) + 0.1
    true_feats[:, 2, 4:] = torch.rand(2, n_frames, generator=gen) + 0.1  # noise, orthogonal to speech
    perm = torch.tensor([[1, 2, 0]])
    separated = torch.empty_like(true_feats)
    separated[:, perm[0]] = true_feats  # estimate == ground truth
    swapped = torch.empty_like(true_feats)
    swapped[:, perm[0]] = true_feats[:, [2, 1, 0]]  # speaker 0 and noise exchanged
    sampler = _sampler()
    for direction in ("s2n", "n2s", "both"):
        kwargs = {"direction": direction, "generator": torch.Generator().manual_seed(0), "n_patches": 32}
        good = nass_contrastive_loss(separated, true_feats, perm, sampler, n_spks, **kwargs)
        kwargs["generator"] = torch.Generator().manual_seed(0)
        bad = nass_contrastive_loss(swapped, true_feats, perm, sampler, n_spks, **kwargs)
        assert float(good.detach()) < float(bad.detach()), direction


# ----------------------------------------------------------------------------
# nass_contrastive_loss: gradients, autocast, validation


@pytest.mark.parametrize("direction, query_is_speech", [("s2n", True), ("n2s", False), ("both", None)])
def test_gradients_reach_only_the_query_branch(direction, query_is_speech):
    n_spks, n_frames = 2, 16
    est_feats, true_feats, _ = _features(2, n_spks, n_frames, seed=9)
    perm = torch.tensor([[2, 0, 1], [1, 2, 0]])  # the noise output differs per item
    est_feats.requires_grad_(True)
    true_feats.requires_grad_(True)
    sampler = _sampler()
    loss = nass_contrastive_loss(est_feats, true_feats, perm, sampler, n_spks, n_patches=12, direction=direction)
    loss.backward()
    assert true_feats.grad is None
    for param in sampler.parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)
    for b in range(2):
        for j in range(n_spks + 1):
            grad = est_feats.grad[b, perm[b, j]]
            has_grad = bool(grad.abs().sum() > 0)
            is_speech = j < n_spks
            expected = True if query_is_speech is None else (is_speech == query_is_speech)
            assert has_grad == expected, (b, j)


def test_negative_branch_gets_no_gradient_through_sampler():
    """s2n: the sampler's gradient equals that of the query term with constant positives and negatives."""
    n_spks, n_frames = 2, 16
    est_feats, true_feats, perm = _features(1, n_spks, n_frames, seed=6)
    positions = sample_patch_positions(n_frames, 8, 1, "cpu", generator=torch.Generator().manual_seed(0))
    sampler = _sampler()
    nass_contrastive_loss(est_feats, true_feats, perm, sampler, n_spks, positions=positions).backward()
    grads = [p.grad.clone() for p in sampler.parameters()]
    sampler.zero_grad()

    def patches(feats, sources):
        return feats[0][sources][:, :, positions[0]].transpose(1, 2).unsqueeze(0)  # [1, S, M, N]

    query = sampler(patches(est_feats, perm[0, :n_spks]))
    with torch.no_grad():
        positive = sampler(patches(true_feats, torch.arange(n_spks)))
        negatives = sampler(patches(est_feats, perm[0, n_spks:])).expand_as(query)
    patch_nce_loss(query, positive, negatives).mean().backward()
    for grad, param in zip(grads, sampler.parameters()):
        torch.testing.assert_close(grad, param.grad)


@pytest.mark.parametrize("direction", ["s2n", "n2s", "both"])
@pytest.mark.parametrize("feats_dtype", [torch.float32, torch.bfloat16])
def test_autocast_bf16_close_to_fp32(direction, feats_dtype):
    n_spks, n_frames = 2, 64
    est_feats, true_feats, perm = _features(2, n_spks, n_frames, seed=8)
    sampler = _sampler(in_channels=N_FEATS, features=32)
    kwargs = {"direction": direction, "n_patches": 48}
    reference = nass_contrastive_loss(
        est_feats, true_feats, perm, sampler, n_spks, generator=torch.Generator().manual_seed(0), **kwargs
    )
    est_feats.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nass_contrastive_loss(
            est_feats.to(feats_dtype),
            true_feats.to(feats_dtype),
            perm,
            sampler,
            n_spks,
            generator=torch.Generator().manual_seed(0),
            **kwargs,
        )
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss))
    torch.testing.assert_close(loss, reference, rtol=1e-2, atol=1e-2)
    loss.backward()
    assert bool(torch.isfinite(est_feats.grad).all())


def _valid_inputs():
    est_feats, true_feats, perm = _features(2, 2, 10)
    return est_feats, true_feats, perm, _sampler()


@pytest.mark.parametrize(
    "change",
    [
        lambda a: {**a, "est_feats": a["est_feats"][0]},  # 3-D
        lambda a: {**a, "true_feats": a["true_feats"][:, :2]},  # noise missing from the targets
        lambda a: {**a, "est_feats": a["est_feats"][:, :2], "true_feats": a["true_feats"][:, :2]},  # n_spks mismatch
        lambda a: {**a, "true_feats": a["true_feats"][..., :9]},  # frames differ
        lambda a: {**a, "perm": a["perm"][:, :2]},
        lambda a: {**a, "perm": a["perm"][:1]},
        lambda a: {**a, "perm": a["perm"].float()},
        lambda a: {**a, "direction": "s2s"},
        lambda a: {**a, "direction": "none"},
        lambda a: {**a, "reduction": "sum"},
        lambda a: {**a, "n_patches": 0},
        lambda a: {**a, "n_spks": 0},
        lambda a: {**a, "tau": -1.0},
        lambda a: {**a, "positions": torch.zeros(3, 4, dtype=torch.long)},
        lambda a: {**a, "positions": torch.zeros(2, 4)},
        lambda a: {**a, "positions": torch.zeros(2, dtype=torch.long)},
    ],
)
def test_nass_rejects_bad_inputs(change):
    est_feats, true_feats, perm, sampler = _valid_inputs()
    args = {"est_feats": est_feats, "true_feats": true_feats, "perm": perm, "sampler": sampler, "n_spks": 2}
    with pytest.raises(ValueError):
        nass_contrastive_loss(**change(args))


# ----------------------------------------------------------------------------
# PatchSampler


def test_patch_sampler_is_unit_norm():
    sampler = _sampler(in_channels=16, features=256)
    patches = torch.rand(2, 3, 50, 16)
    emb = sampler(patches)
    assert emb.shape == (2, 3, 50, 256) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 3, 50))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb_amp = sampler(patches)
    assert emb_amp.dtype == torch.float32
    torch.testing.assert_close(emb_amp.norm(dim=-1), torch.ones(2, 3, 50))
    assert sampler.double()(patches.double()).dtype == torch.float64


def test_patch_sampler_structure_and_zero_output():
    sampler = PatchSampler(16)
    linears = [m for m in sampler.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 256), (256, 256)]
    assert sum(p.numel() for p in sampler.parameters()) == 16 * 256 + 256 + 256 * 256 + 256
    with torch.no_grad():
        linears[-1].weight.zero_()
        linears[-1].bias.zero_()
    assert bool(torch.isfinite(sampler(torch.rand(4, 16))).all())  # eps guards all-zero outputs


def test_patch_sampler_rejects_bad_channels():
    with pytest.raises(ValueError):
        PatchSampler(8)(torch.rand(3, 7))
    with pytest.raises(ValueError):
        PatchSampler(0)
