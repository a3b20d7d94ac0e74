"""Tests for NASS's patch-wise contrastive loss (modules.losses.patch) and PatchSampler (modules.models.patch_sampler).

The reference implementation below is deliberately slow and obvious: float64,
whole masked maps ``h_k = m_k * h_x``, the conv front end over the whole map,
the encoder over the whole clean sources, Python loops over items, speakers
and patches, and the cross-entropy written out by hand.
"""

import copy

import pytest
import torch
from speechbrain.lobes.models.dual_path import Encoder

from modules.losses import nass_contrastive_loss, patch_nce_loss, sample_patch_positions
from modules.models.patch_sampler import PatchSampler, encode_frames, encode_windows

N_FILTERS = 8  # encoder filters N
N_FRAMES = 12  # encoder frames L
KERNEL = 4  # encoder kernel (stride 2)
Q_FEATS = 8  # embedding size Q
TAU = 0.07
KINDS = ("bin", "frame")
DIRECTIONS = ("s2n", "n2s", "both")


class PlainEncoder(torch.nn.Module):
    """The dual-path encoder's computation in a module :func:`encode_frames` does not recognise (full-run path)."""

    def __init__(self, encoder):
        super().__init__()
        self.inner = encoder

    def forward(self, x):
        return self.inner(x)


def _sampler(kind="bin", seed=0, features=Q_FEATS, dtype=torch.float32):
    torch.manual_seed(seed)
    in_channels = N_FILTERS if kind == "frame" else None
    return PatchSampler(kind, features=features, in_channels=in_channels).to(dtype)


