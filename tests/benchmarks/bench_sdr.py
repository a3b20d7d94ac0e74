"""Benchmark: batched BSS-eval SDR, ours vs mir_eval.

Run from the repository root::

    python tests/benchmarks/bench_sdr.py

Times ``modules.metrics.sdr`` against
``mir_eval.separation.bss_eval_sources(..., compute_permutation=False)``
(looped over the batch) on batch 4, 2 sources, 4 s at 8 kHz, and prints
the median times, the speed-up and the largest absolute SDR difference.
"""

import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from mir_eval.separation import bss_eval_sources

from modules.metrics import sdr

BATCH, TIME, N_SRC, N_REPS = 4, 32000, 2, 7


def _times(fn, reps):
    """Median and min seconds of ``fn()`` after one warm-up call.

    The candidates are timed one after the other, not interleaved: numpy's
    OpenBLAS threads keep spinning for a while after each call, which would
    starve torch's OpenMP threads right after a mir_eval call.
    """
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _mir_eval_sdr(estimates, references):
    """``[batch, n_src]`` SDR from mir_eval, one batch item at a time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecation notice
        return np.stack(
            [bss_eval_sources(ref.T, est.T, compute_permutation=False)[0] for est, ref in zip(estimates, references)]
        )


def main():
    """Print the comparison."""
    gen = torch.Generator().manual_seed(0)
    references = torch.randn(BATCH, TIME, N_SRC, generator=gen, dtype=torch.float64)
    mixing = torch.tensor([[1.0, 0.3], [0.2, 1.0]], dtype=torch.float64)
    estimates = references @ mixing + 0.1 * torch.randn(BATCH, TIME, N_SRC, generator=gen, dtype=torch.float64)
    # A short FIR distortion of the estimates.
    estimates = (
        torch.nn.functional.conv1d(
            estimates.transpose(1, 2).reshape(-1, 1, TIME),
            torch.tensor([[[0.2, 1.0, -0.3]]], dtype=torch.float64),
            padding=1,
        )
        .reshape(BATCH, N_SRC, TIME)
        .transpose(1, 2)
    )

    est_np, ref_np = estimates.numpy(), references.numpy()
    ours_fn = lambda: sdr(estimates, references)  # noqa: E731
    mir_fn = lambda: _mir_eval_sdr(est_np, ref_np)  # noqa: E731
    ours_t, ours_min = _times(ours_fn, N_REPS)
    ours = ours_fn().numpy()
    mir_t, mir_min = _times(mir_fn, N_REPS)
    mir = mir_fn()
    diff = np.abs(ours - mir).max()
    print(
        f"BSS-eval SDR, batch {BATCH}, {N_SRC} sources, {TIME} samples, "
        f"median (min) of {N_REPS} reps (torch threads: {torch.get_num_threads()})"
    )
    print(f"  ours     : {ours_t * 1e3:8.2f} ms ({ours_min * 1e3:.2f})")
    print(f"  mir_eval : {mir_t * 1e3:8.2f} ms ({mir_min * 1e3:.2f})")
    print(f"  speed-up : {mir_t / ours_t:8.1f}x")
    print(f"  max |SDR difference| : {diff:.2e} dB (mean SDR {mir.mean():.2f} dB)")


if __name__ == "__main__":
    main()
