"""Benchmark of ``separate``: memory against input length, real-time factor, chunked against whole-file quality.

Run from the repository root::

    python tests/benchmarks/bench_separate.py [--model <trained run or export>] [--minutes 1 30] [--device cpu]

1. **Memory.** The same model separates a 1-minute and a 30-minute recording
   (8 kHz WAV files made by repeating mini WHAM! mixtures), each in a fresh
   process, with :func:`modules.inference.separate_file` (default chunks of
   10 s, 2 s overlap). Printed side by side: the process's peak resident memory
   (``ru_maxrss``, everything included: Python, torch, the model), the CUDA peak
   on a GPU, and their ratio; the issue asks for the two peaks within 10 % of
   each other.
2. **Speed.** The real-time factor of each run (separation time / audio duration,
   model loading excluded).
3. **Quality of stitching.** A long mixture is built by concatenating the 16
   test mixtures of the mini WHAM! (about a minute) and separated once as a whole
   file (one forward pass) and once in chunks. Each original mixture's segment is
   scored with SI-SNR under its own best permutation (different mixtures have
   different speakers, so "speaker 1" only means something within a segment),
   and the means are compared; the issue asks for the chunked one within 0.5 dB of
   the whole-file one.

Without ``--model``, the Quickstart model is trained first (the WHAM! baseline
Conv-TasNet with ``hparams/cpu_small.yaml`` on a mini WHAM! of 200 training
mixtures, 4 epochs: a few CPU minutes) and used for all three parts.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from modules.inference import load_model, separate_file, separate_signal  # noqa: E402
from modules.losses import best_permutation, pairwise_si_snr  # noqa: E402

SR = 8000


def train_quickstart(folder):
    """The README's Quickstart run (mini WHAM!, cpu_small Conv-TasNet, 4 epochs)."""
    from data_prep.mini import make_mini_wham

    data = make_mini_wham(folder, seed=0, n_train=200, n_valid=10, n_test=16, sample_rates=(8000,), modes=("min",))
    run = folder / "run"
    cmd = [sys.executable, "recipes/WHAM/baseline/train.py", "hparams/convtasnet.yaml", f"--data_folder={data}"]
    cmd += ["--overrides_file=hparams/cpu_small.yaml", f"--output_folder={run}", "--device=cpu", "--noprogressbar"]
    print("Training the Quickstart model (a few minutes) ...", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return run, data


def child(args):
    """Separates one file in this (fresh) process and prints its measurements as JSON."""
    model = load_model(args.model, device=args.device)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    separate_file(model, args.child, args.out, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
                  batch_size=args.batch_size)  # fmt: skip
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mb": rss_loaded,
        "seconds": seconds,
        "audio_seconds": soundfile.info(args.child).duration,
    }
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def long_recording(mixtures, minutes, path):
    """Writes ``minutes`` of audio made by repeating the mixtures, block by block (never all in memory)."""
    pieces = [soundfile.read(m, dtype="float32")[0] for m in mixtures]
    total = int(minutes * 60 * SR)
    with soundfile.SoundFile(path, "w", samplerate=SR, channels=1, subtype="FLOAT") as f:
        written, i = 0, 0
        while written < total:
            piece = pieces[i % len(pieces)][: total - written]
            f.write(piece)
            written += len(piece)
            i += 1


