"""One-and-rest PIT loss: values and gradients against a slow float64 loop, masking, invariances."""

import math

import pytest
import torch

from modules.losses import orpit_scores, orpit_si_snr_loss, rest_targets

SILENCE_SNR_MAX = 30.0


def si_snr_loop(est, ref, eps=1e-8):
    """SI-SNR (dB) of two 1-D float64 signals, the textbook way (noise signal formed explicitly)."""
    est, ref = est - est.mean(), ref - ref.mean()
    alpha = (est * ref).sum() / (ref.square().sum() + eps)
    target = alpha * ref
    noise = est - target
    return 10 * torch.log10(target.square().sum() / (noise.square().sum() + eps) + eps)


def orpit_loop(estimates, sources, mask, noise, noise_mask, lengths, eps=1e-8):
    """Equation 2 of SADDEL (halved), one item and one candidate at a time, float64."""
    losses, indices = [], []
    for b in range(estimates.shape[0]):
        n = int(lengths[b])
        one, rest = estimates[b, :n, 0].double(), estimates[b, :n, 1].double()
        real = [i for i in range(sources.shape[-1]) if mask[b, i]]
        if not real:
            losses.append(estimates.new_zeros((), dtype=torch.float64) * one.sum())
            indices.append(None)
            continue
        scores = []
        for i in real:
            others = [sources[b, :n, j].double() for j in real if j != i]
            has_noise = noise is not None and bool(noise_mask[b])
            s_i = sources[b, :n, i].double()
            if not others and not has_noise:  # silent rest: residual level below the speaker, capped
                r = rest - rest.mean()
                s = s_i - s_i.mean()
                rest_score = -10 * torch.log10(r.square().sum() / (s.square().sum() + eps) + 10 ** (-3.0))
            else:
                rest_target = sum(others) if others else torch.zeros_like(s_i)
                if has_noise:
                    rest_target = rest_target + noise[b, :n].double()
                rest_score = si_snr_loop(rest, rest_target, eps)
            scores.append(si_snr_loop(one, s_i, eps) + rest_score)
        best = max(range(len(real)), key=lambda k: float(scores[k].detach()))
        losses.append(-0.5 * scores[best])
        indices.append(real[best])
    return torch.stack(losses), indices


def mixed_batch(seed=0, length=2400, dtype=torch.float64):
    """Items with 3 speakers + noise, 2 speakers, 1 speaker + noise, 1 clean speaker, no speaker; padded."""
    gen = torch.Generator().manual_seed(seed)
    n_items = 5
    sources = torch.randn(n_items, length, 3, generator=gen, dtype=dtype)
    noise = torch.randn(n_items, length, generator=gen, dtype=dtype)
    mask = torch.tensor(
        [[True, True, True], [True, True, False], [True, False, False], [True, False, False], [False, False, False]]
    )
    noise_mask = torch.tensor([True, False, True, False, True])
    lengths = torch.tensor([length, length - 300, length - 700, length - 100, length])
    valid = torch.arange(length)[None, :] < lengths[:, None]
    sources = sources * mask[:, None, :] * valid[..., None]
    noise = noise * noise_mask[:, None] * valid
    # Estimates: a noisy version of some speaker and of its rest, so the minimum is not trivial.
    rests = rest_targets(sources, mask, noise, noise_mask)
    pick = torch.tensor([2, 1, 0, 0, 0])
    one = sources[torch.arange(n_items), :, pick] + 0.7 * torch.randn(n_items, length, generator=gen, dtype=dtype)
    rest = rests[torch.arange(n_items), :, pick] + 0.7 * torch.randn(n_items, length, generator=gen, dtype=dtype)
    estimates = torch.stack([one, rest], dim=-1) * valid[..., None]
    return estimates, sources, mask, noise, noise_mask, lengths


