"""Benchmark: dynamic mixing's data time per batch beside a small Conv-TasNet's training step.

Run from the repository root::

    python tests/benchmarks/bench_mixing.py [--batches 8] [--batch-size 4] [--segment 16000]

Builds a mini WHAM! and a mini Libri2Mix (8 kHz, min) in a temporary folder,
prepares their manifests, and for each gain rule (``wham`` on WHAM!,
``librimix`` on Libri2Mix) times the mixing pipeline (pool draws, ``soundfile``
reads, gains, ``collate``; ``num_workers=0``, batches of 4 two-second
mixtures at most) and the training step (forward, PIT SI-SNR loss, backward,
Adam step) of a Conv-TasNet with the sizes of ``hparams/cpu_small.yaml`` on the
same batches, alternately in the same run. The budget: mixing under 10 % of the
step. Medians over ``--batches`` batches after one warm-up batch.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from speechbrain.lobes.models.conv_tasnet import MaskNet  # noqa: E402
from speechbrain.lobes.models.dual_path import Decoder, Encoder  # noqa: E402

from data_prep.librimix import prepare_librimix  # noqa: E402
from data_prep.mini import make_mini_librimix, make_mini_wham  # noqa: E402
from data_prep.wham import prepare_wham  # noqa: E402
from modules.data import collate  # noqa: E402
from modules.data.mixing import build_dynamic_mixing  # noqa: E402
from modules.losses import pit_si_snr_loss  # noqa: E402

SR = 8000
N_SPKS = 2


class ConvTasNet(torch.nn.Module):
    """Encoder / Conv-TasNet masker / decoder at the sizes of hparams/cpu_small.yaml."""

    def __init__(self, n_spks=N_SPKS):
        super().__init__()
        self.n_spks = n_spks
        self.encoder = Encoder(kernel_size=16, out_channels=64)
        self.masknet = MaskNet(
            N=64, B=64, H=128, P=3, X=4, R=2, C=n_spks, norm_type="gLN", causal=False, mask_nonlinear="relu"
        )
        self.decoder = Decoder(in_channels=64, out_channels=1, kernel_size=16, stride=8, bias=False)

    def forward(self, mix):
        """``[B, T]`` -> ``[B, T, n_spks]``."""
        feats = self.encoder(mix)
        masked = feats.unsqueeze(0) * self.masknet(feats)
        est = torch.stack([self.decoder(masked[i]) for i in range(self.n_spks)], dim=-1)
        length = mix.shape[1]
        if est.shape[1] < length:
            est = torch.nn.functional.pad(est, (0, 0, 0, length - est.shape[1]))
        return est[:, :length]


def corpora(folder):
    """Mini corpora and their training manifests: ``{rule: (csv, data_folder)}``."""
    sizes = {"n_train": 24, "n_valid": 2, "n_test": 2, "sample_rates": (SR,), "modes": ("min",)}
    wham = make_mini_wham(folder, seed=0, **sizes)
    libri = make_mini_librimix(folder, seed=0, n_spks=(N_SPKS,), **sizes)
    return {
        "wham": (prepare_wham(wham, Path(folder) / "wham_csv")["train"], wham),
        "librimix": (prepare_librimix(libri, Path(folder) / "libri_csv", n_spks=N_SPKS)["train"], libri),
    }


def measure(rule, csv, data_folder, args):
    """Median data time and step time per batch for one gain rule."""
    hparams = {
        "dm_gain_rule": rule,
        "dm_speaker_rule": rule,
        "num_spks": N_SPKS,
        "sample_rate": SR,
        "seed": 1,
        "data_folder": str(data_folder),
        "training_signal_len": args.segment,
        "limit_training_signal_len": True,
        "dm_epoch_size": (args.batches + 1) * args.batch_size,
    }
    dataset, sampler = build_dynamic_mixing(hparams, csv)
    sampler.set_epoch(1)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate, num_workers=0
    )
    torch.manual_seed(0)
    model = ConvTasNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data_times, step_times, lengths = [], [], []
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        data_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        est = model(batch.mix)
        loss = pit_si_snr_loss(est, batch.sources, lengths=batch.lengths)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - start)
        lengths.append(int(batch.lengths.max()))
    data_ms = 1e3 * statistics.median(data_times[1:])
    step_ms = 1e3 * statistics.median(step_times[1:])
    return data_ms, step_ms, statistics.mean(lengths[1:]) / SR


def main():
    """Prints the data time, the step time and their ratio for both rules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segment", type=int, default=16000, help="largest mixture length, samples")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch_size} x <= "
        f"{args.segment / SR:.1f} s at {SR} Hz, num_workers=0, {args.batches} batches (medians)"
    )
    print(f"{'rule':<10}{'mean len (s)':>14}{'mixing ms/batch':>18}{'step ms/batch':>16}{'mixing/step':>14}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for rule, (csv, data_folder) in corpora(folder).items():
            data_ms, step_ms, seconds = measure(rule, csv, data_folder, args)
            ratio = data_ms / step_ms
            worst = max(worst, ratio)
            print(f"{rule:<10}{seconds:>14.2f}{data_ms:>18.1f}{step_ms:>16.1f}{100 * ratio:>13.1f}%")
    print(f"budget: mixing < 10% of the step -> {'OK' if worst < 0.10 else 'OVER'} (worst {100 * worst:.1f}%)")


if __name__ == "__main__":
    main()