def _setup(batch=2, n_spks=2, n_frames=N_FRAMES, seed=0, dtype=torch.float32):
    """Encoder, clean sources [B, T, S], mixture encoding [B, N, L], masks [S, B, N, L] and a perm per item."""
    gen = torch.Generator().manual_seed(seed)
    n_src = n_spks + 1
    torch.manual_seed(seed)
    encoder = Encoder(kernel_size=KERNEL, out_channels=N_FILTERS).to(dtype)
    time_len = (n_frames - 1) * (KERNEL // 2) + KERNEL
    sources = torch.randn(batch, time_len, n_src, generator=gen, dtype=dtype)
    with torch.no_grad():
        mix_w = encoder(sources.sum(-1))
    masks = torch.rand(n_src, batch, N_FILTERS, n_frames, generator=gen, dtype=dtype)
    perm = torch.stack([torch.randperm(n_src, generator=gen) for _ in range(batch)])
    return encoder, sources, mix_w, masks, perm


def _positions(sampler, batch, n_patches, seed=0, n_frames=N_FRAMES):
    gen = torch.Generator().manual_seed(seed)
    return sampler.sample_positions(N_FILTERS, n_frames, n_patches, batch, generator=gen)


def _bin_or_frame_map(sampler, feature_map):
    """Raw patch value at every position of one ``[N, L]`` map: the conv front end over the whole map, or the map."""
    if sampler.patch == "bin":
        return sampler.conv(feature_map[None, None])[0, 0]  # [N - 4, L - 4]
    return feature_map  # [N, L]


def _embed(sampler, patch_map, position):
    """Unit-norm embedding of the patch at one flat position, written out."""
    if sampler.patch == "bin":
        row, col = divmod(position, patch_map.shape[1])
        y = sampler.mlp(patch_map[row, col].reshape(1))
    else:
        y = sampler.mlp(patch_map[:, position])
    return y / torch.sqrt((y * y).sum())


def _ce(queries, positives, negatives, mask, tau):
    """Mean over i of -log(e^{q_i.p_i/tau} / (e^{q_i.p_i/tau} + sum_j e^{q_i.n_j/tau})), j != i if masked."""
    total = 0.0
    for i, (q, p) in enumerate(zip(queries, positives)):
        pos = (q * p).sum() / tau
        denominator = torch.exp(pos)
        for j, n in enumerate(negatives):
            if not (mask and j == i):
                denominator = denominator + torch.exp((q * n).sum() / tau)
        total = total + (torch.log(denominator) - pos)
    return total / len(queries)


def _reference(sampler, encoder, mix_w, masks, sources, perm, positions, n_spks, direction, mask, tau=TAU):
    """The NASS loss per item ``[B]`` the slow way; differentiable in masks, mix_w and the sampler's parameters."""
    h = masks * mix_w  # [S, B, N, L]: the whole masked maps
    out = []
    for b in range(mix_w.shape[0]):
        pos = positions[b].tolist()

        def embed(feature_map, detach, pos=pos):
            patch_map = _bin_or_frame_map(sampler, feature_map)
            emb = [_embed(sampler, patch_map, p) for p in pos]
            return [e.detach() for e in emb] if detach else emb

        def clean(s, b=b):
            with torch.no_grad():
                return encoder(sources[b, :, s][None])[0]  # the encoder over the whole source: [N, L]

        noise_out = int(perm[b, n_spks])
        item = 0.0
        for t in range(n_spks):
            spk_out = int(perm[b, t])
            if direction in ("s2n", "both"):
                query, positive = embed(h[spk_out, b], False), embed(clean(t), True)
                item = item + _ce(query, positive, embed(h[noise_out, b], True), mask, tau) / n_spks
            if direction in ("n2s", "both"):
                query, positive = embed(h[noise_out, b], False), embed(clean(n_spks), True)
                item = item + _ce(query, positive, embed(h[spk_out, b], True), mask, tau) / n_spks
        out.append(item)
    return torch.stack(out)


def _ours(sampler, encoder, mix_w, masks, sources, perm, positions, n_spks, **kwargs):
    est, true = sampler.extract(mix_w, masks, encoder, sources, positions=positions)
    return nass_contrastive_loss(est, true, perm, sampler, n_spks, reduction="none", **kwargs)


# ----------------------------------------------------------------------------
# the loss against the slow reference: values and gradients


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("mask", [True, False])
def test_loss_and_gradients_match_slow_reference(kind, direction, mask):
    n_spks, n_patches = 2, 7
    encoder, sources, mix_w, masks, perm = _setup(n_spks=n_spks, seed=3, dtype=torch.float64)
    sampler = _sampler(kind, dtype=torch.float64)
    positions = _positions(sampler, 2, n_patches, seed=1)
    leaves = [mix_w.clone().requires_grad_(), masks.clone().requires_grad_()]
    ref_leaves = [mix_w.clone().requires_grad_(), masks.clone().requires_grad_()]
    ref_sampler = copy.deepcopy(sampler)

    loss = _ours(
        sampler, encoder, *leaves, sources, perm, positions, n_spks, direction=direction, mask_same_position=mask
    )
    reference = _reference(ref_sampler, encoder, *ref_leaves, sources, perm, positions, n_spks, direction, mask)
    assert loss.shape == (2,) and loss.dtype == torch.float64
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-10)

    loss.sum().backward()
    reference.sum().backward()
    for ours, ref in zip(leaves, ref_leaves):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-9, atol=1e-12)
    for ours, ref in zip(sampler.parameters(), ref_sampler.parameters()):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_close_to_float64_reference(kind):
    encoder, sources, mix_w, masks, perm = _setup(n_spks=3, seed=5)
    sampler = _sampler(kind)
    positions = _positions(sampler, 2, 9, seed=2)
    loss = _ours(sampler, encoder, mix_w, masks, sources, perm, positions, 3, direction="both")
    assert loss.dtype == torch.float32
    enc64, sampler64 = copy.deepcopy(encoder).double(), copy.deepcopy(sampler).double()
    with torch.no_grad():
        reference = _reference(
            sampler64, enc64, mix_w.double(), masks.double(), sources.double(), perm, positions, 3, "both", True
        )
    torch.testing.assert_close(loss.double(), reference, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# patch extraction against the whole maps


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fast", [True, False])
def test_extracted_patches_equal_full_maps(kind, fast):
    encoder, sources, mix_w, masks, _ = _setup(batch=3, n_spks=2, seed=7, dtype=torch.float64)
    if not fast:
        encoder = PlainEncoder(encoder)
    sampler = _sampler(kind, dtype=torch.float64)
    n_patches = 12
    positions = _positions(sampler, 3, n_patches, seed=4)
    est, true = sampler.extract(mix_w, masks, encoder, sources, positions=positions)
    shape = (3, 3, n_patches, *sampler.patch_shape)
    assert est.shape == shape and true.shape == shape

    h = masks * mix_w  # [S, B, N, L]
    clean = encoder(sources.permute(0, 2, 1).flatten(0, 1)).reshape(3, 3, N_FILTERS, N_FRAMES)  # [B, S, N, L]
    n_cols = sampler.grid_shape(N_FILTERS, N_FRAMES)[1]
    for b in range(3):
        for s in range(3):
            for m, p in enumerate(positions[b].tolist()):
                row, col = divmod(p, n_cols)
                if kind == "bin":
                    torch.testing.assert_close(est[b, s, m], h[s, b, row : row + 5, col : col + 5], rtol=0, atol=0)
                    torch.testing.assert_close(true[b, s, m], clean[b, s, row : row + 5, col : col + 5])
                else:
                    torch.testing.assert_close(est[b, s, m], h[s, b, :, col], rtol=0, atol=0)
                    torch.testing.assert_close(true[b, s, m], clean[b, s, :, col])
    if kind == "bin":  # the conv front end on a window is the whole-map conv at the window's position
        with torch.no_grad():
            full = sampler.conv(h.transpose(0, 1).reshape(-1, 1, N_FILTERS, N_FRAMES)).reshape(3, 3, -1)
            windows = sampler.conv(est.reshape(-1, 1, 5, 5)).reshape(3, 3, n_patches)
        torch.testing.assert_close(windows, full.gather(-1, positions[:, None].expand(-1, 3, -1)))


def test_extract_draws_positions_per_item_reproducibly():
    encoder, sources, mix_w, masks, _ = _setup(batch=2, seed=1)
    sampler = _sampler()
    first = sampler.extract(mix_w, masks, encoder, sources, 6, generator=torch.Generator().manual_seed(3))
    again = sampler.extract(mix_w, masks, encoder, sources, 6, generator=torch.Generator().manual_seed(3))
    given = sampler.extract(mix_w, masks, encoder, sources, positions=_positions(sampler, 2, 6, seed=3))
    for a, b, c in zip(first, again, given):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert first[0].shape == (2, 3, 6, 5, 5)


def test_extract_gradients_only_to_estimates():
    encoder, sources, mix_w, masks, _ = _setup(seed=2)
    mix_w.requires_grad_(True)
    masks.requires_grad_(True)
    sources.requires_grad_(True)
    est, true = _sampler().extract(mix_w, masks, encoder, sources, 8)
    assert est.requires_grad and not true.requires_grad
    est.sum().backward()
    assert sources.grad is None and encoder.conv1d.weight.grad is None
    assert bool(masks.grad.abs().sum() > 0) and bool(mix_w.grad.abs().sum() > 0)


@pytest.mark.parametrize("bias", [False, True])
def test_encode_frames_and_windows_match_full_encoder(bias):
    encoder = Encoder(kernel_size=8, out_channels=6)
    if bias:  # a Conv1d with a bias takes the same fast path
        torch.manual_seed(0)
        encoder.conv1d = torch.nn.Conv1d(1, 6, 8, stride=4, bias=True)
    signals = torch.randn(2, 3, 400)  # [B, n_src, T]
    full = encoder(signals.flatten(0, 1)).reshape(2, 3, 6, -1)  # [B, n_src, N, L]
    frames = torch.tensor([[[0, 98], [5, 5]], [[97, 1], [2, 3]]])  # [B, 2, 2]
    for enc in (encoder, PlainEncoder(encoder)):
        out = encode_frames(enc, signals, frames)
        assert out.shape == (2, 3, 2, 2, 6)
        for b in range(2):
            torch.testing.assert_close(out[b], full[b][:, :, frames[b]].permute(0, 2, 3, 1))
        rows = torch.tensor([[[0, 5], [2, 3]], [[1, 1], [4, 0]]])  # [B, M = 2, R = 2]
        out = encode_windows(enc, signals, rows, frames)  # [B, n_src, M, R, C]
        for b in range(2):
            for m in range(2):
                torch.testing.assert_close(out[b, :, m], full[b][:, rows[b, m]][:, :, frames[b, m]])


# ----------------------------------------------------------------------------
# positions


def test_positions_without_replacement_are_distinct_per_item():
    gen = torch.Generator().manual_seed(0)
    pos = sample_patch_positions(50, 50, 4, "cpu", generator=gen)
    assert pos.shape == (4, 50) and pos.dtype == torch.long
    for row in pos:
        assert sorted(row.tolist()) == list(range(50))  # M == n: a permutation
    assert not torch.equal(pos[0], pos[1])  # items draw independently
    pos = sample_patch_positions(1000, 30, 3, "cpu", generator=gen)
    assert all(len(set(row.tolist())) == 30 for row in pos)
    assert int(pos.min()) >= 0 and int(pos.max()) < 1000


def test_positions_with_replacement_when_more_patches_than_positions():
    gen = torch.Generator().manual_seed(0)
    pos = sample_patch_positions(5, 200, 2, "cpu", generator=gen)
    assert pos.shape == (2, 200)
    assert int(pos.min()) >= 0 and int(pos.max()) < 5
    assert set(pos[0].tolist()) == set(range(5))


def test_positions_reproducible_and_on_the_grid():
    first = sample_patch_positions(64, 16, 3, "cpu", generator=torch.Generator().manual_seed(7))
    second = sample_patch_positions(64, 16, 3, "cpu", generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert PatchSampler().grid_shape(256, 1000) == (252, 996)
    assert PatchSampler("frame", in_channels=256).grid_shape(256, 1000) == (1, 1000)
    pos = PatchSampler().sample_positions(8, 12, 40, 3, generator=torch.Generator().manual_seed(0))
    assert pos.shape == (3, 40) and int(pos.max()) < 4 * 8  # 32 bins: with replacement


@pytest.mark.parametrize("args", [(0, 4, 1), (4, 0, 1), (4, 4, -1)])
def test_positions_reject_bad_sizes(args):
    with pytest.raises(ValueError):
        sample_patch_positions(*args, "cpu")


# ----------------------------------------------------------------------------
# patch_nce_loss


def _unit(shape, gen, dtype=torch.float32):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)


@pytest.mark.parametrize("mask", [False, True])
def test_patch_nce_matches_slow_reference(mask):
    gen = torch.Generator().manual_seed(0)
    query, positive, negatives = (_unit((2, 3, 9, Q_FEATS), gen, torch.float64) for _ in range(3))
    loss = patch_nce_loss(query, positive, negatives, tau=TAU, mask_same_position=mask)
    reference = torch.tensor(
        [sum(_ce(query[b, s], positive[b, s], negatives[b, s], mask, TAU) for s in range(3)) / 3 for b in range(2)]
    )
    assert loss.shape == (2,) and loss.dtype == torch.float64
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-10)
    loss32 = patch_nce_loss(query.float(), positive.float(), negatives.float(), tau=TAU, mask_same_position=mask)
    assert loss32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), reference, rtol=1e-5, atol=1e-5)


