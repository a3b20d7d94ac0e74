"""Tests for modules.metrics (BSS-eval SDR, SI-SNR, improvements)."""

import math
import warnings

import numpy as np
import pytest
import torch
from mir_eval.separation import bss_eval_sources

from modules.losses import pairwise_si_snr
from modules.metrics import improvement, sdr, si_snr


def _sources(batch, time, n_src, seed):
    """Filtered noise plus a few harmonics per source, ``[B, T, n]`` float64."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch * n_src, 1, time + 8, generator=gen, dtype=torch.float64)
    taps = torch.tensor([[[0.3, 1.0, 0.5, -0.2]]], dtype=torch.float64)
    filtered = torch.nn.functional.conv1d(noise, taps)[..., :time]
    t = torch.arange(time, dtype=torch.float64) / 8000.0
    f0 = 100.0 + 300.0 * torch.rand(batch * n_src, 1, 1, generator=gen, dtype=torch.float64)
    harmonics = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in (1, 2, 3))
    sources = filtered + harmonics
    return sources.reshape(batch, n_src, time).transpose(1, 2)


def _estimates(references, seed):
    """Leaky mixture of the references, plus noise and a short FIR distortion."""
    batch, time, n_src = references.shape
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.eye(n_src, dtype=torch.float64) + 0.3 * torch.rand(n_src, n_src, generator=gen, dtype=torch.float64)
    mixed = references @ mixing + 0.2 * torch.randn(batch, time, n_src, generator=gen, dtype=torch.float64)
    fir = torch.tensor([[[0.1, 1.0, -0.4, 0.2]]], dtype=torch.float64)
    flat = mixed.transpose(1, 2).reshape(batch * n_src, 1, time)
    distorted = torch.nn.functional.conv1d(flat, fir, padding=3)[..., :time]
    return distorted.reshape(batch, n_src, time).transpose(1, 2)


def _mir_eval_sdr(estimates, references):
    """``[batch, n_src]`` SDR from mir_eval (fixed order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecation notice
        return np.stack(
            [
                bss_eval_sources(ref.T.numpy(), est.T.numpy(), compute_permutation=False)[0]
                for est, ref in zip(estimates, references)
            ]
        )


@pytest.mark.parametrize("n_src, time", [(1, 16000), (2, 12000), (3, 8000)])
def test_sdr_matches_mir_eval(n_src, time):
    references = _sources(3, time, n_src, seed=n_src)
    estimates = _estimates(references, seed=10 + n_src)
    ours = sdr(estimates, references)
    assert ours.shape == (3, n_src) and ours.dtype == torch.float64
    expected = _mir_eval_sdr(estimates, references)
    assert np.abs(ours.numpy() - expected).max() < 1e-3
    # float32 inputs give (up to input rounding) the same scores
    ours32 = sdr(estimates.float(), references.float())
    assert ours32.dtype == torch.float64
    assert np.abs(ours32.numpy() - expected).max() < 1e-2


def test_sdr_respects_source_order():
    references = _sources(3, 8000, 2, seed=30)
    estimates = _estimates(references, seed=31)
    swapped = estimates[..., [1, 0]]
    ours = sdr(swapped, references)
    assert np.abs(ours.numpy() - _mir_eval_sdr(swapped, references)).max() < 1e-3
    assert (ours < sdr(estimates, references) - 3.0).all()
    # Relabelling estimates and references together relabels the scores.
    torch.testing.assert_close(sdr(swapped, references[..., [1, 0]]), sdr(estimates, references)[..., [1, 0]])


def test_sdr_with_unit_filter_is_plain_projection_snr():
    references = _sources(2, 2000, 2, seed=40)
    estimates = _estimates(references, seed=41)
    ours = sdr(estimates, references, filter_length=1)
    dot = (estimates * references).sum(1)
    energy_est, energy_ref = estimates.square().sum(1), references.square().sum(1)
    target = dot.square() / energy_ref
    expected = 10 * torch.log10(target / (energy_est - target))
    torch.testing.assert_close(ours, expected)


def test_sdr_silent_reference_and_estimate():
    references = _sources(1, 4000, 2, seed=50)
    estimates = _estimates(references, seed=51)
    references[0, :, 1] = 0.0
    scores = sdr(estimates, references)
    assert torch.isfinite(scores[0, 0]) and torch.isnan(scores[0, 1])  # undefined, never -inf
    estimates[0, :, 1] = 0.0
    assert torch.isnan(sdr(estimates, references)[0, 1])
    sisnr = si_snr(_estimates(references, seed=52), references)
    assert torch.isfinite(sisnr[0, 0]) and torch.isnan(sisnr[0, 1])


def test_sdr_rejects_bad_shapes():
    with pytest.raises(ValueError):
        sdr(torch.randn(2, 1000, 2), torch.randn(2, 1000, 3))
    with pytest.raises(ValueError):
        sdr(torch.randn(1000, 2), torch.randn(1000, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sdr_and_si_snr_on_cuda_match_cpu():
    references = _sources(2, 8000, 2, seed=60)
    estimates = _estimates(references, seed=61)
    torch.testing.assert_close(sdr(estimates.cuda(), references.cuda()).cpu(), sdr(estimates, references))
    torch.testing.assert_close(si_snr(estimates.cuda(), references.cuda()).cpu(), si_snr(estimates, references))


def _slow_si_snr(estimate, reference):
    """Textbook SI-SNR (dB) of two 1-D float64 signals."""
    estimate = estimate - estimate.mean()
    reference = reference - reference.mean()
    projection = (estimate @ reference) / (reference @ reference) * reference
    noise = estimate - projection
    return 10.0 * math.log10((projection @ projection) / (noise @ noise))


def test_si_snr_matches_slow_reference_and_pairwise_diagonal():
    references = _sources(3, 4000, 3, seed=70)
    estimates = _estimates(references, seed=71)
    ours = si_snr(estimates, references)
    assert ours.shape == (3, 3) and ours.dtype == torch.float64
    expected = torch.tensor(
        [[_slow_si_snr(estimates[b, :, j], references[b, :, j]) for j in range(3)] for b in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=0.0)  # eps=1e-8
    exact = si_snr(estimates, references, eps=0.0)
    torch.testing.assert_close(exact, expected, rtol=1e-11, atol=1e-11)
    diagonal = pairwise_si_snr(estimates, references).diagonal(dim1=1, dim2=2)
    torch.testing.assert_close(ours, diagonal, rtol=1e-12, atol=1e-12)
    # order is respected: swapping estimates scores the swapped pairs
    torch.testing.assert_close(
        si_snr(estimates[..., [2, 0, 1]], references),
        pairwise_si_snr(estimates, references)[:, [2, 0, 1], [0, 1, 2]],
    )


def test_improvement_subtracts_mixture_score():
    references = _sources(2, 4000, 2, seed=80)
    estimates = _estimates(references, seed=81)
    mixture = references.sum(-1)
    repeated = mixture.unsqueeze(-1).repeat(1, 1, 2)
    for metric in (si_snr, sdr):
        torch.testing.assert_close(
            improvement(metric, estimates, references, mixture),
            metric(estimates, references) - metric(repeated, references),
        )
    with pytest.raises(ValueError):
        improvement(si_snr, estimates, references, mixture[:, :-1])
