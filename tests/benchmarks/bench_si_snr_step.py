"""Benchmark: the SI-SNR losses' share of a full-size training step, hand-written vs autograd backward.

Run from the repository root (CPU, a few minutes)::

    python tests/benchmarks/bench_si_snr_step.py [--reps 3]

Two methods at their yaml sizes, 8 kHz, float32 on this CPU:

* SADDEL: the Conv-TasNet of ``recipes/LibriMix/saddel/hparams/saddel.yaml``
  (``hparams/backbones/convtasnet_skip.yaml``, three masks, the one-and-rest
  separator with its flag head), batch 5, 4 s crops (32000 samples), loss
  :func:`modules.losses.orpit_si_snr_loss` against 3 speakers plus noise;
* uPIT: the Conv-TasNet of ``hparams/backbones/convtasnet.yaml`` (two masks),
  batch 4, 4 s crops, loss :func:`modules.losses.pit_si_snr_loss`.

A step is forward, loss, backward and an Adam update. The loss is timed on
its own (forward + backward from estimates of the step's size) in two
implementations, interleaved: the present one (the one SI-SNR kernel,
:func:`modules.losses.centered_stats`, under autograd) and the one with a
hand-written backward that it replaced (``_CenteredStats`` and
``_OrPitLoss``, read from git at ``HAND_WRITTEN_COMMIT``). Prints medians and
each loss's share of the step. A hand-written backward is worth keeping only
where autograd's loss costs more than 1 % of the step (docs: DESIGN.md).

Measured on 2 shared CPU cores under heavy load (steps of minutes): SADDEL
step 208 s, OR-PIT 214 ms with autograd (0.10 %), 67 ms hand-written
(0.03 %); uPIT step 137 s, loss 162 ms with autograd (0.12 %), 19 ms
hand-written (0.01 %).
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from hyperpyyaml import load_hyperpyyaml

from modules.losses import orpit_si_snr_loss, pit_si_snr_loss
from modules.models.saddel import OneAndRestSeparator

REPO = Path(__file__).resolve().parents[2]
HAND_WRITTEN_COMMIT = "e6bc1af"  # the last commit with the hand-written backward passes
TIME, SAMPLE_RATE = 32000, 8000


def _old_module(path, name):
    """The module at ``path`` as of ``HAND_WRITTEN_COMMIT`` (``None`` outside a git checkout)."""
    try:
        command = ["git", "-C", str(REPO), "show", f"{HAND_WRITTEN_COMMIT}:{path}"]
        text = subprocess.run(command, capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _backbone(name, num_masks):
    with open(REPO / "hparams" / "backbones" / name) as f:
        return load_hyperpyyaml(f, {"num_masks": num_masks})


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _step(model, optimizer, mix, loss_fn):
    def run():
        optimizer.zero_grad()
        estimates = model(mix)
        loss_fn(estimates).mean().backward()
        optimizer.step()

    return run


def _loss_only(loss_fn, estimates):
    def run():
        est = estimates.detach().requires_grad_()
        loss_fn(est).mean().backward()

    return run


def _measure(title, model, optimizer, mix, losses, reps, loss_reps):
    """Median step time and each loss's time and share of it, the losses timed right after each step.

    ``losses`` maps a label to a loss function of the estimates (``None``: not available).
    """
    losses = {label: fn for label, fn in losses.items() if fn is not None}
    step = _step(model, optimizer, mix, lambda out: losses["autograd (kernel)"](out[0]) + 0 * out[0].sum())
    step()  # warm-up
    estimates = model(mix)[0].detach()
    for fn in losses.values():  # warm-up
        _timed(_loss_only(fn, estimates))
    step_times, loss_times = [], {label: [] for label in losses}
    for _ in range(reps):  # the losses timed beside each step, under the same background load
        step_times.append(_timed(step))
        for _ in range(loss_reps):
            for label, fn in losses.items():
                loss_times[label].append(_timed(_loss_only(fn, estimates)))
    step = statistics.median(step_times)
    print(f"\n{title}")
    print(f"  full training step (fwd + loss + bwd + Adam): median {step * 1e3:9.1f} ms over {len(step_times)}")
    for label, times in loss_times.items():
        loss = statistics.median(times)
        print(f"  loss fwd+bwd, {label:<24s} median {loss * 1e3:7.2f} ms = {100 * loss / step:5.2f} % of the step")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="full-size steps per method")
    parser.add_argument("--loss-reps", type=int, default=5, help="loss repetitions per implementation and step")
    parser.add_argument("--methods", nargs="+", default=["saddel", "upit"], choices=["saddel", "upit"])
    args = parser.parse_args()
    torch.manual_seed(0)
    old_si_snr = _old_module("modules/losses/si_snr.py", "old_si_snr")
    old_orpit = _old_module("modules/losses/orpit.py", "old_orpit")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 on the CPU")

    if "saddel" in args.methods:
        _saddel(old_orpit, args)
    if "upit" in args.methods:
        _upit(old_si_snr, args)


def _saddel(old_orpit, args):
    """SADDEL: batch 5 (one mixture per scenario), 3 speakers + noise."""
    batch, n_spk = 5, 3
    sources, noise = torch.randn(batch, TIME, n_spk), torch.randn(batch, TIME)
    # 1sp+n, 2sp, 3sp, 2sp+n, 3sp+n
    source_mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    noise_mask = torch.tensor([True, False, False, True, True])
    sources = sources * source_mask[:, None]
    mix = sources.sum(-1) + noise * noise_mask[:, None]
    backbone = _backbone("convtasnet_skip.yaml", 3)
    model = OneAndRestSeparator(backbone["separator"], flag_head=True, flag_features=backbone["N_encoder_out"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def orpit_new(est):
        return orpit_si_snr_loss(est, sources, source_mask, noise, noise_mask)[0]

    def orpit_old(est):
        return old_orpit.orpit_si_snr_loss(est, sources, source_mask, noise, noise_mask)[0]

    _measure(
        f"SADDEL (convtasnet_skip, 3 masks), batch {batch}, {TIME} samples, OR-PIT loss",
        model,
        optimizer,
        mix,
        {"autograd (kernel)": orpit_new, "hand-written backward": old_orpit and orpit_old},
        args.reps,
        args.loss_reps,
    )


def _upit(old_si_snr, args):
    """uPIT: Conv-TasNet, batch 4, 2 speakers."""
    batch = 4
    targets = torch.randn(batch, TIME, 2)
    mix = targets.sum(-1)
    model = _backbone("convtasnet.yaml", 2)["separator"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def upit_new(est):
        return pit_si_snr_loss(est, targets)[0]

    def upit_old(est):
        return old_si_snr.pit_si_snr_loss(est, targets)[0]

    _measure(
        f"uPIT (convtasnet), batch {batch}, {TIME} samples, pit_si_snr_loss",
        model,
        optimizer,
        mix,
        {"autograd (kernel)": upit_new, "hand-written backward": old_si_snr and upit_old},
        args.reps,
        args.loss_reps,
    )


if __name__ == "__main__":
    main()
