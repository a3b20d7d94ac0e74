"""Tests for modules.losses (pairwise SI-SNR and the PIT loss)."""

import itertools
import math

import pytest
import torch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

from modules.losses import apply_perm, best_permutation, pairwise_si_snr, pit_si_snr_loss
from modules.metrics import si_snr


def _signals(batch, time, n_src, seed=0, dtype=torch.float32):
    """Targets and noisy, source-shuffled estimates (well conditioned)."""
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randn(batch, time, n_src, generator=gen, dtype=dtype)
    mixing = torch.eye(n_src, dtype=dtype) + 0.3 * torch.rand(n_src, n_src, generator=gen, dtype=dtype)
    estimates = targets @ mixing + 0.3 * torch.randn(batch, time, n_src, generator=gen, dtype=dtype)
    return estimates[..., torch.randperm(n_src, generator=gen)], targets


def _slow_si_snr(estimate, target):
    """SI-SNR (dB) of two 1-D signals by the textbook projection, float64."""
    estimate = estimate.double() - estimate.double().mean()
    target = target.double() - target.double().mean()
    projection = (estimate @ target) / (target @ target) * target
    noise = estimate - projection
    return 10.0 * math.log10((projection @ projection) / (noise @ noise))


def _slow_pairwise(estimates, targets):
    """Python-loop pairwise SI-SNR, ``[batch, n_est, n_tgt]`` float64."""
    batch, _, n_est = estimates.shape
    n_tgt = targets.shape[-1]
    out = torch.empty(batch, n_est, n_tgt, dtype=torch.float64)
    for b in range(batch):
        for i in range(n_est):
            for j in range(n_tgt):
                out[b, i, j] = _slow_si_snr(estimates[b, :, i], targets[b, :, j])
    return out


def _slow_pit(estimates, targets):
    """Loss and perm by looping over itertools.permutations (float64)."""
    pairwise = _slow_pairwise(estimates, targets)
    n_src = targets.shape[-1]
    losses, perms = [], []
    for item in pairwise:
        best = max(
            itertools.permutations(range(n_src)),
            key=lambda p: sum(item[p[j], j].item() for j in range(n_src)),
        )
        losses.append(-sum(item[best[j], j].item() for j in range(n_src)) / n_src)
        perms.append(best)
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(perms)


def _brute_force_perm(pairwise):
    """Best perm for every item by scoring all permutations at once."""
    n_src = pairwise.shape[-1]
    table = torch.tensor(list(itertools.permutations(range(n_src))))
    totals = pairwise.double()[:, table, torch.arange(n_src)].sum(-1)
    return table[totals.argmax(-1)]


# ----------------------------------------------------------------------------
# pairwise_si_snr


@pytest.mark.parametrize("n_est, n_tgt", [(3, 3), (2, 4), (1, 1)])
def test_pairwise_matches_slow_reference(n_est, n_tgt):
    gen = torch.Generator().manual_seed(1)
    targets = torch.randn(2, 400, n_tgt, generator=gen)
    estimates = targets[..., :1].repeat(1, 1, n_est) + torch.randn(2, 400, n_est, generator=gen)
    estimates = estimates + 5.0  # DC offsets must not matter
    pw = pairwise_si_snr(estimates, targets)
    assert pw.shape == (2, n_est, n_tgt)
    assert pw.dtype == torch.float32
    torch.testing.assert_close(pw.double(), _slow_pairwise(estimates, targets), rtol=1e-5, atol=1e-5)


def test_pairwise_is_scale_invariant_and_keeps_float64():
    estimates, targets = _signals(2, 500, 3, dtype=torch.float64)
    pw = pairwise_si_snr(estimates, targets, eps=0.0)
    assert pw.dtype == torch.float64
    scaled = pairwise_si_snr(7.0 * estimates, 0.1 * targets, eps=0.0)
    torch.testing.assert_close(scaled, pw, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(pw, _slow_pairwise(estimates, targets), rtol=1e-12, atol=1e-10)


def test_pairwise_reads_80_db_from_float32_inputs():
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(1, 16000, 1, generator=gen, dtype=torch.float64)
    noise = torch.randn(1, 16000, 1, generator=gen, dtype=torch.float64)
    target, noise = target - target.mean(), noise - noise.mean()
    noise = noise - (noise * target).sum() / (target * target).sum() * target
    noise = noise * (target.norm() / noise.norm() * 1e-4)  # exactly -80 dB
    estimate32, target32 = (target + noise).float(), target.float()
    truth = _slow_si_snr(estimate32[0, :, 0], target32[0, :, 0])
    assert abs(truth - 80.0) < 0.01
    value = pairwise_si_snr(estimate32, target32)[0, 0, 0].item()
    assert abs(value - truth) < 0.01
    loss, _ = pit_si_snr_loss(estimate32, target32)
    assert abs(loss.item() + truth) < 0.01


def test_pairwise_gradcheck():
    gen = torch.Generator().manual_seed(3)
    targets = torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    estimates = targets + 0.5 * torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    estimates.requires_grad_()
    targets.requires_grad_()
    assert torch.autograd.gradcheck(pairwise_si_snr, (estimates, targets))


# ----------------------------------------------------------------------------
# pit_si_snr_loss


@pytest.mark.parametrize("n_src", [1, 2, 3, 4])
def test_pit_matches_itertools_reference(n_src):
    estimates, targets = _signals(3, 300, n_src, seed=n_src)
    loss, perm = pit_si_snr_loss(estimates, targets)
    ref_loss, ref_perm = _slow_pit(estimates, targets)
    assert loss.shape == (3,) and perm.shape == (3, n_src)
    assert perm.dtype == torch.long
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-5)
    assert torch.equal(perm, ref_perm)