def test_patch_nce_mask_equals_cross_entropy_without_the_diagonal():
    gen = torch.Generator().manual_seed(1)
    query, positive, negatives = (_unit((1, 1, 7, Q_FEATS), gen) for _ in range(3))
    sims = query[0, 0] @ negatives[0, 0].T  # [M, M]
    off_diagonal = sims[~torch.eye(7, dtype=torch.bool)].reshape(7, 6)
    logits = torch.cat([(query * positive).sum(-1)[0, 0, :, None], off_diagonal], -1) / TAU
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(7, dtype=torch.long))
    loss = patch_nce_loss(query, positive, negatives, tau=TAU, mask_same_position=True)
    torch.testing.assert_close(loss[0], expected)
    # the authors fill the diagonal with -10 before dividing by tau: the same loss in float32
    filled = torch.cat([(query * positive).sum(-1)[0, 0, :, None], sims.masked_fill(torch.eye(7).bool(), -10.0)], -1)
    torch.testing.assert_close(loss[0], torch.nn.functional.cross_entropy(filled / TAU, torch.zeros(7).long()))
    # one patch with the mask: no negative left, the loss is 0 and finite gradients
    q = query[:, :, :1].clone().requires_grad_()
    single = patch_nce_loss(q, positive[:, :, :1], negatives[:, :, :1], mask_same_position=True)
    single.sum().backward()
    assert float(single.detach()) == 0.0 and bool(torch.isfinite(q.grad).all())