def test_values_and_gradients_equal_the_float64_loop():
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch()
    est_fast = estimates.clone().requires_grad_()
    est_loop = estimates.clone().requires_grad_()
    loss, index = orpit_si_snr_loss(est_fast, sources, mask, noise, noise_mask, lengths, silence_snr_max=30.0)
    expected, expected_index = orpit_loop(est_loop, sources, mask, noise, noise_mask, lengths)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-9)
    assert [int(i) for i, e in zip(index, expected_index) if e is not None] == expected_index[:4]
    assert loss[4] == 0  # no candidate
    loss.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(est_fast.grad, est_loop.grad, rtol=1e-7, atol=1e-10)
    assert est_fast.grad[4].abs().sum() == 0


def test_loss_equals_the_chosen_candidate_of_the_scores():
    """The loss and its gradient under a non-uniform upstream gradient against ``orpit_scores``' chosen candidate."""
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch(seed=13)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0], dtype=torch.float64)  # a non-uniform upstream gradient
    est_fused = estimates.clone().requires_grad_()
    loss, index = orpit_si_snr_loss(est_fused, sources, mask, noise, noise_mask, lengths)
    (loss * weights).sum().backward()
    est_auto = estimates.clone().requires_grad_()
    one, rest, candidate = orpit_scores(est_auto, sources, mask, noise, noise_mask, lengths)
    chosen = (one + rest).gather(1, index[:, None])[:, 0]
    reference = torch.where(candidate.any(-1), -0.5 * chosen, torch.zeros_like(chosen))
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    (reference * weights).sum().backward()
    torch.testing.assert_close(est_fused.grad, est_auto.grad, rtol=1e-9, atol=1e-12)
    assert est_fused.grad[2].abs().sum() > 0 and est_fused.grad[3].abs().sum() > 0  # 1sp+n and the silent rest


def test_float32_inputs_match_the_loop_and_give_float32():
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch(seed=3, dtype=torch.float32)
    est = estimates.clone().requires_grad_()
    loss, _ = orpit_si_snr_loss(est, sources, mask, noise, noise_mask, lengths)
    assert loss.dtype == torch.float32
    est64 = estimates.double().requires_grad_()
    expected, _ = orpit_loop(est64, sources.double(), mask, noise.double(), noise_mask, lengths)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)
    loss.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(est.grad.double(), est64.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("n_spk", [1, 2, 3])
@pytest.mark.parametrize("with_noise", [False, True])
def test_each_count_alone_against_the_loop(n_spk, with_noise):
    """1-3 speakers, with and without noise, one scenario per batch (C = n_spk, no padding)."""
    gen = torch.Generator().manual_seed(10 * n_spk + with_noise)
    sources = torch.randn(3, 1600, n_spk, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 1600, generator=gen, dtype=torch.float64) if with_noise else None
    estimates = torch.randn(3, 1600, 2, generator=gen, dtype=torch.float64) + sources[..., :1].expand(-1, -1, 2)
    est = estimates.clone().requires_grad_()
    loss, _ = orpit_si_snr_loss(est, sources, noise=noise)
    ref_est = estimates.clone().requires_grad_()
    mask = torch.ones(3, n_spk, dtype=torch.bool)
    expected, _ = orpit_loop(ref_est, sources, mask, noise, torch.ones(3, dtype=torch.bool), torch.full((3,), 1600))
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-9)
    loss.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(est.grad, ref_est.grad, rtol=1e-7, atol=1e-10)


def test_perfect_outputs_pick_the_right_candidate_in_any_order():
    gen = torch.Generator().manual_seed(1)
    sources = torch.randn(3, 4000, 3, generator=gen)
    noise = torch.randn(3, 4000, generator=gen)
    rests = rest_targets(sources, noise=noise)
    for i in range(3):
        estimates = torch.stack([sources[..., i], rests[..., i]], dim=-1)
        loss, index = orpit_si_snr_loss(estimates, sources, noise=noise)
        assert index.tolist() == [i, i, i]
        assert (loss < -60).all()


def test_padded_sources_are_ignored_whatever_they_hold():
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch(seed=5)
    garbage = sources.clone()
    garbage[~mask[:, None, :].expand_as(sources)] = 7.0
    clean, i_clean = orpit_si_snr_loss(estimates, sources, mask, noise, noise_mask, lengths)
    dirty, i_dirty = orpit_si_snr_loss(estimates, garbage, mask, noise, noise_mask, lengths)
    torch.testing.assert_close(clean, dirty)
    assert torch.equal(i_clean[:4], i_dirty[:4])


