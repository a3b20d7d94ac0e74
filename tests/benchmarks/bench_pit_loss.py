"""Benchmark: PIT SI-SNR loss (forward + backward), ours vs SpeechBrain.

Run from the repository root::

    python tests/benchmarks/bench_pit_loss.py

Times ``modules.losses.pit_si_snr_loss`` and the upstream patch's form
(``modules.upstream.core.pit.pit_si_snr``, what the first patch inserts into
SpeechBrain's ``losses.py``) against
``speechbrain.nnet.losses.get_si_snr_with_pitwrapper`` on batch 4, 4 s at
8 kHz (32000 samples), for 2, 3 and 5 sources, and prints the median time
of several repetitions after a warm-up, the speed-up and the largest
relative difference between the two losses.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

from modules.losses import pit_si_snr_loss
from modules.upstream.core.pit import pit_si_snr

BATCH, TIME, N_WARMUP, N_REPS = 4, 32000, 10, 25


def _fwd_bwd_step(loss_fn, estimates, targets):
    """A closure running ``loss_fn(estimates, targets).sum().backward()``."""

    def step():
        est = estimates.detach().clone().requires_grad_()
        loss = loss_fn(est, targets)
        loss.sum().backward()
        return loss.detach()

    return step


def _interleaved_times(steps):
    """Median and min seconds of each step, timed in alternation.

    Alternating the candidates exposes them to the same background load,
    which keeps the ratio meaningful on a shared machine.
    """
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
    print(
        f"PIT SI-SNR loss, forward+backward, batch {BATCH}, {TIME} samples, "
        f"median (min) of {N_REPS} interleaved reps (torch threads: {torch.get_num_threads()})"
    )
    print(
        f"{'n_src':>5} {'ours [ms]':>16} {'patch [ms]':>16} {'SB [ms]':>16} {'ours x':>7} {'patch x':>8}"
        f" {'max rel diff':>13}"
    )
    for n_src in (2, 3, 5):
        targets = torch.randn(BATCH, TIME, n_src)
        estimates = targets[..., torch.randperm(n_src)] + 0.3 * torch.randn(BATCH, TIME, n_src)
        ours_step = _fwd_bwd_step(lambda e, t: pit_si_snr_loss(e, t)[0], estimates, targets)
        patch_step = _fwd_bwd_step(lambda e, t: pit_si_snr(t, e)[0], estimates, targets)
        sb_step = _fwd_bwd_step(lambda e, t: get_si_snr_with_pitwrapper(t, e), estimates, targets)
        (ours, ours_min), (patch, patch_min), (sb, sb_min) = _interleaved_times([ours_step, patch_step, sb_step])
        loss_ours, loss_patch, loss_sb = ours_step(), patch_step(), sb_step()
        rel = max(((loss - loss_sb).abs() / loss_sb.abs()).max().item() for loss in (loss_ours, loss_patch))
        print(
            f"{n_src:>5} {ours * 1e3:>8.2f} ({ours_min * 1e3:5.2f}) {patch * 1e3:>8.2f} ({patch_min * 1e3:5.2f})"
            f" {sb * 1e3:>8.2f} ({sb_min * 1e3:5.2f}) {sb / ours:>6.1f}x {sb / patch:>7.1f}x {rel:>13.2e}"
        )


if __name__ == "__main__":
    main()