def test_patch_nce_is_float32_under_autocast():
    gen = torch.Generator().manual_seed(2)
    query, positive, negatives = (_unit((2, 2, 16, Q_FEATS), gen) for _ in range(3))
    reference = patch_nce_loss(query, positive, negatives, mask_same_position=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = patch_nce_loss(query, positive, negatives, mask_same_position=True)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference)  # no bf16 matmul inside


@pytest.mark.parametrize(
    "shapes, mask",
    [
        (((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4)), False),  # negatives not 4-D
        (((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 4, 8)), False),  # positive differs from query
        (((2, 3, 4, 8), (2, 3, 4, 8), (2, 2, 4, 8)), False),  # negatives' source axis
        (((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4, 7)), False),  # embedding size
        (((2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 5, 8)), True),  # mask needs K == M
    ],
)
def test_patch_nce_rejects_bad_shapes(shapes, mask):
    q, p, n = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(ValueError):
        patch_nce_loss(q, p, n, mask_same_position=mask)
    with pytest.raises(ValueError):
        patch_nce_loss(torch.randn(1, 1, 2, 3), torch.randn(1, 1, 2, 3), torch.randn(1, 1, 2, 3), tau=0.0)


# ----------------------------------------------------------------------------
# nass_contrastive_loss: structure


