"""Benchmark: one training step of NASS vs the baseline, same backbone and size.

Run from the repository root::

    python tests/benchmarks/bench_nass_step.py [--backbone convtasnet] [--patches 256]

Both brains are built from the recipe yamls (``recipes/WHAM/{baseline,nass}``) with
``hparams/cpu_small.yaml`` (batches of 4 two-second crops) and run ``Brain.fit_batch``
(forward, loss, backward, optimizer step) on the same batch, timed in alternation, at two
sizes: ``cpu_small`` (the yaml's own model, 0.15M parameters for Conv-TasNet) and
``small`` (Conv-TasNet with N = B = 128, H = 256, X = 6, R = 3). NASS adds one mask (the
noise) and the patch-wise contrastive loss (M time-frequency bins through the 3x3 conv front
end and an MLP of 256 features).
The issue's budget: at most 10 % more step time. The contrastive head costs about the
same at any model size (M and the MLP are fixed), so its share is largest for the
smallest model.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import ruamel.yaml  # noqa: E402
import torch  # noqa: E402
from hyperpyyaml import load_hyperpyyaml  # noqa: E402

from modules.brain import SeparationBrain  # noqa: E402
from modules.data import collate  # noqa: E402
from modules.nass import NASSBrain  # noqa: E402
from modules.recipe import lift_training_block  # noqa: E402

SIZES = {
    "cpu_small": {},
    "small": {"N_encoder_out": 128, "out_channels": 128, "B": 128, "H": 256, "X": 6, "R": 3},
}


def build(method, backbone, patches, folder, size):
    """A brain of the given recipe with the cpu_small overrides and the size's backbone keys."""
    name = f"{backbone}_nass.yaml" if method == "nass" else f"{backbone}.yaml"
    with open(REPO / "hparams" / "cpu_small.yaml") as f:
        overrides = dict(ruamel.yaml.YAML().load(f))
    overrides["backbone"] = {**overrides.pop("backbone_sizes")[backbone], **SIZES[size]}
    for key in ("min_crop", "max_crop", "warmup_updates", "num_negatives", "cue_distractors"):
        overrides.pop(key, None)
    overrides.update(data_folder=folder, output_folder=f"{folder}/{method}")
    if method == "nass":
        overrides["pcl_patches"] = patches
    with open(REPO / "recipes" / "WHAM" / method / "hparams" / name) as f:
        hp = lift_training_block(load_hyperpyyaml(f, overrides))
    brain_class = NASSBrain if method == "nass" else SeparationBrain
    brain = brain_class(hp["modules"], opt_class=hp["optimizer"], hparams=hp, run_opts={"device": "cpu"})
    brain.init_optimizers()
    if method == "nass":
        brain.check_nass_hparams()
    return brain


def make_batch(batch_size, length):
    """Random sources and noise (the step time does not depend on the content)."""
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(batch_size):
        s1, s2, noise = (torch.randn(length, generator=gen) for _ in range(3))
        items.append({"id": str(i), "mix_sig": s1 + s2 + noise, "s1_sig": s1, "s2_sig": s2, "noise_sig": noise})
    return collate(items)


def measure(args, size):
    """Times both brains at one size and prints the ratio."""
    with tempfile.TemporaryDirectory() as folder:
        brains = {m: build(m, args.backbone, args.patches, folder, size) for m in ("baseline", "nass")}
        hp = brains["baseline"].hparams
        batch = make_batch(hp.batch_size, hp.training_signal_len)
        times = {k: [] for k in brains}
        for rep in range(args.reps + 3):
            for name, brain in brains.items():
                start = time.perf_counter()
                brain.fit_batch(batch)
                if rep >= 3:  # warm-up
                    times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    n_params = {k: sum(p.numel() for p in b.modules["separator"].parameters()) for k, b in brains.items()}
    print(
        f"One training step, {args.backbone} at size {size}, batch {hp.batch_size} x {hp.training_signal_len} "
        f"samples, M={args.patches}, median of {args.reps} (torch threads: {torch.get_num_threads()})"
    )
    for k in brains:
        print(f"  {k:9s}: {med[k]:8.1f} ms  (separator: {n_params[k] / 1e6:.3f}M parameters)")
    print(f"  NASS / baseline step time: {med['nass'] / med['baseline']:.3f}x")


def main():
    """Prints the step times and their ratio at each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="convtasnet", choices=["convtasnet", "dprnn", "sepformer"])
    parser.add_argument("--patches", type=int, default=256, help="M, patches per comparison")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    for size in args.sizes:
        measure(args, size)


if __name__ == "__main__":
    main()
