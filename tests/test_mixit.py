"""MixIT's loss and the SNR PIT of MixPIT / MixCycle against float64 loop references; MixCycle's remix step."""

import itertools
import math

import pytest
import torch

from modules.losses import mixit_loss, snr_pit_loss, thresholded_snr
from modules.losses.mixit import mixit_assignments

TAU = 10 ** (-30 / 10)
EPS = 1e-8


def ref_neg_snr(y, y_hat, lo, tau=TAU):
    """Negative thresholded SNR of one signal pair on its first ``lo`` samples, plain Python floats."""
    y, y_hat = y[:lo], y_hat[:lo]
    energy = float((y * y).sum())
    error = float(((y - y_hat) ** 2).sum())
    return 10 * math.log10(error + tau * energy + EPS) - 10 * math.log10(energy + EPS)


def ref_mixit(est, mix, lengths):
    """Loop reference: every output -> mixture map, remixed signals built explicitly; per item (loss, map)."""
    out = []
    for b in range(est.shape[0]):
        best = None
        for groups in itertools.product(range(mix.shape[-1]), repeat=est.shape[-1]):
            total = 0.0
            for c in range(mix.shape[-1]):
                remix = sum(
                    (est[b, :, m] for m in range(est.shape[-1]) if groups[m] == c), torch.zeros_like(mix[b, :, 0])
                )
                total += ref_neg_snr(mix[b, :, c], remix, int(lengths[b]))
            if best is None or total < best[0]:
                best = (total, groups)
        out.append(best)
    return out


def ref_mixit_torch(est, mix, lengths):
    """The same reference with autograd (the chosen assignment's remix), for gradients."""
    losses = []
    for b, (_, groups) in enumerate(ref_mixit(est.detach(), mix, lengths)):
        total = est.new_zeros(())
        lo = int(lengths[b])
        for c in range(mix.shape[-1]):
            remix = sum(est[b, :lo, m] for m in range(est.shape[-1]) if groups[m] == c) + est.new_zeros(lo)
            y = mix[b, :lo, c]
            energy = (y * y).sum()
            total = (
                total + 10 * torch.log10(((y - remix) ** 2).sum() + TAU * energy + EPS) - 10 * torch.log10(energy + EPS)
            )
        losses.append(total)
    return torch.stack(losses)


@pytest.mark.parametrize("n_out", [2, 3, 4])
def test_mixit_matches_the_loop_reference_values_and_gradients(n_out):
    gen = torch.Generator().manual_seed(n_out)
    batch, time = 3, 200
    sources = torch.randn(batch, time, 4, generator=gen, dtype=torch.float64)
    mix = torch.stack([sources[..., 0] + sources[..., 1], sources[..., 2] + 0.5 * sources[..., 3]], dim=-1)
    # estimates near a grouping of the sources plus noise, so the best assignment is not trivially tied
    est = sources[..., :n_out] + 0.3 * torch.randn(batch, time, n_out, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([200, 150, 97])
    est.requires_grad_(True)
    loss, assignment = mixit_loss(est, mix, lengths=lengths)
    ref = ref_mixit(est.detach(), mix, lengths)
    torch.testing.assert_close(loss, torch.tensor([r[0] for r in ref], dtype=torch.float64), rtol=0, atol=1e-9)
    for b, (_, groups) in enumerate(ref):
        expected = torch.zeros(2, n_out, dtype=torch.float64)
        expected[list(groups), list(range(n_out))] = 1
        assert torch.equal(assignment[b], expected)
    grad = torch.autograd.grad(loss.sum(), est)[0]
    est_ref = est.detach().clone().requires_grad_(True)
    grad_ref = torch.autograd.grad(ref_mixit_torch(est_ref, mix, lengths).sum(), est_ref)[0]
    torch.testing.assert_close(grad, grad_ref, rtol=1e-7, atol=1e-10)
    assert float(grad[2, 97:].abs().max()) == 0.0  # padded samples take no gradient


def test_mixit_assignments_are_all_maps_and_each_output_goes_to_one_mixture():
    for n_out in (2, 3, 4):
        A = mixit_assignments(n_out)
        assert A.shape == (2**n_out, 2, n_out)
        assert bool((A.sum(1) == 1).all())
        assert len({tuple(a.flatten().tolist()) for a in A}) == 2**n_out


def test_mixit_float32_input_silent_mixture_and_bad_shapes():
    est = torch.randn(2, 100, 4)
    mix = torch.zeros(2, 100, 2)
    mix[..., 0] = est[..., 0] + est[..., 1]  # second mixture silent: the other outputs should go to it, at 0 energy
    loss, assignment = mixit_loss(est, mix)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    assert bool((assignment[:, 0, :2] == 1).all())
    with pytest.raises(ValueError, match="batch and time"):
        mixit_loss(est, mix[:, :50])
    with pytest.raises(ValueError, match="shape"):
        mixit_loss(est[0], mix[0])


def test_mixit_threshold_caps_the_snr_and_none_is_plain_snr():
    y = torch.randn(1, 300, 2, dtype=torch.float64)
    loss, _ = mixit_loss(y, y)
    torch.testing.assert_close(loss, torch.tensor([-60.0], dtype=torch.float64), atol=1e-6, rtol=0)
    noisy = y + 0.1 * torch.randn_like(y)
    plain = thresholded_snr(noisy, y, snr_max=None)
    expected = 10 * torch.log10(y.square().sum(1) / (noisy - y).square().sum(1))
    torch.testing.assert_close(plain, expected, atol=1e-6, rtol=0)


def test_snr_pit_matches_the_loop_reference():
    gen = torch.Generator().manual_seed(0)
    refs = torch.randn(4, 120, 2, generator=gen, dtype=torch.float64)
    est = refs.flip(-1) + 0.5 * torch.randn(4, 120, 2, generator=gen, dtype=torch.float64)
    est[0] = refs[0] + 0.5 * torch.randn(120, 2, generator=gen, dtype=torch.float64)
    loss, perm = snr_pit_loss(est, refs)
    for b in range(4):
        options = {
            p: sum(ref_neg_snr(refs[b, :, c], est[b, :, p[c]], 120) for c in range(2))
            for p in itertools.permutations(range(2))
        }
        best = min(options, key=options.get)
        assert perm[b].tolist() == list(best)
        assert abs(float(loss[b]) - options[best]) < 1e-9
    with pytest.raises(ValueError, match="as many estimates"):
        snr_pit_loss(est, refs[..., :1])