@pytest.mark.parametrize("n_src", [2, 3, 5])
def test_pit_matches_speechbrain_values_and_gradients(n_src):
    estimates, targets = _signals(3, 4000, n_src, seed=10 + n_src)
    ours_in = estimates.clone().requires_grad_()
    sb_in = estimates.clone().requires_grad_()
    loss, _ = pit_si_snr_loss(ours_in, targets)
    sb_loss = get_si_snr_with_pitwrapper(targets, sb_in)
    assert sb_loss.shape == loss.shape == (3,)
    torch.testing.assert_close(loss, sb_loss, rtol=1e-4, atol=0.0)
    loss.sum().backward()
    sb_loss.sum().backward()
    scale = sb_in.grad.abs().max()
    assert (ours_in.grad - sb_in.grad).abs().max() <= 1e-4 * scale
    torch.testing.assert_close(ours_in.grad, sb_in.grad, rtol=1e-4, atol=1e-6 * scale)


def test_pit_gradcheck():
    gen = torch.Generator().manual_seed(4)
    targets = torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    estimates = targets[..., [2, 0, 1]] + 0.3 * torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    estimates.requires_grad_()
    assert torch.autograd.gradcheck(lambda est: pit_si_snr_loss(est, targets)[0], (estimates,))


def test_perm_contract_recovers_shuffle():
    gen = torch.Generator().manual_seed(5)
    batch, n_src = 4, 4
    targets = torch.randn(batch, 2000, n_src, generator=gen)
    shuffles = torch.stack([torch.randperm(n_src, generator=gen) for _ in range(batch)])
    # estimates[b, :, i] = targets[b, :, shuffles[b, i]] + small noise
    estimates = torch.stack([targets[b][:, shuffles[b]] for b in range(batch)])
    estimates = estimates + 0.01 * torch.randn(estimates.shape, generator=gen)
    loss, perm = pit_si_snr_loss(estimates, targets)
    # perm[b, j] is the estimate index holding target j: the inverse shuffle.
    assert torch.equal(perm, shuffles.argsort(dim=-1))
    for b in range(batch):
        for j in range(n_src):
            assert torch.equal(estimates[b, :, perm[b, j]], apply_perm(estimates, perm)[b, :, j])
    aligned = apply_perm(estimates, perm)
    assert (aligned - targets).abs().max() < 0.1
    torch.testing.assert_close(loss.double(), -si_snr(aligned, targets).mean(-1), rtol=1e-6, atol=1e-6)


