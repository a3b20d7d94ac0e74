"""Context-aware two-stage training versus its paper's baseline on mini corpora (Conv-TasNet, Table I).

The paper's claim (Table I, Table II): a Conv-TasNet split into a SIMO context extractor and a SISO
segregator, whose extractor is first trained to predict SSL representations of the clean sources
(group stage) and then trained whole with SI-SDR (segregate stage), generalises better from
Libri2Mix to LRS2Mix than the same Conv-TasNet trained end to end (8.6 -> 9.5 dB SI-SDRi out of
domain with hybrid HuBERT targets; 14.1 -> 15.0 dB in domain). This script trains, with the real
recipe (``recipes/LibriMix/context_aware/train.py``, prep -> train -> test) and the shared harness
(``tests/benchmarks/method_vs_baseline.py``), for each seed:

* ``baseline``: ``baseline_convtasnet.yaml``, the end-to-end Conv-TasNet of Table I's first row;
* ``baseline, 8 epochs``: the same, trained twice as long (8 epochs, fixed: ``--epochs`` does not change
  it), as many epochs as the two-stage systems' two stages together: a control for the extra training;
* ``two-stage hybrid``: ``convtasnet.yaml`` with its default target ``hybrid`` (Sys. 6: the signal
  SI-SDR plus InfoNCE against the Mel-like, phoneme and word taps of a HuBERT), both stages
  (group, then segregate from the group stage's best checkpoint).

``--target=signal`` (Sys. 2, no SSL model) is left out to keep one run within about 12 minutes of one
core; a first run with it, on 60 training mixtures, is in the recipe README.

The teacher. No pretrained weights exist on this machine (and none may be downloaded), so the HuBERT
teacher is the tiny one of the tests (``--ssl_loader=torchaudio --ssl_size=tiny`` without a checkpoint:
torchaudio's HuBERT with 12 transformer layers of width 16 and random weights drawn with seed 0, the
same teacher for every seed). Its "phoneme" and "word" taps are fixed random nonlinear features of each
clean source, not phonetic or lexical context: what the group stage learns here is to predict, per
speaker, the signal (the SI-SDR term, which needs no SSL model) and random features of it. The benchmark
therefore measures the two-stage scheme with the paper's best target's loss terms, not the value of
HuBERT's representations, which needs the real checkpoint (a GPU box: ``--ssl_hub=facebook/hubert-base-ls960``).
Its targets are cached (the recipe's default ``teacher_cache: True``) in one folder for all seeds
(``<work_dir>/teacher_cache``, the shared cache of docs/context_aware.md).

All systems train on mini Libri2Mix (16 kHz, min) with the same overrides file
(``hparams/cpu_small.yaml``: the same Conv-TasNet sizes, N=B=Sc=64, H=128, 4 x 2 blocks, batch 4, 1 s
crops, lr 1e-3) and the same ``N_epochs`` (4), which each stage of a two-stage system takes, as in the
paper, where both stages and the baseline train up to 200 epochs with the same early stopping: the
two-stage systems therefore train twice as many epochs in all (their group stage trains the encoder
and the context extractor only), hence the 8-epoch baseline. They are tested in domain (mini Libri2Mix
test) and out of domain (mini LRS2-2Mix test, the recipe's ``lrs2mix`` extra test set; the dev set is
scored too, not reported). Nothing is tuned for the method: the same seeds, sizes, crops, learning rate and epochs.

    python tests/benchmarks/bench_context_aware_vs_baseline.py --work_dir /tmp/bench_context_aware \\
        --json /tmp/bench_context_aware.json

Measured wall time of one full run (3 seeds, the three systems, OMP_NUM_THREADS=1,
on the shared 2-core development machine): about 9 minutes (530 s of runs: baseline
34-44 s, 8-epoch baseline 57-67 s, two-stage 77-79 s each, plus the corpora); its table and what it shows
are in the recipe README's section "Method vs baseline on mini corpora" (recipes/LibriMix/context_aware/README.md).

What it can show: whether the two-stage scheme, with the paper's loss terms, changes what a small
Conv-TasNet learns in a few CPU epochs on procedural mini corpora, in and out of domain. What it cannot
show: the paper's effect at scale (5M-parameter models, 200 epochs, 58 h of LibriSpeech mixtures, a
pretrained HuBERT); a null or negative result here says nothing about that.
"""

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from method_vs_baseline import System, main

RECIPE = "recipes/LibriMix/context_aware"

#: Mini corpora (data_prep.mini): training on Libri2Mix 16 kHz; LRS2-2Mix test out of domain.
CORPORA = {
    "librimix": {
        "n_train": 120,
        "n_valid": 6,
        "n_test": 20,
        "sample_rates": (16000,),
        "modes": ("min",),
        "n_spks": (2,),
        "mix_types": ("mix_clean",),
    },
    "lrs2mix": {"n_train": 1, "n_valid": 1, "n_test": 20},
}

DATA = {"data_folder": "librimix", "lrs2mix_folder": "lrs2mix"}

#: Switches of the test stage both systems take (no REAL-M set is given, so none is scored).
SHARED = ("--n_audio_to_save=0",)

#: The method's teacher: the tiny random-weight HuBERT (no pretrained weights here; see the docstring).
TEACHER = ("--target=hybrid", "--ssl_model=hubert", "--ssl_loader=torchaudio", "--ssl_size=tiny")


def sets(prefix=""):
    """Report label -> summary file of a run (``prefix``: the stage folder of a staged system)."""
    return {
        "Libri2Mix (in domain)": f"{prefix}test_summary.json",
        "LRS2Mix (out of domain)": f"{prefix}test_summary_lrs2mix.json",
    }


def systems(cache_folder):
    """The baseline and the two-stage system (its teacher cache in ``cache_folder``, shared by the seeds)."""
    cache = (f"--teacher_cache_folder={cache_folder}",)
    method = (*SHARED, *TEACHER, *cache)
    return [
        System("baseline", RECIPE, "baseline_convtasnet.yaml", DATA, sets(), overrides=SHARED, baseline=True),
        System("baseline, 8 epochs", RECIPE, "baseline_convtasnet.yaml", DATA, sets(), (*SHARED, "--N_epochs=8")),
        System("two-stage hybrid", RECIPE, "convtasnet.yaml", DATA, sets("segregate/"), overrides=method),
    ]


def _cache_folder(argv):
    """``<work_dir>/teacher_cache``, or a temporary folder removed at exit when no ``--work_dir`` is given."""
    for i, arg in enumerate(argv):
        if arg == "--work_dir" and i + 1 < len(argv):
            return Path(argv[i + 1]) / "teacher_cache"
        if arg.startswith("--work_dir="):
            return Path(arg.split("=", 1)[1]) / "teacher_cache"
    folder = tempfile.mkdtemp(prefix="bench_context_cache_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder)


if __name__ == "__main__":
    sys.exit(main(__doc__, CORPORA, systems(_cache_folder(sys.argv[1:])), metric="si-snr_i"))
