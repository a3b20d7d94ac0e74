"""Benchmark: one-and-rest PIT loss (forward + backward), vectorised vs loops over candidates.

Run from the repository root::

    python tests/benchmarks/bench_orpit.py

Batch 4, 4 s at 8 kHz (32000 samples), 3 speakers plus noise. Times
``modules.losses.orpit_si_snr_loss`` (all candidates of all items in one
pass) against obvious implementations of SADDEL's equation 2:

* *loop over candidates*: for each candidate speaker, the SI-SNR of the two
  outputs against it and against its rest, batched over items; then the
  minimum over candidates (float32, as ``cal_si_snr`` computes);
* *loop over candidates, float64*: the same loop on this repository's
  ``pairwise_si_snr`` (float64 statistics, as ours), one pair at a time;
* *loop over items and candidates*: as the one-and-rest PIT reference
  implementation (fgnt/padertorch ``one_and_rest_permutation_invariant_loss``,
  which has no batch dimension), one item and one candidate at a time
  (``cal_si_snr``).

Prints the median (and min) time of interleaved repetitions after a warm-up,
the speed-ups, and the largest difference between the losses.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from speechbrain.nnet.losses import cal_si_snr

from modules.losses import orpit_si_snr_loss, pairwise_si_snr

BATCH, TIME, N_SPK, N_WARMUP, N_REPS = 4, 32000, 3, 10, 25


def neg_si_snr(est, ref):
    """``-SI-SNR`` per item of ``[B, T]`` signals, through SpeechBrain's ``cal_si_snr`` (``[T, B, C]``)."""
    return cal_si_snr(ref.T.unsqueeze(-1), est.T.unsqueeze(-1).clone()).reshape(-1)  # it works in place


def loop_over_candidates(estimates, sources, noise):
    """Equation 2 / 2 with one iteration per candidate, batched over items."""
    total = sources.sum(-1) + noise
    losses = []
    for i in range(sources.shape[-1]):
        rest = total - sources[..., i]
        losses.append(0.5 * (neg_si_snr(estimates[..., 0], sources[..., i]) + neg_si_snr(estimates[..., 1], rest)))
    return torch.stack(losses, dim=-1).min(dim=-1).values


def loop_over_candidates_f64(estimates, sources, noise):
    """The same loop with this repository's float64 SI-SNR (``pairwise_si_snr`` on one pair at a time)."""
    total = sources.sum(-1) + noise
    losses = []
    for i in range(sources.shape[-1]):
        one = pairwise_si_snr(estimates[..., :1], sources[..., i : i + 1])[:, 0, 0]
        rest = pairwise_si_snr(estimates[..., 1:], (total - sources[..., i]).unsqueeze(-1))[:, 0, 0]
        losses.append(-0.5 * (one + rest))
    return torch.stack(losses, dim=-1).min(dim=-1).values


def loop_over_items_and_candidates(estimates, sources, noise):
    """Equation 2 / 2 one item and one candidate at a time (as the reference implementation)."""
    out = []
    for b in range(estimates.shape[0]):
        total = sources[b].sum(-1) + noise[b]
        losses = []
        for i in range(sources.shape[-1]):
            one = neg_si_snr(estimates[b : b + 1, :, 0], sources[b : b + 1, :, i])
            rest = neg_si_snr(estimates[b : b + 1, :, 1], (total - sources[b, :, i])[None])
            losses.append(0.5 * (one + rest))
        out.append(torch.stack(losses).min())
    return torch.stack(out)


def _fwd_bwd_step(loss_fn, estimates, sources, noise):
    def step():
        est = estimates.detach().clone().requires_grad_()
        loss = loss_fn(est, sources, noise)
        loss.sum().backward()
        return loss.detach()

    return step


def _interleaved_times(steps):
    """Median and min seconds of each step, timed in alternation (same background load for all)."""
    for _ in range(N_WARMUP):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(N_REPS):
        for step, bucket in zip(steps, times):
            start = time.perf_counter()
            step()
            bucket.append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


def main():
    """Print the comparison table."""
    torch.manual_seed(0)
    sources = torch.randn(BATCH, TIME, N_SPK)
    noise = torch.randn(BATCH, TIME)
    rest = sources.sum(-1) + noise - sources[..., 1]
    estimates = torch.stack([sources[..., 1], rest], -1) + 0.5 * torch.randn(BATCH, TIME, 2)

    def ours(est, src, noi):
        return orpit_si_snr_loss(est, src, noise=noi)[0]

    steps = {
        "ours (vectorised)": _fwd_bwd_step(ours, estimates, sources, noise),
        "loop over candidates": _fwd_bwd_step(loop_over_candidates, estimates, sources, noise),
        "loop over candidates, float64": _fwd_bwd_step(loop_over_candidates_f64, estimates, sources, noise),
        "loop over items and candidates": _fwd_bwd_step(loop_over_items_and_candidates, estimates, sources, noise),
    }
    timings = dict(zip(steps, _interleaved_times(list(steps.values()))))
    losses = {name: step() for name, step in steps.items()}
    ours = timings["ours (vectorised)"][0]
    print(
        f"OR-PIT loss, forward+backward, batch {BATCH}, {TIME} samples, {N_SPK} speakers + noise, "
        f"median (min) of {N_REPS} interleaved reps (torch threads: {torch.get_num_threads()})"
    )
    print(f"{'implementation':<32} {'time [ms]':>17} {'ratio':>9} {'max |diff| [dB]':>16}")
    for name, (median, fastest) in timings.items():
        diff = (losses[name].double() - losses["ours (vectorised)"].double()).abs().max().item()
        print(f"{name:<32} {median * 1e3:>8.2f} ({fastest * 1e3:6.2f}) {median / ours:>8.1f}x {diff:>16.2e}")


if __name__ == "__main__":
    main()