def test_an_item_scores_the_same_alone_and_in_a_padded_batch():
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch(seed=7)
    batched, _ = orpit_si_snr_loss(estimates, sources, mask, noise, noise_mask, lengths)
    for b in range(4):
        n, c = int(lengths[b]), int(mask[b].sum())
        alone, _ = orpit_si_snr_loss(
            estimates[b : b + 1, :n],
            sources[b : b + 1, :n, :c],
            noise=noise[b : b + 1, :n] if noise_mask[b] else None,
        )
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-9, atol=1e-9)


def test_silent_rest_score_is_capped_and_pushes_the_residual_down():
    gen = torch.Generator().manual_seed(2)
    speaker = torch.randn(1, 4000, 1, generator=gen)
    for level_db in (-10.0, -20.0, -80.0):
        residual = speaker[..., 0] * 10 ** (level_db / 20)
        _, rest, _ = orpit_scores(torch.stack([speaker[..., 0], residual], -1), speaker)
        expected = -10 * math.log10(10 ** (level_db / 10) + 10 ** (-SILENCE_SNR_MAX / 10))
        assert rest[0, 0].item() == pytest.approx(expected, abs=1e-3)
    assert expected == pytest.approx(SILENCE_SNR_MAX, abs=1e-4)  # capped
    est = torch.stack([speaker[..., 0], 0.1 * speaker[..., 0]], -1).requires_grad_()
    orpit_si_snr_loss(est, speaker)[0].sum().backward()
    # the gradient of the loss on the residual points along it: descending shrinks it
    assert (est.grad[..., 1] * est[..., 1]).sum() > 0


def test_bf16_autocast_is_safe():
    """Under CPU bf16 autocast (float32 ``bmm`` runs in bf16 there) the loss and its gradient stay those of
    float32 inputs outside autocast, also when the backward runs inside the autocast region; bf16 estimates
    (a model's output under autocast) give the float64 loop's value on the same rounded samples."""
    estimates, sources, mask, noise, noise_mask, lengths = mixed_batch(seed=9, dtype=torch.float32)
    inside = estimates.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = orpit_si_snr_loss(inside, sources, mask, noise, noise_mask, lengths)
        loss.sum().backward()
    outside = estimates.clone().requires_grad_()
    expected, _ = orpit_si_snr_loss(outside, sources, mask, noise, noise_mask, lengths)
    expected.sum().backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    # a bf16 product anywhere (scores or gradient) errs by ~1e-3 relative: this bound catches it
    torch.testing.assert_close(inside.grad, outside.grad, rtol=1e-5, atol=1e-7)
    half = estimates.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_half, _ = orpit_si_snr_loss(half, sources, mask, noise, noise_mask, lengths)
    reference, _ = orpit_loop(half.double(), sources, mask, noise, noise_mask, lengths)
    assert loss_half.dtype == torch.float32
    torch.testing.assert_close(loss_half.double(), reference, rtol=1e-5, atol=1e-5)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="exactly two outputs"):
        orpit_si_snr_loss(torch.zeros(1, 100, 3), torch.zeros(1, 100, 2))
    with pytest.raises(ValueError, match="batch, time"):
        orpit_si_snr_loss(torch.zeros(1, 100), torch.zeros(1, 100, 2))


def test_loss_equals_equation_2_for_one_speaker_and_noise():
    """1sp+n: the one target is the speech, the rest target is the noise."""
    gen = torch.Generator().manual_seed(4)
    speech, noise = torch.randn(1, 3000, 1, generator=gen), torch.randn(1, 3000, generator=gen)
    est = torch.stack([speech[..., 0] + 0.5 * noise, noise + 0.2 * speech[..., 0]], -1)
    loss, _ = orpit_si_snr_loss(est, speech, noise=noise)
    expected = -0.5 * (si_snr_loop(est[0, :, 0].double(), speech[0, :, 0].double())
                       + si_snr_loop(est[0, :, 1].double(), noise[0].double()))  # fmt: skip
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)
    assert math.isfinite(loss.item())
