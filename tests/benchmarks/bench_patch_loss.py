"""Benchmark: NASS patch-wise contrastive loss (patch extraction + loss, forward + backward).

Run from the repository root::

    python tests/benchmarks/bench_patch_loss.py [--device cuda] [--threads 2]

Batch 4, 2 speakers + noise (S = 3), N = 256 filters, L = 1000 frames
(4 s at 8 kHz, encoder kernel 16, stride 8), M = 256 patches. Times, as the
median of several repetitions after a warm-up:

* ``bin`` / ``frame``: :meth:`PatchSampler.extract` then
  :func:`nass_contrastive_loss` (S->N) and ``backward()``, the way a
  training step calls them;
* ``bin, full maps``: the same loss computed the obvious way, building the
  whole ``h_k = m_k * h_x`` maps, running the conv front end over them and
  the encoder over the whole clean sources, then indexing the ``M`` bins;
  its value is checked against the extracted version.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from speechbrain.lobes.models.dual_path import Encoder

from modules.losses import nass_contrastive_loss
from modules.models.patch_sampler import PatchSampler

BATCH, N_SPKS, N_FILTERS, KERNEL, N_FRAMES, M = 4, 2, 256, 16, 1000, 256
N_WARMUP, N_REPS = 3, 15


def _inputs(device):
    gen = torch.Generator().manual_seed(0)
    n_src = N_SPKS + 1
    time_len = (N_FRAMES - 1) * (KERNEL // 2) + KERNEL
    sources = torch.randn(BATCH, time_len, n_src, generator=gen).to(device)
    encoder = Encoder(kernel_size=KERNEL, out_channels=N_FILTERS).to(device)
    with torch.no_grad():
        mix_w = encoder(sources.sum(-1))
    logits = torch.randn(n_src, BATCH, N_FILTERS, N_FRAMES, generator=gen).to(device)
    perm = torch.stack([torch.randperm(n_src, generator=gen) for _ in range(BATCH)]).to(device)
    return encoder, sources, mix_w, logits, perm


def _full_map_loss(sampler, encoder, mix_w, masks, sources, perm, positions):
    """The loss through whole maps: h_k everywhere, conv over the map, encoder over the sources."""
    n_src, batch, n_filters, n_frames = masks.shape
    h = (masks * mix_w).transpose(0, 1).reshape(batch * n_src, 1, n_filters, n_frames)
    est_bins = sampler.conv(h).reshape(batch, n_src, -1)  # [B, S, (N-4)(L-4)]
    with torch.no_grad():
        true_h = encoder(sources.transpose(1, 2).flatten(0, 1)).reshape(batch * n_src, 1, n_filters, n_frames)
        true_bins = sampler.conv(true_h).reshape(batch, n_src, -1)
    index = positions[:, None, :].expand(-1, n_src, -1)
    est = est_bins.gather(-1, index)[..., None]  # [B, S, M, 1]: the bins, already through the conv front end
    true = true_bins.gather(-1, index)[..., None]

    def embed(bins):
        return torch.nn.functional.normalize(sampler.mlp(bins).float(), dim=-1)

    return nass_contrastive_loss(est, true, perm, embed, N_SPKS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    encoder, sources, mix_w, logits, perm = _inputs(device)
    torch.manual_seed(0)
    samplers = {"bin": PatchSampler().to(device), "frame": PatchSampler("frame", in_channels=N_FILTERS).to(device)}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    masks = logits.sigmoid().requires_grad_()  # one leaf, its gradient cleared at each step

    def step(kind):
        masks.grad = None
        est, true = samplers[kind].extract(mix_w, masks, encoder, sources, M)
        loss = nass_contrastive_loss(est, true, perm, samplers[kind], N_SPKS)
        loss.backward()
        return loss

    def step_full():
        masks.grad = None
        sampler = samplers["bin"]
        positions = sampler.sample_positions(N_FILTERS, N_FRAMES, M, BATCH, device)
        loss = _full_map_loss(sampler, encoder, mix_w, masks, sources, perm, positions)
        loss.backward()
        return loss

    # the full-map computation agrees with the extracted patches at the same positions
    sampler = samplers["bin"]
    positions = sampler.sample_positions(N_FILTERS, N_FRAMES, M, BATCH, device, torch.Generator(device).manual_seed(1))
    with torch.no_grad():
        est, true = sampler.extract(mix_w, masks, encoder, sources, positions=positions)
        fast = nass_contrastive_loss(est, true, perm, sampler, N_SPKS)
        full = _full_map_loss(sampler, encoder, mix_w, masks, sources, perm, positions)
    print(f"extracted vs full maps: {float(fast):.6f} vs {float(full):.6f}")

    steps = {"bin": lambda: step("bin"), "frame": lambda: step("frame"), "bin, full maps": step_full}
    times = {name: [] for name in steps}
    for _ in range(N_WARMUP):
        for fn in steps.values():
            fn()
    for _ in range(N_REPS):
        for name, fn in steps.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    print(f"B={BATCH} S={N_SPKS + 1} N={N_FILTERS} L={N_FRAMES} M={M} on {device}, {torch.get_num_threads()} threads")
    for name, values in times.items():
        print(f"{name:>15}: median {1e3 * statistics.median(values):7.2f} ms, min {1e3 * min(values):7.2f} ms")


if __name__ == "__main__":
    main()