def _patches(kind="bin", batch=2, n_spks=2, n_patches=10, seed=0):
    encoder, sources, mix_w, masks, perm = _setup(batch=batch, n_spks=n_spks, seed=seed)
    sampler = _sampler(kind)
    est, true = sampler.extract(mix_w, masks, encoder, sources, positions=_positions(sampler, batch, n_patches, seed))
    return est, true, perm, sampler


def test_both_is_sum_of_directions_and_mean_is_batch_mean():
    est, true, perm, sampler = _patches(batch=3, seed=3)
    losses = {d: nass_contrastive_loss(est, true, perm, sampler, 2, direction=d, reduction="none") for d in DIRECTIONS}
    torch.testing.assert_close(losses["both"], losses["s2n"] + losses["n2s"])
    torch.testing.assert_close(nass_contrastive_loss(est, true, perm, sampler, 2), losses["s2n"].mean())


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_invariant_to_consistent_relabelling(direction):
    est, true, perm, sampler = _patches(n_spks=3, seed=11)
    kwargs = {"direction": direction, "reduction": "none"}
    base = nass_contrastive_loss(est, true, perm, sampler, 3, **kwargs)
    sigma = torch.tensor([2, 0, 1, 3])  # reorder the speaker targets (noise stays last)
    torch.testing.assert_close(nass_contrastive_loss(est, true[:, sigma], perm[:, sigma], sampler, 3, **kwargs), base)
    rho = torch.tensor([3, 1, 0, 2])  # reorder the outputs (noise output included)
    torch.testing.assert_close(
        nass_contrastive_loss(est[:, rho], true, rho.argsort()[perm], sampler, 3, **kwargs), base
    )


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_perm_is_used_per_batch_item(direction):
    est, true, _, sampler = _patches(batch=3, seed=4)
    perm = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 2, 0]])
    batch = nass_contrastive_loss(est, true, perm, sampler, 2, direction=direction, reduction="none")
    for b in range(3):
        alone = nass_contrastive_loss(
            est[b : b + 1], true[b : b + 1], perm[b : b + 1], sampler, 2, direction=direction, reduction="none"
        )
        torch.testing.assert_close(batch[b : b + 1], alone)
    # item 0's permutation for the whole batch (the authors' shortcut) gives other values
    shortcut = nass_contrastive_loss(
        est, true, perm[:1].expand(3, -1), sampler, 2, direction=direction, reduction="none"
    )
    assert not torch.allclose(shortcut[1:], batch[1:])


@pytest.mark.parametrize("kind", KINDS)
def test_perfect_estimates_beat_swapped_ones(kind):
    """h_k equal to the encoded references beats the same maps with speaker 0 and the noise exchanged."""
    n_spks, batch = 2, 2
    encoder, sources, _, _, perm = _setup(batch=batch, n_spks=n_spks, n_frames=40, seed=0)
    with torch.no_grad():
        clean = encoder(sources.permute(0, 2, 1).flatten(0, 1)).reshape(batch, 3, N_FILTERS, 40)  # target order
    mix_w = torch.ones(batch, N_FILTERS, 40)
    items = torch.arange(batch)[:, None]
    perfect = torch.empty(3, batch, N_FILTERS, 40)
    perfect[perm, items] = clean  # output perm[b, j] holds target j
    swapped = torch.empty_like(perfect)
    swapped[perm, items] = clean[:, [2, 1, 0]]
    sampler = _sampler(kind)
    positions = _positions(sampler, batch, 32, n_frames=40)
    for direction in DIRECTIONS:
        good, bad = (
            nass_contrastive_loss(
                *sampler.extract(mix_w, masks, encoder, sources, positions=positions),
                perm,
                sampler,
                n_spks,
                direction=direction,
                reduction="none",
            )
            for masks in (perfect, swapped)
        )
        assert bool((good < bad).all()), (kind, direction, good, bad)