def test_apply_perm_rejects_bad_shapes():
    with pytest.raises(ValueError):  # more targets than estimates
        apply_perm(torch.zeros(2, 10, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError):  # batch mismatch
        apply_perm(torch.zeros(2, 10, 3), torch.zeros(3, 3, dtype=torch.long))
    assert apply_perm(torch.zeros(2, 10, 3), torch.zeros(2, 2, dtype=torch.long)).shape == (2, 10, 2)


@pytest.mark.parametrize("n_src", [3, 6])
def test_hungarian_path_equals_exhaustive_path(n_src):
    estimates, targets = _signals(4, 500, n_src, seed=20 + n_src)
    estimates = estimates + torch.randn(estimates.shape, generator=torch.Generator().manual_seed(0))
    exhaustive = pit_si_snr_loss(estimates, targets)
    hungarian = pit_si_snr_loss(estimates, targets, max_exhaustive_src=0)
    assert torch.equal(exhaustive[1], hungarian[1])
    torch.testing.assert_close(exhaustive[0], hungarian[0])


def test_hungarian_path_beyond_threshold_is_exact():
    n_src = 8  # above the default threshold: Hungarian algorithm
    gen = torch.Generator().manual_seed(6)
    targets = torch.randn(3, 400, n_src, generator=gen)
    estimates = targets @ (0.6 * torch.eye(n_src) + torch.rand(n_src, n_src, generator=gen))
    estimates = estimates.requires_grad_()
    loss, perm = pit_si_snr_loss(estimates, targets)
    pairwise = pairwise_si_snr(estimates, targets).detach()
    assert torch.equal(perm, _brute_force_perm(pairwise))
    expected = -pairwise.gather(1, perm.unsqueeze(1)).squeeze(1).mean(-1)
    torch.testing.assert_close(loss.detach(), expected)
    loss.sum().backward()
    assert torch.isfinite(estimates.grad).all() and estimates.grad.abs().sum() > 0


def test_autocast_bf16_on_cpu():
    estimates, targets = _signals(2, 4000, 2, seed=7)
    weight = torch.eye(2) + 0.1 * torch.ones(2, 2)
    reference, _ = pit_si_snr_loss(torch.nn.functional.linear(estimates, weight), targets)
    weight.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model_out = torch.nn.functional.linear(estimates, weight)
        assert model_out.dtype == torch.bfloat16
        loss, _ = pit_si_snr_loss(model_out, targets)
        # float32 inputs are not downcast inside an autocast region
        same, _ = pit_si_snr_loss(estimates, targets)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(loss, reference, rtol=0, atol=0.05)
    torch.testing.assert_close(same, pit_si_snr_loss(estimates, targets)[0])
    loss.sum().backward()
    assert torch.isfinite(weight.grad).all()


@pytest.mark.parametrize(
    "est_shape, tgt_shape",
    [
        ((2, 100), (2, 100)),  # not 3-D
        ((2, 100, 2, 1), (2, 100, 2, 1)),
        ((2, 100, 2), (3, 100, 2)),  # batch
        ((2, 100, 2), (2, 99, 2)),  # time
        ((2, 100, 2), (2, 100, 3)),  # number of sources
    ],
)
def test_pit_rejects_shape_mismatch(est_shape, tgt_shape):
    with pytest.raises(ValueError):
        pit_si_snr_loss(torch.randn(est_shape), torch.randn(tgt_shape))


def test_pairwise_rejects_batch_or_time_mismatch():
    with pytest.raises(ValueError):
        pairwise_si_snr(torch.randn(2, 100, 2), torch.randn(2, 90, 2))
    with pytest.raises(ValueError):
        pairwise_si_snr(torch.randn(100, 2), torch.randn(100, 2))


# --------------------------------------------------------------------------- matching step


def brute_force_assignment(scores, mask):
    """Loop reference: the best injective map of the real targets to estimates."""
    n_est, n_tgt = scores.shape
    real = [j for j in range(n_tgt) if mask[j]]
    best, best_total = None, -math.inf
    for chosen in itertools.permutations(range(n_est), len(real)):
        total = sum(float(scores[i, j]) for i, j in zip(chosen, real))
        if total > best_total:
            best, best_total = dict(zip(real, chosen)), total
    return best, best_total


@pytest.mark.parametrize("n_est, n_tgt", [(2, 2), (3, 3), (3, 2), (4, 1), (5, 3)])
def test_best_permutation_equals_brute_force(n_est, n_tgt):
    gen = torch.Generator().manual_seed(n_est * 10 + n_tgt)
    scores = torch.randn(6, n_est, n_tgt, generator=gen, dtype=torch.float64)
    mask = torch.rand(6, n_tgt, generator=gen) > 0.3
    mask[:, 0] = True
    for use_mask in (None, mask):
        perm = best_permutation(scores, use_mask)
        for b in range(6):
            item_mask = [True] * n_tgt if use_mask is None else mask[b].tolist()
            assert len(set(perm[b].tolist())) == n_tgt  # an injective map, padded targets included
            expected, total = brute_force_assignment(scores[b], item_mask)
            got = sum(float(scores[b, perm[b, j], j]) for j in expected)
            assert got == pytest.approx(total, abs=1e-12)


def test_best_permutation_hungarian_path_with_mask_and_rectangle():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 9, 8, generator=gen, dtype=torch.float64)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[1, 5:] = False
    perm = best_permutation(scores, mask)  # 9 estimates > 7: Hungarian on the host
    exhaustive_small = best_permutation(scores[:, :5, :4], max_exhaustive=7)
    hungarian_small = best_permutation(scores[:, :5, :4], max_exhaustive=2)
    assert torch.equal(exhaustive_small, hungarian_small)
    for b in range(4):
        assert len(set(perm[b].tolist())) == 8
    # item 1: its 5 real targets get the best assignment among the 9 estimates
    from scipy.optimize import linear_sum_assignment

    _, cols = linear_sum_assignment(scores[1, :, :5].numpy().T, maximize=True)
    assert perm[1, :5].tolist() == cols.tolist()


