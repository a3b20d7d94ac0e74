"""Benchmark: a group-stage training step with the teacher-target cache, without it, and a plain SI-SNR step.

Run from the repository root::

    python tests/benchmarks/bench_context_cache.py [--teacher base|tiny] [--target hybrid] [--seconds 4]

Three brains are built from the context-aware recipe yamls
(``recipes/LibriMix/context_aware/hparams/{group_,}convtasnet.yaml``) with
``hparams/cpu_small.yaml`` (the same small split Conv-TasNet, batches of 4 one-second
crops) and run ``Brain.fit_batch`` (forward, loss, backward, optimizer step) on the same
batch of ``--seconds``-long utterances, timed in alternation:

* ``group, cached``: the group stage with ``teacher_cache: True`` (the cache is filled
  during the warm-up, so the timed steps read the targets from disk, as every epoch after
  the first does);
* ``group, no cache``: the teacher (HuBERT base with random weights by default, the
  paper's size; ``--teacher tiny`` for the test teacher) runs on the whole clean sources
  of every item at every step;
* ``SI-SNR step``: the segregate stage's step of the same split separator (the whole
  model with SI-SNR), the cost of training without a group stage.
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
from modules.context_aware import GroupStageBrain  # noqa: E402
from modules.data import collate  # noqa: E402
from modules.models.ssl import build_ssl_model  # noqa: E402
from modules.recipe import lift_training_block  # noqa: E402

HPARAMS = REPO / "recipes" / "LibriMix" / "context_aware" / "hparams"


def build(kind, folder, checkpoint, args):
    """A brain of one kind (``cached``, ``uncached``, ``sisnr``) with the cpu_small overrides."""
    with open(REPO / "hparams" / "cpu_small.yaml") as f:
        overrides = dict(ruamel.yaml.YAML().load(f))
    overrides["backbone"] = dict(overrides.pop("backbone_sizes")["convtasnet_skip"])  # what the yamls include
    overrides.update(data_folder=folder, output_folder=f"{folder}/{kind}")
    if kind == "sisnr":
        path, brain_class = HPARAMS / "convtasnet.yaml", SeparationBrain
        overrides["target"] = args.target
    else:
        path, brain_class = HPARAMS / "group_convtasnet.yaml", GroupStageBrain
        overrides.update(target=args.target, ssl_loader="torchaudio", ssl_size=args.teacher, ssl_checkpoint=checkpoint,
                         teacher_cache=kind == "cached")  # fmt: skip
    with open(path) as f:
        keys = set(ruamel.yaml.YAML().load(f))
    with open(path) as f:  # the keys of cpu_small.yaml that this stage's yaml has (the stage runner's rule)
        hparams = lift_training_block(load_hyperpyyaml(f, {k: v for k, v in overrides.items() if k in keys}))
    brain = brain_class(hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                        run_opts={"device": "cpu"})  # fmt: skip
    brain.init_optimizers()
    return brain


def make_batch(batch_size, length):
    """Random two-source utterances with source paths (the cache keys); the content does not matter here."""
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(batch_size):
        s1, s2 = torch.randn(length, generator=gen) * 0.1, torch.randn(length, generator=gen) * 0.1
        items.append({"id": str(i), "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2,
                      "s1_wav": f"/bench/s1/{i}.wav", "s2_wav": f"/bench/s2/{i}.wav"})  # fmt: skip
    return collate(items)


def main():
    """Prints the three step times and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="base", choices=["base", "tiny"], help="SSL teacher size")
    parser.add_argument("--target", default="hybrid", choices=["mel", "phoneme", "word", "hybrid"])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the (uncropped) utterances")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = f"{folder}/hubert_{args.teacher}.pth"
        torch.save(build_ssl_model("hubert", args.teacher).state_dict(), checkpoint)
        brains = {
            "group, cached": build("cached", folder, checkpoint, args),
            "group, no cache": build("uncached", folder, checkpoint, args),
            "SI-SNR step": build("sisnr", folder, checkpoint, args),
        }
        hp = brains["SI-SNR step"].hparams
        batch = make_batch(hp.batch_size, int(args.seconds * hp.sample_rate))
        times = {k: [] for k in brains}
        for rep in range(args.reps + 2):
            for name, brain in brains.items():
                torch.manual_seed(rep)  # the same crops for the three
                start = time.perf_counter()
                brain.fit_batch(batch)
                if rep >= 2:  # warm-up (and the cache filled)
                    times[name].append(time.perf_counter() - start)
        cache = brains["group, cached"].cache
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(
        f"One training step, split Conv-TasNet at cpu_small size, batch {hp.batch_size} x "
        f"{hp.training_signal_len} samples cropped from {args.seconds:g} s utterances, target {args.target}, "
        f"HuBERT {args.teacher} teacher, median of {args.reps} (torch threads: {torch.get_num_threads()})"
    )
    for name, value in med.items():
        print(f"  {name:16s}: {value:8.1f} ms")
    print(f"  no cache / cached: {med['group, no cache'] / med['group, cached']:.2f}x")
    print(f"  cached group step / SI-SNR step: {med['group, cached'] / med['SI-SNR step']:.2f}x")
    print(f"  cache hits / misses: {cache.hits} / {cache.misses}")


if __name__ == "__main__":
    main()