# ----------------------------------------------------------------------------
# nass_contrastive_loss: gradients, autocast, validation


@pytest.mark.parametrize("direction, query_is_speech", [("s2n", True), ("n2s", False), ("both", None)])
def test_gradients_reach_only_the_query_branch(direction, query_is_speech):
    encoder, sources, mix_w, masks, _ = _setup(seed=9)
    perm = torch.tensor([[2, 0, 1], [1, 2, 0]])  # the noise output differs per item
    masks.requires_grad_(True)
    sources.requires_grad_(True)
    sampler = _sampler()
    est, true = sampler.extract(mix_w, masks, encoder, sources, 12)
    nass_contrastive_loss(est, true, perm, sampler, 2, direction=direction).backward()
    assert sources.grad is None and encoder.conv1d.weight.grad is None
    for param in sampler.parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0)
    for b in range(2):
        for j in range(3):
            has_grad = bool(masks.grad[perm[b, j], b].abs().sum() > 0)
            expected = True if query_is_speech is None else ((j < 2) == query_is_speech)
            assert has_grad == expected, (b, j)


@pytest.mark.parametrize("kind", KINDS)
def test_positive_and_negatives_get_no_gradient_through_sampler(kind):
    """s2n: the sampler's gradient is that of the query term with constant positives and negatives."""
    est, true, perm, sampler = _patches(kind, batch=1, seed=6)
    nass_contrastive_loss(est, true, perm, sampler, 2).backward()
    grads = [p.grad.clone() for p in sampler.parameters()]
    sampler.zero_grad()
    ordered = est[0, perm[0]][None]
    query = sampler(ordered[:, :2])
    with torch.no_grad():
        positive, negatives = sampler(true[:, :2]), sampler(ordered[:, 2:]).expand_as(query)
    patch_nce_loss(query, positive, negatives, mask_same_position=True).mean().backward()
    for grad, param in zip(grads, sampler.parameters()):
        torch.testing.assert_close(grad, param.grad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masks_dtype", [torch.float32, torch.bfloat16])
def test_autocast_bf16_runs_and_stays_finite(kind, masks_dtype):
    encoder, sources, mix_w, masks, perm = _setup(n_frames=64, seed=8)
    sampler = _sampler(kind, features=32)
    positions = _positions(sampler, 2, 48, n_frames=64)
    est, true = sampler.extract(mix_w, masks, encoder, sources, positions=positions)
    reference = nass_contrastive_loss(est, true, perm, sampler, 2, direction="both")
    masks = masks.to(masks_dtype).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        est, true = sampler.extract(mix_w.to(masks_dtype), masks, encoder, sources, positions=positions)
        loss = nass_contrastive_loss(est, true, perm, sampler, 2, direction="both")
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss))
    torch.testing.assert_close(loss, reference, rtol=0.05, atol=0.05)
    loss.backward()
    assert bool(torch.isfinite(masks.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in sampler.parameters())


def _valid_args():
    est, true, perm, sampler = _patches()
    return {"est_patches": est, "true_patches": true, "perm": perm, "sampler": sampler, "n_spks": 2}


@pytest.mark.parametrize(
    "change",
    [
        lambda a: {**a, "est_patches": a["est_patches"][0, 0, 0]},  # 2-D
        lambda a: {**a, "true_patches": a["true_patches"][:, :2]},  # noise missing from the targets
        lambda a: {**a, "est_patches": a["est_patches"][:, :2], "true_patches": a["true_patches"][:, :2]},
        lambda a: {**a, "true_patches": a["true_patches"][:, :, :9]},  # patches differ
        lambda a: {**a, "est_patches": a["est_patches"][..., :4, :4], "true_patches": a["true_patches"][..., :4, :4]},
        lambda a: {**a, "perm": a["perm"][:, :2]},
        lambda a: {**a, "perm": a["perm"][:1]},
        lambda a: {**a, "perm": a["perm"].float()},
        lambda a: {**a, "direction": "s2s"},
        lambda a: {**a, "direction": "none"},
        lambda a: {**a, "reduction": "sum"},
        lambda a: {**a, "n_spks": 0},
        lambda a: {**a, "tau": -1.0},
    ],
)
def test_nass_rejects_bad_inputs(change):
    with pytest.raises(ValueError):
        nass_contrastive_loss(**change(_valid_args()))


def test_extract_rejects_bad_inputs():
    encoder, sources, mix_w, masks, _ = _setup()
    sampler = _sampler()
    bad = [
        (mix_w[0], masks, sources),  # mix_w 2-D
        (mix_w, masks[:2], sources),  # masks and sources disagree on S
        (mix_w, masks[..., :10], sources),  # masks and mix_w disagree on L
        (mix_w, masks, sources[:, :-3]),  # sources give another L
        (mix_w[:, :4], masks[:, :, :4], sources),  # N = 4: no 5 x 5 window
    ]
    for mix, msk, src in bad:
        with pytest.raises(ValueError):
            sampler.extract(mix, msk, encoder, src, 4)
    with pytest.raises(ValueError):
        sampler.extract(mix_w, masks, encoder, sources, 0)
    for positions in (torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)):
        with pytest.raises(ValueError):
            sampler.extract(mix_w, masks, encoder, sources, positions=positions)
    with pytest.raises(ValueError):  # in_channels given: N is checked
        PatchSampler(in_channels=N_FILTERS + 1).extract(mix_w, masks, encoder, sources, 4)