def test_masked_pit_equals_each_item_alone():
    """A batch with 1, 2 and 3 real targets (padded with zeros) scores as each item alone."""
    torch.manual_seed(0)
    n_out, length = 3, 2000
    counts, lengths = [1, 2, 3], [2000, 1500, 1800]
    targets = torch.zeros(3, length, 3, dtype=torch.float64)
    estimates = torch.randn(3, length, n_out, dtype=torch.float64)
    for b, (c, n) in enumerate(zip(counts, lengths)):
        targets[b, :n, :c] = torch.randn(n, c, dtype=torch.float64)
        estimates[b, :n, :c] = targets[b, :n, :c].flip(-1) + 0.3 * torch.randn(n, c, dtype=torch.float64)
    mask = torch.arange(3)[None, :] < torch.tensor(counts)[:, None]
    estimates.requires_grad_(True)
    loss, perm = pit_si_snr_loss(estimates, targets, source_mask=mask, lengths=torch.tensor(lengths))
    loss.sum().backward()
    for b, (c, n) in enumerate(zip(counts, lengths)):
        alone = estimates[b : b + 1, :n].detach().clone().requires_grad_(True)
        item_loss, item_perm = pit_si_snr_loss(alone, targets[b : b + 1, :n, :c])
        item_loss.sum().backward()
        torch.testing.assert_close(loss[b], item_loss[0], rtol=1e-10, atol=1e-10)
        assert perm[b, :c].tolist() == item_perm[0].tolist()
        torch.testing.assert_close(estimates.grad[b, :n], alone.grad[0], rtol=1e-8, atol=1e-10)
        assert (estimates.grad[b, n:] == 0).all()  # padding gets no gradient


def test_masked_pit_item_without_targets_has_zero_loss():
    est, tgt = torch.randn(2, 500, 2), torch.randn(2, 500, 2)
    mask = torch.tensor([[True, True], [False, False]])
    loss, _ = pit_si_snr_loss(est, tgt, source_mask=mask)
    assert loss[1] == 0 and torch.isfinite(loss).all()


def test_kernel_equals_a_float64_loop_with_lengths_and_feeds_the_upstream_form():
    """``centered_stats`` against per-item float64 loops (padded items centred on their own samples); the
    self-contained upstream form (``modules/upstream/core/pit.py``, which cannot import the kernel) agrees with it."""
    from modules.losses import centered_stats
    from modules.upstream.core.pit import _zero_mean_stats

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 500, 2, generator=gen).requires_grad_()
    y = torch.randn(3, 500, 3, generator=gen)
    lengths = torch.tensor([500, 321, 77])
    stats = centered_stats(x, y, lengths)
    for b, n in enumerate(lengths.tolist()):
        xb, yb = x[b, :n].double(), y[b, :n].double()
        xb, yb = xb - xb.mean(0), yb - yb.mean(0)
        torch.testing.assert_close(stats.cross[b], xb.T @ yb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.x_energy[b], xb.square().sum(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.y_energy[b], yb.square().sum(0), rtol=1e-12, atol=1e-12)
    weights = torch.randn(3, 2, 3, dtype=torch.float64, generator=gen)
    (grad,) = torch.autograd.grad((stats.cross * weights).sum() + stats.x_energy.sum(), x)
    assert grad[2, 77:].abs().max() == 0  # nothing flows to padded samples
    x_full, y_full = x.detach()[:, :, :2].clone().requires_grad_(), y[:, :, :2]
    dot, est_energy, src_energy = _zero_mean_stats(y_full.transpose(1, 2), x_full.transpose(1, 2))
    kernel = centered_stats(x_full, y_full)
    torch.testing.assert_close(dot, kernel.cross, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(est_energy, kernel.x_energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(src_energy, kernel.y_energy, rtol=1e-12, atol=1e-12)
    (upstream,) = torch.autograd.grad((dot * weights[:, :, :2]).sum() + est_energy.sum(), x_full)
    (ours,) = torch.autograd.grad((kernel.cross * weights[:, :, :2]).sum() + kernel.x_energy.sum(), x_full)
    torch.testing.assert_close(upstream, ours, rtol=1e-6, atol=1e-9)