def segment_si_snr(estimates, references, bounds):
    """Mean over segments of the SI-SNR under each segment's best permutation."""
    scores = []
    for a, b in bounds:
        est = torch.as_tensor(estimates[a:b], dtype=torch.float64)[None]
        ref = torch.as_tensor(references[a:b], dtype=torch.float64)[None]
        pairwise = pairwise_si_snr(est, ref)
        perm = best_permutation(pairwise)[0]
        scores.append(float(pairwise[0, perm, torch.arange(ref.shape[-1])].mean()))
    return float(np.mean(scores)), scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a trained run or export folder (default: train the Quickstart)")
    parser.add_argument("--data", default=None, help="the mini WHAM! root to build recordings from (with --model)")
    parser.add_argument("--minutes", type=float, nargs=2, default=[1.0, 30.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk_seconds", type=float, default=10.0)
    parser.add_argument("--overlap_seconds", type=float, default=2.0)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    tmp = Path(tempfile.mkdtemp(prefix="bench_separate_"))
    if args.model is None:
        run, data = train_quickstart(tmp)
        args.model = str(run)
    else:
        from data_prep.mini import make_mini_wham

        data = Path(args.data) if args.data else make_mini_wham(tmp, seed=0, n_train=1, n_valid=1, n_test=16,
                                                                sample_rates=(8000,), modes=("min",))  # fmt: skip
    test = sorted((Path(data) / "wav8k" / "min" / "tt" / "mix_both").glob("*.wav"))

    # 1-2. memory and speed, each length in a fresh process
    measured = {}
    for minutes in args.minutes:
        wav = tmp / f"long_{minutes:g}min.wav"
        long_recording(test, minutes, wav)
        cmd = [sys.executable, __file__, "--model", args.model, "--device", args.device, "--child", str(wav),
               "--out", str(tmp / "out"), "--chunk_seconds", str(args.chunk_seconds), "--overlap_seconds",
               str(args.overlap_seconds), "--batch_size", str(args.batch_size)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
        measured[minutes] = json.loads(proc.stdout.strip().splitlines()[-1])
        wav.unlink()
    short, long = (measured[m] for m in args.minutes)
    chunking = f"chunks of {args.chunk_seconds:g} s, overlap {args.overlap_seconds:g} s"
    print(f"\nModel: {args.model} on {args.device}; {chunking}")
    print(f"| | {args.minutes[0]:g} min | {args.minutes[1]:g} min | ratio |")
    print("|---|---|---|---|")
    ratio = long["peak_rss_mb"] / short["peak_rss_mb"]
    print(f"| peak RSS (MB) | {short['peak_rss_mb']:.0f} | {long['peak_rss_mb']:.0f} | {ratio:.3f} |")
    print(
        f"| RSS after loading the model (MB) | {short['rss_after_load_mb']:.0f} | {long['rss_after_load_mb']:.0f} | |"
    )
    if "cuda_peak_mb" in short:
        cuda_ratio = long["cuda_peak_mb"] / short["cuda_peak_mb"]
        print(f"| CUDA peak (MB) | {short['cuda_peak_mb']:.0f} | {long['cuda_peak_mb']:.0f} | {cuda_ratio:.3f} |")
    rtf = [m["seconds"] / m["audio_seconds"] for m in (short, long)]
    print(f"| real-time factor | {rtf[0]:.4f} | {rtf[1]:.4f} | |")
    print(f"Peak memory within 10 %: {'yes' if ratio <= 1.10 else 'NO'} ({100 * (ratio - 1):+.1f} %)")

    # 3. chunked against whole-file separation on a long concatenated mixture
    mixtures, refs, bounds, at = [], [], [], 0
    for m in test:
        mix, _ = soundfile.read(m)
        sources = np.stack([soundfile.read(str(m).replace("mix_both", s))[0] for s in ("s1", "s2")], -1)
        mixtures.append(mix)
        refs.append(sources)
        bounds.append((at, at + len(mix)))
        at += len(mix)
    mixture, references = np.concatenate(mixtures), np.concatenate(refs)
    model = load_model(args.model, device=args.device)
    with torch.no_grad():
        whole = model.separate_batch(torch.as_tensor(mixture, dtype=torch.float32, device=model.device)[None])[0]
    whole = whole[0].float().cpu().numpy()
    chunked = separate_signal(model, mixture, SR, chunk_seconds=args.chunk_seconds,
                              overlap_seconds=args.overlap_seconds).speakers  # fmt: skip
    whole_score, _ = segment_si_snr(whole, references, bounds)
    chunk_score, _ = segment_si_snr(chunked, references, bounds)
    mix_score, _ = segment_si_snr(np.repeat(mixture[:, None], 2, axis=1), references, bounds)
    print(f"\nLong mixture: {len(test)} mini WHAM! test mixtures concatenated, {len(mixture) / SR:.1f} s")
    print("| separation | SI-SNR (dB) | SI-SNRi (dB) |\n|---|---|---|")
    print(f"| whole file (one forward pass) | {whole_score:.2f} | {whole_score - mix_score:.2f} |")
    print(f"| chunked ({args.chunk_seconds:g} s / {args.overlap_seconds:g} s) | {chunk_score:.2f} | "
          f"{chunk_score - mix_score:.2f} |")  # fmt: skip
    diff = chunk_score - whole_score
    print(f"Chunked within 0.5 dB of whole-file: {'yes' if abs(diff) <= 0.5 else 'NO'} ({diff:+.2f} dB)")


if __name__ == "__main__":
    main()