# ----------------------------------------------------------------------------
# PatchSampler


def test_bin_sampler_structure_and_parameter_count():
    sampler = PatchSampler()
    convs = [m for m in sampler.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in convs] == [(1, 1, (3, 3), (0, 0))] * 2
    assert [(m.weight.numel(), m.bias.numel()) for m in convs] == [(9, 1), (9, 1)]
    linears = [m for m in sampler.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 256), (256, 256)]
    assert sum(p.numel() for p in sampler.parameters()) == 2 * 10 + (256 + 256) + (256 * 256 + 256) == 66_324
    assert sampler.patch_shape == (5, 5)


def test_frame_sampler_structure_and_zero_output():
    sampler = PatchSampler("frame", in_channels=16)
    assert sampler.patch_shape == (16,)
    assert sorted(sampler.state_dict()) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight"]
    assert sum(p.numel() for p in sampler.parameters()) == 16 * 256 + 256 + 256 * 256 + 256
    with torch.no_grad():
        sampler.mlp[2].weight.zero_()
        sampler.mlp[2].bias.zero_()
    assert bool(torch.isfinite(sampler(torch.rand(4, 16))).all())  # eps guards all-zero outputs


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_is_unit_norm_and_float32_under_autocast(kind):
    sampler = _sampler(kind, features=64)
    patches = torch.rand(2, 3, 20, *sampler.patch_shape)
    emb = sampler(patches)
    assert emb.shape == (2, 3, 20, 64) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 3, 20))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb_amp = sampler(patches)
    assert emb_amp.dtype == torch.float32
    torch.testing.assert_close(emb_amp.norm(dim=-1), torch.ones(2, 3, 20))
    assert sampler.double()(patches.double()).dtype == torch.float64


def test_bin_embedding_is_the_conv_then_mlp_of_the_window():
    sampler = _sampler("bin")
    window = torch.rand(5, 5)
    first = torch.relu(sampler.conv[0](window[None, None]))  # [1, 1, 3, 3]
    value = sampler.conv[2](first)  # [1, 1, 1, 1]
    expected = torch.nn.functional.normalize(sampler.mlp(value.reshape(1, 1)), dim=-1)[0]
    torch.testing.assert_close(sampler(window), expected)


def test_sampler_rejects_bad_options_and_shapes():
    for args, kwargs in [
        (("pixel",), {}),
        ((8,), {}),  # the former signature PatchSampler(in_channels)
        (("frame",), {}),  # frame patches need in_channels
        (("bin",), {"features": 0}),
        (("bin",), {"in_channels": 4}),  # too few filters for a 5 x 5 window
        (("frame",), {"in_channels": 0}),
    ]:
        with pytest.raises(ValueError):
            PatchSampler(*args, **kwargs)
    with pytest.raises(ValueError):
        PatchSampler()(torch.rand(3, 4, 4))
    with pytest.raises(ValueError):
        PatchSampler()(torch.rand(5))
    with pytest.raises(ValueError):
        PatchSampler("frame", in_channels=8)(torch.rand(3, 7))
