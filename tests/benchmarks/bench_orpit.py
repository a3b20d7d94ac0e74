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

No speed target is chased here: the earlier goal of beating the loop over
candidates by 5x (and the hand-written backward and chunked float64 passes
written for it) is withdrawn. What decides whether a loss is fast enough is
its share of the method's full-size training step, which
``tests/benchmarks/bench_si_snr_step.py`` measures (under 1 % for SADDEL with
autograd through the shared SI-SNR kernel); this table stays as a record of
what the vectorised loss costs against the obvious loops, not as a goal.

Prints the median (and min) time of interleaved repetitions after a warm-up,
the speed-ups, the largest difference between the losses, and the number of
ops each forward+backward dispatches (views and allocations left out): what
an accelerator launches as kernels, where small ops cost their launch rather
than their arithmetic. A second table shows why the statistics are float64:
the error in dB of an SI-SNR near 40, 60 and 70 dB, for ours
(``orpit_scores``), for SpeechBrain's float32 loop (``cal_si_snr``) and for
the faster alternative that was not taken, float32 inner products summed in
float64 over 128-sample blocks.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from speechbrain.nnet.losses import cal_si_snr
from torch.utils._python_dispatch import TorchDispatchMode

from modules.losses import orpit_scores, orpit_si_snr_loss, pairwise_si_snr

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
    """Median and min seconds of each step, timed in alternation (same background load for all).

    The order rotates from one repetition to the next, so that every step
    follows every other equally often (what ran just before changes what is
    left in the caches).
    """
    for _ in range(N_WARMUP):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for rep in range(N_REPS * len(steps)):
        for k in range(len(steps)):
            index = (rep + k) % len(steps)
            start = time.perf_counter()
            steps[index]()
            times[index].append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


class _OpCounter(TorchDispatchMode):
    """Counts the ops that do work (not views, not bare allocations) dispatched inside it."""

    SKIP = (torch.ops.aten.empty, torch.ops.aten.empty_strided, torch.ops.aten.detach, torch.ops.aten.lift_fresh)

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket not in self.SKIP:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(step):
    """Ops dispatched by one call of ``step`` (after the warm-up, so that cached constants exist)."""
    with _OpCounter() as counter:
        step()
    return counter.count


def si_snr_textbook(est, ref):
    """float64 SI-SNR (dB) per item of ``[B, T]`` signals, noise signal formed explicitly."""
    est, ref = est.double() - est.double().mean(-1, keepdim=True), ref.double() - ref.double().mean(-1, keepdim=True)
    target = (est * ref).sum(-1, keepdim=True) / ref.square().sum(-1, keepdim=True) * ref
    return 10 * torch.log10(target.square().sum(-1) / (est - target).square().sum(-1))


def si_snr_blocked_float32(est, ref, block=128):
    """SI-SNR from float32 inner products over blocks of ``block`` samples, summed in float64 (not used)."""
    signals = torch.stack([est, ref, torch.ones_like(est)], 1)  # [B, 3, T]
    blocks = signals.view(signals.shape[0], 3, -1, block).transpose(1, 2)
    gram = (blocks @ blocks.transpose(-1, -2)).sum(1, dtype=torch.float64)
    n = gram[:, 2, 2]
    e, r = gram[:, 0, 0] - gram[:, 0, 2] ** 2 / n, gram[:, 1, 1] - gram[:, 1, 2] ** 2 / n
    d = gram[:, 0, 1] - gram[:, 0, 2] * gram[:, 1, 2] / n
    return 10 * torch.log10(d * d / (e * r - d * d))


def precision_table():
    """Largest error (dB) of each SI-SNR computation against the float64 textbook one, near 40, 60, 70 dB."""
    gen = torch.Generator().manual_seed(1)
    sources = torch.randn(BATCH, TIME, N_SPK, generator=gen)
    print(f"{'SI-SNR [dB]':<12} {'ours':>10} {'cal_si_snr (float32)':>21} {'float32 blocks of 128':>22}")
    for level in (40.0, 60.0, 70.0):
        one = sources[..., 0] + 10 ** (-level / 20) * torch.randn(BATCH, TIME, generator=gen)
        rest = sources[..., 1:].sum(-1)
        truth = si_snr_textbook(one, sources[..., 0])
        ours = orpit_scores(torch.stack([one, rest], -1), sources)[0][:, 0]
        errors = [
            (ours - truth).abs().max().item(),
            (-neg_si_snr(one, sources[..., 0]).double() - truth).abs().max().item(),
            (si_snr_blocked_float32(one, sources[..., 0]) - truth).abs().max().item(),
        ]
        print(f"{level:<12.0f} {errors[0]:>10.1e} {errors[1]:>21.1e} {errors[2]:>22.1e}")


def main():
    """Print the comparison tables."""
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
    ops = {name: count_ops(step) for name, step in steps.items()}
    ours = timings["ours (vectorised)"][0]
    print(
        f"OR-PIT loss, forward+backward, batch {BATCH}, {TIME} samples, {N_SPK} speakers + noise, "
        f"median (min) of {N_REPS * len(steps)} interleaved reps (torch threads: {torch.get_num_threads()})"
    )
    print(f"{'implementation':<32} {'time [ms]':>17} {'ratio':>9} {'max |diff| [dB]':>16} {'ops':>6} {'ratio':>6}")
    for name, (median, fastest) in timings.items():
        diff = (losses[name].double() - losses["ours (vectorised)"].double()).abs().max().item()
        diff = f"{diff:>16.2e}"
        print(
            f"{name:<32} {median * 1e3:>8.2f} ({fastest * 1e3:6.2f}) {median / ours:>8.1f}x {diff}"
            f" {ops[name]:>6} {ops[name] / ops['ours (vectorised)']:>5.1f}x"
        )
    print()
    precision_table()


if __name__ == "__main__":
    main()
