"""Small data in the layout of SpeechBrain's ``tests/samples``, for the recipe test of an export.

Upstream's recipe tests run every recipe on the few files under
``tests/samples`` (``--debug``, two epochs). The separation recipes read
``tests/samples/annotation/separation_{train,dev}.csv``: one row each,
written with a space after every comma (``ID, duration, mix_wav, ...``),
columns ``mix``, ``s1``, ``s2``, ``s3`` and ``noise`` (each with ``_wav``,
``_wav_format``, ``_wav_opts``), audio under ``$data_root`` =
``tests/samples/separation`` (``mixture_<i>.wav``, ``source1_<i>.wav``,
``source2_<i>.wav``: 16 kHz, 64-bit float) and the noise in
``$data_root/../noise/noise<i>.wav`` (16-bit). Two properties of those files
matter to a recipe: the ``s3`` column repeats ``s2`` (two-speaker recipes are
expected to read ``s1`` and ``s2`` only), and the noise files have their own
lengths, longer than the mixtures (and are not part of the mixture).

:func:`make_samples` writes synthetic signals (no file of upstream's is
copied) in that layout. ``strict=True`` reproduces the two properties above;
``strict=False`` writes what our own manifests hold (``s1``, ``s2`` and a
noise of the mixture's length, inside the mixture), to test a recipe's data
flow apart from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile

__all__ = ["SAMPLE_RATE", "debug_checks", "load_blocker", "make_samples", "sample_flags"]

SAMPLE_RATE = 16000
_COLUMNS = ("mix", "s1", "s2", "s3", "noise")


def _voice(rng, n, sample_rate):
    """A harmonic, syllable-modulated signal (a stand-in for speech)."""
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(90, 260) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    return 0.3 * harmonics * envelope


def _noise(rng, n):
    white = rng.standard_normal(n)
    return 0.05 * np.convolve(white, np.ones(8) / 8, mode="same")


def make_samples(root, strict=True, seed=0, seconds=1.0):
    """Writes ``<root>/tests/samples/{separation,noise,annotation}``.

    Arguments
    ---------
    root : str or Path
        The folder that plays the upstream repository's root (the recipe
        test runs from there).
    strict : bool
        Reproduce the properties of upstream's files (see the module docstring).
    seed : int
    seconds : float
        Length of the mixtures (upstream's are about 7 s; 1 s keeps a CPU
        debug run short).

    Returns
    -------
    dict
        ``{"data_folder", "train_csv", "dev_csv"}`` relative to ``root``.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> paths = make_samples(root)
    >>> print(open(Path(root) / paths["train_csv"]).readline().strip()[:40])
    ID, duration, mix_wav, mix_wav_format, m
    >>> soundfile.info(str(Path(root) / paths["data_folder"] / "mixture_0.wav")).subtype
    'DOUBLE'
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "tests" / "samples"
    sep, noise_dir, ann = base / "separation", base / "noise", base / "annotation"
    for folder in (sep, noise_dir, ann):
        folder.mkdir(parents=True, exist_ok=True)
    longest = int(SAMPLE_RATE * seconds) + 400 * 3
    n_noise = {i: int(longest * (1.2 + 0.1 * i)) if strict else None for i in range(1, 6)}  # longer than any mixture
    for i in range(4):
        n = int(SAMPLE_RATE * seconds) + 400 * i
        s1, s2 = _voice(rng, n, SAMPLE_RATE), _voice(rng, n, SAMPLE_RATE)
        mix = s1 + s2
        if not strict and i + 1 in n_noise:
            noise = _noise(rng, n)
            soundfile.write(noise_dir / f"noise{i + 1}.wav", noise, SAMPLE_RATE, subtype="PCM_16")
            mix = mix + soundfile.read(noise_dir / f"noise{i + 1}.wav")[0]
        for name, signal in (("mixture", mix), ("source1", s1), ("source2", s2)):
            soundfile.write(sep / f"{name}_{i}.wav", signal, SAMPLE_RATE, subtype="DOUBLE")
    if strict:
        for i, length in n_noise.items():
            soundfile.write(noise_dir / f"noise{i}.wav", _noise(rng, length), SAMPLE_RATE, subtype="PCM_16")
    for split, index in (("train", 3), ("dev", 2)):
        files = {
            "mix": f"$data_root/mixture_{index}.wav",
            "s1": f"$data_root/source1_{index}.wav",
            "s2": f"$data_root/source2_{index}.wav",
            "s3": f"$data_root/source2_{index}.wav",
            "noise": f"$data_root/../noise/noise{index + 1 if not strict else index}.wav",
        }
        columns = [c for c in _COLUMNS if strict or c != "s3"]
        header = ["ID", "duration"] + [f"{c}_wav{suffix}" for c in columns for suffix in ("", "_format", "_opts")]
        row = ["0", "1.0"] + [value for c in columns for value in (files[c], "wav", "")]
        (ann / f"separation_{split}.csv").write_text(", ".join(header) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    return {
        "data_folder": "tests/samples/separation",
        "train_csv": "tests/samples/annotation/separation_train.csv",
        "dev_csv": "tests/samples/annotation/separation_dev.csv",
    }


#: The sample files the flags point to.
SAMPLE_FOLDER = "tests/samples/separation"
SAMPLE_TRAIN = "tests/samples/annotation/separation_train.csv"
SAMPLE_DEV = "tests/samples/annotation/separation_dev.csv"
#: Folders of the other corpora a recipe tests on (cross-domain sets) or draws from.
DOMAIN_FOLDERS = ("aishell2mix_folder", "vox2mix_folder", "lrs2mix_folder", "realm_folder", "librimix_folder")
#: SADDEL's five scenarios; the debug run trains and tests on the one upstream's samples hold (2sp+n).
SCENARIOS = ("1sp+n", "2sp", "3sp", "2sp+n", "3sp+n")


def _extra_test_set_names(yaml_text):
    """Names of the yaml's ``extra_test_sets`` (the keys of that mapping, one indentation level in; also under
    ``!apply:...available_test_sets``, which keeps the sets whose folders are given)."""
    names, inside = [], False
    for line in yaml_text.splitlines():
        if re.match(r"^extra_test_sets:\s*(!apply:[\w.]*available_test_sets)?\s*(#.*)?$", line):
            inside = True
            continue
        if inside:
            if line.strip() == "" or line.lstrip().startswith("#"):
                continue
            if not line.startswith(" "):
                break
            match = re.match(r"^ {4}([\w.+-]+):", line)
            if match:
                names.append(match.group(1))
    return names


def _placeholders(yaml_text):
    """Top-level keys of a yaml the user must give: ``!PLACEHOLDER``, or an exported ``/yourpath`` stand-in."""
    return set(re.findall(r"^(\w+):\s*(?:!PLACEHOLDER|\[?/yourpath\b)", yaml_text, flags=re.M))


def load_blocker(yaml_text):
    r"""Why a yaml cannot pass upstream's yaml load test as it runs, or ``None`` when it can.

    A context-aware group stage builds its SSL teacher when the yaml loads. With
    the Hugging Face loader (the default, ``ssl_loader: huggingface``) it loads
    by hub id (upstream's CI downloads it; offline, ``ssl_unreachable:
    stand_in`` builds a tiny random model of the same type for the load, and a
    real run refuses it), so the yaml loads. With ``ssl_loader: torchaudio``
    it needs a local ``ssl_checkpoint``, which the load test does not give.

    Example
    -------
    >>> load_blocker("teacher: !apply:build\nssl_loader: huggingface\nssl_checkpoint: null\n") is None
    True
    >>> load_blocker("teacher: !apply:build\nssl_loader: torchaudio\nssl_checkpoint: null\n")[:44]
    'the yaml builds its SSL teacher from a local'
    """
    builds_teacher = re.search(r"^teacher:\s*!apply:", yaml_text, flags=re.M)
    torchaudio = re.search(r"^ssl_loader:\s*torchaudio\b", yaml_text, flags=re.M)
    if builds_teacher and torchaudio and re.search(r"^ssl_checkpoint:\s*null\b", yaml_text, flags=re.M):
        return (
            "the yaml builds its SSL teacher from a local checkpoint as it loads (ssl_loader: torchaudio, "
            "ssl_checkpoint): upstream's yaml load test needs an ssl_checkpoint override or this yaml on its avoid_list"
        )
    return None


#: What every run writes in its output folder besides a copy of its script (SpeechBrain's experiment files and
#: our train log).
RUN_FILES = ("hyperparams.yaml", "log.txt", "env.log", "train_log.txt")


def stage_names(yaml_text):
    r"""The names of the stages a system's yaml declares (its ``stages`` list), in order.

    Example
    -------
    >>> stage_names("seed: 1\nstages:\n    - {name: group, hparams: g.yaml}\n    - {name: segregate}\nx: 2\n")
    ['group', 'segregate']
    >>> stage_names("stages:\n- name: step1\n  overrides: {train_steps: first}\n- name: unrolled\n")
    ['step1', 'unrolled']
    """
    block = re.search(r"^stages:[^\n]*\n((?:[ \t-][^\n]*\n?)*)", yaml_text, flags=re.M)
    return re.findall(r"(?:^|[{,\s])name:\s*([\w-]+)", block.group(1), flags=re.M) if block else []


def debug_checks(keys, yaml_text="", script="train.py"):
    """``test_debug_checks`` of a recipe's registry row: the files its debug run must write.

    ``script`` is the row's script (SpeechBrain copies it into the output folder).

    A tested run writes ``test_results.csv`` beside the run files; a stage
    that only trains (a context-aware group stage given alone, DIP's
    pretraining) does not; a system of stages (its yaml's ``stages``) writes
    each stage in its own folder (``group/``, then ``segregate/``, which is tested).

    Example
    -------
    >>> debug_checks({"data_folder"})
    'file_exists=[train.py,hyperparams.yaml,log.txt,env.log,train_log.txt,test_results.csv]'
    >>> debug_checks({"stages"}, "stages:\\n    - {name: group, hparams: g.yaml}\\n    - {name: segregate}\\n")
    'file_exists=[group/train.py,group/train_log.txt,segregate/train.py,segregate/hyperparams.yaml,\
segregate/log.txt,segregate/env.log,segregate/train_log.txt,segregate/test_results.csv]'
    """
    stages = stage_names(yaml_text) if "stages" in keys else []
    if stages:
        *first, last = stages
        files = [f for name in first for f in (f"{name}/{script}", f"{name}/train_log.txt")]
        files += [f"{last}/{script}"] + [f"{last}/{f}" for f in RUN_FILES] + [f"{last}/test_results.csv"]
    elif re.search(r"^brain_class:\s*(!name:)?[\w.]*GroupStageBrain\b", yaml_text, flags=re.M) or "min_crop" in keys:
        files = [script, *RUN_FILES]
    else:
        files = [script, *RUN_FILES, "test_results.csv"]
    return f"file_exists=[{','.join(files)}]"


def sample_flags(keys, yaml_text=""):
    """``test_debug_flags`` for a separation recipe on the ``tests/samples`` data.

    Arguments
    ---------
    keys : collection of str
        Top-level keys of the recipe's yaml: a flag is given only for a key
        the yaml has (an override of a missing key is an error).
    yaml_text : str
        The exported yaml, for what a method needs beyond the manifests:
        every required other corpus folder and cross-domain test set point
        to the samples (their preparation off: ``prepare: null``; optional
        ones stay off); DIP's pretraining reads the samples as both its
        synthetic and its real branch; SADDEL trains and tests on its
        ``2sp+n`` scenario only (the samples' mixtures hold two speakers and
        noise), the other scenarios at weight 0; a stage that starts from
        another run (``init_from``; DIP+'s ``pretrained_frontend``) starts from scratch; a context-aware
        system uses the signal target (no SSL checkpoint exists in the
        samples); the blind SI-SNR estimator is given no separators (``--separators=[]``: under ``--debug`` it
        scores an untrained separator's outputs). Two flags keep a full-size
        model's debug run at 13.2 GiB peak or less (measured on every row,
        ``docs/upstream.md``), as upstream's own rows
        shrink what they test (``tests/recipes/DNS.csv``: ``--batch_size=1``;
        ``Aishell1Mix.csv``: a smaller SepFormer): SADDEL trains on batches of
        one (``--batch_size=1``; its scenario sampler fills every batch from
        the samples' one training row, and its recursive stages keep every
        step's graph: at the yaml's 4 or 5 items its ``saddel.yaml`` held
        21.1-21.5 GiB), and a recipe that trains on whole utterances crops them
        (``--limit_training_signal_len=True``, the yaml's own crop length; on
        the samples' 7 s utterances the baseline SepFormer was killed at
        20.8-22.7 GiB and Conv-TasNet at 10.6-13.4 GiB). The model sizes
        stay those of the yaml. With these every recipe runs on the samples: a target-speech
        recipe is enrolled with other utterances of the samples (``modules.tse.TSEBrain.debug_enrollment``), a
        DIP separator keeps a random frontend with a warning (``modules.dip.DIPBrain.check_frontend``).

    Returns
    -------
    str
        Space-separated flags; a value with spaces is single-quoted (upstream's
        runner passes the flags through a shell).

    Example
    -------
    >>> sample_flags({"data_folder", "train_data", "valid_data", "test_data", "skip_prep", "N_epochs"})
    '--data_folder=tests/samples/separation --train_data=tests/samples/annotation/separation_train.csv \
--valid_data=tests/samples/annotation/separation_dev.csv --test_data=tests/samples/annotation/separation_dev.csv \
--skip_prep=True --N_epochs=2'
    >>> sample_flags({"init_from", "target", "stages"}, "init_from: !ref <first_run>\\n")
    '--init_from=null --target=signal'
    >>> sample_flags({"limit_training_signal_len"}, "limit_training_signal_len: false  # whole utterances\\n")
    '--limit_training_signal_len=True'
    >>> sample_flags({"limit_training_signal_len"}, "limit_training_signal_len: True\\n")
    ''
    """
    wanted = [
        ("data_folder", SAMPLE_FOLDER),
        ("train_data", SAMPLE_TRAIN),
        ("valid_data", SAMPLE_DEV),
        ("test_data", SAMPLE_DEV),
        ("skip_prep", "True"),
        ("N_epochs", "2"),
        ("sample_rate", str(SAMPLE_RATE)),
    ]
    wanted += [(f"synthetic_{split}", path) for split, path in (("train", SAMPLE_TRAIN), ("valid", SAMPLE_DEV))]
    wanted += [(f"real_{split}", path) for split, path in (("train", SAMPLE_TRAIN), ("valid", SAMPLE_DEV))]
    pending = _placeholders(yaml_text)
    wanted += [(key, SAMPLE_FOLDER) for key in DOMAIN_FOLDERS if key in pending]  # optional ones stay off
    sets = _extra_test_set_names(yaml_text)
    if sets:
        spec = f"manifest: {SAMPLE_DEV}, data_folder: {SAMPLE_FOLDER}, prepare: null"
        by_scenario = set(re.findall(r"^ {4}([\w.+-]+):[^\n]*\n {8}manifests:", yaml_text, flags=re.M))
        entries = [f"{n}: {{{spec}{', manifests: null' if n in by_scenario else ''}}}" for n in sets]
        wanted.append(("extra_test_sets", "{" + ", ".join(entries) + "}"))  # the samples' manifest, unscenarioed
    if "scenario_manifests" in keys:
        own_root = re.search(r"^ {4}2sp\+n:[^\n]*\n(?: {8}[^\n]*\n)*? {8}data_folder:", yaml_text, flags=re.M)
        root = f", data_folder: {SAMPLE_FOLDER}" if own_root else ""  # a test set written elsewhere names its root
        paths = f"{{train: {SAMPLE_TRAIN}, valid: {SAMPLE_DEV}, test: {SAMPLE_DEV}{root}}}"
        weights = ", ".join(f"{s}: {int(s == '2sp+n')}" for s in SCENARIOS)
        wanted += [
            ("scenario_manifests", f"{{2sp+n: {paths}}}"),
            ("scenario_weights", f"{{{weights}}}"),
            ("test_scenarios", "[2sp+n]"),
            ("mixing_scenarios", "[]"),  # 2sp+n from the samples' manifest, not mixed from a corpus's sources
            ("batch_size", "1"),  # batches of the one training row, one graph per recursion step (docstring)
        ]
    if re.search(r"^limit_training_signal_len:\s*(?i:false|no|off)\b", yaml_text, flags=re.M):
        wanted.append(("limit_training_signal_len", "True"))  # not whole 7 s utterances (docstring)
    if re.search(r"^init_from:\s*(?!null\b)\S", yaml_text, flags=re.M):
        wanted.append(("init_from", "null"))  # a stage that starts from another run starts from scratch
    if "min_crop" in keys:
        wanted.append(("min_crop", "0.5"))  # DIP pretraining leaves out mixtures shorter (the samples: 1 s)
        if "pretrained_frontend" in pending:
            wanted.append(("pretrained_frontend", "null"))  # DIP+ continues the pretraining of a random frontend
    if "stages" in keys or "ssl_checkpoint" in keys:
        wanted.append(("target", "signal"))  # a group stage without an SSL teacher
    if "separators" in pending:
        wanted.append(("separators", "[]"))  # the estimator: an untrained separator under --debug
    flags = []
    for key, value in wanted:
        if key in keys:
            flags.append(f"--{key}='{value}'" if " " in value else f"--{key}={value}")
    return " ".join(flags)
