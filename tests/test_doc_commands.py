"""Every documented shell command runs: README.md, recipes/*/*/README.md and docs/*.md.

Each fenced ``bash`` block is read (backslash continuations joined, ``# comments``
dropped), identical commands are run once, and each command runs as written with

* ``<... root>`` placeholders replaced by miniature corpora (``data_prep.mini``),
  ``mini_data`` (the smoke runs' folder) by a temporary folder;
* the tiny overrides appended to recipe runs (``--overrides_file=hparams/tiny.yaml``,
  SpeechBrain's ``--debug``: 2 batches, 2 epochs) and small sizes to ``data_prep.mini``.

A command that cannot run here is listed in :data:`UNRUNNABLE` with the reason; a new
documented command that has a placeholder this test cannot fill, or that matches no rule,
fails :func:`test_every_command_is_runnable_or_listed`.
"""

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted(REPO.glob("recipes/*/*/README.md")), *sorted(REPO.glob("docs/*.md"))]

#: Commands (regular expressions, matched against the start of the command) that cannot run here.
UNRUNNABLE = {
    r"pip install ": "installs from PyPI (network); .ci/run runs it in a fresh environment",
    r"python -m pytest": "the test suite itself (this test is part of it)",
    r"torchrun ": "several processes; tests/test_ddp.py runs the two-process gloo variant",
    r"python -m modules\.upstream check ": "runs upstream's recipe test on every exported yaml (minutes per "
    "recipe); tests/test_upstream.py checks exports against the same rules without the recipe runs",
    r".*<(trained run|DIP run|baseline run|SI-SNR estimator folder|trained run or exported model)>": "needs a "
    "trained run; the inference, export, results and REAL-M tests train tiny runs and run these entry points",
    r".*<hubert[^>]*\.pth>|.*--ssl_checkpoint": "needs a HuBERT checkpoint file; tests/test_context_aware.py builds a "
    "tiny one and runs both stages",
    r"python recipes/LibriMix/context_aware/train.py hparams/(convtasnet|dprnn|sepformer|mossformer|group_[a-z]+)"
    r"\.yaml": "the group stage downloads its SSL teacher by hub id (--ssl_hub); tests/test_context_aware.py runs it "
    "with a tiny local one",
    r"python recipes/LibriMix/dip/train.py hparams/(convtasnet|bilstm)_(wav2vec2|hubert|unispeech_sat|wavlm)[a-z_]*"
    r"\.yaml": "the comparison frontends download a pretrained SSL model by hub id; tests/test_hf_ssl.py runs one "
    "(Conv-TasNet and Bi-LSTM) with a tiny local model",
    r".*--init_from=<": "needs the source-domain run it fine-tunes; tests/test_dpccn.py chains the two",
    r".*--pretrained_frontend=<": "needs a pretraining run; tests/test_dip.py chains pretraining and separation",
    r"python -m modules\.results ": "needs run folders; tests/test_results.py",
    r"python -m modules\.reproduce (run (?!.*--dry_run)|collect )": "trains a table's runs (or reads them) in the "
    "repository's results/; tests/test_reproduce.py runs `run --tiny` and `collect` of NASS Table 4 in a tmp folder",
    r"python -m modules\.(export|inference|evaluation)": "needs a trained run; tests/test_export.py, "
    "tests/test_inference.py, tests/test_realm_eval.py",
    r"python -m data_prep\.(wham|librimix|vox2mix|lrs2mix|aishell2mix|realm|wsj0mix|noise_corpora|saddel_conditions|"
    r"dpccn_reverb) "
    r".*<": "the prep of a real corpus; the recipe runs below run the same prep on the mini corpora",
    r"python recipes/REALM/sisnr_estimator/": "needs trained separators (--separators); "
    "tests/test_realm_eval.py trains the estimator on tiny runs",
}

#: Placeholders -> mini corpus key (see :func:`corpora`).
PLACEHOLDERS = {
    "<WHAM root>": "wham",
    "<LibriMix root>": "librimix",
    "<Aishell2Mix root>": "aishell2mix",
    "<Aishell2Mix lists>": "aishell2mix_lst",
    "<Vox2Mix root>": "vox2mix",
    "<LRS2Mix root>": "lrs2mix",
    "<REAL-M root>": "realm",
    "<WSJ0-mix root>": "wsj0mix",
    "<MUSAN root>": "musan",
    "<LibriSpeech root>": "librispeech",
    "<100 Nonspeech root>": "nonspeech",
    "<set folder>": "reverb_set",
}
TINY_RUN = ["--overrides_file=hparams/tiny.yaml", "--device=cpu", "--noprogressbar", "--debug"]
TINY_MINI = ["--n_train", "3", "--n_valid", "3", "--n_test", "4"]  # SADDEL's sampler: 3 speakers per split


def doc_commands(text):
    """Shell commands of the fenced ``bash`` blocks of a Markdown text.

    Example
    -------
    >>> doc_commands("```bash\\n# a comment\\npython a.py \\\\\\n  --x=1   # why\\n```\\n```\\nnot bash\\n```")
    ['python a.py --x=1']
    """
    commands, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if not inside or not line.strip() or line.lstrip().startswith("#"):
            continue
        code = re.sub(r"\s+#\s.*$", "", line.strip())
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        commands.append((pending + code).strip())
        pending = ""
    return commands


def all_commands():
    """Every documented command once, with the first file that documents it."""
    seen = {}
    for doc in DOCS:
        for command in doc_commands(doc.read_text(encoding="utf-8")):
            seen.setdefault(command, doc.relative_to(REPO))
    return seen


def unrunnable_reason(command):
    for pattern, reason in UNRUNNABLE.items():
        if re.match(pattern, command):
            return reason
    return None


def runnable():
    return {c: doc for c, doc in all_commands().items() if unrunnable_reason(c) is None}


def test_every_command_is_runnable_or_listed():
    """A command this test cannot fill in or run must be listed in UNRUNNABLE with its reason."""
    problems = []
    for command, doc in runnable().items():
        rest = command
        for placeholder in PLACEHOLDERS:
            rest = rest.replace(placeholder, "")
        if re.search(r"<[^>]+>", rest):
            problems.append(f"{doc}: {command} (a placeholder this test cannot fill)")
        for part in re.split(r"&&|;", command):
            argv = shlex.split(part)
            if argv[:1] != ["python"] or not (argv[1] == "-m" or argv[1].startswith("recipes/")):
                problems.append(f"{doc}: {part.strip()} (no rule to run it)")
    assert not problems, "documented commands that neither run here nor are listed:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """One mini copy of each dataset, a few mixtures each."""
    from data_prep import mini

    root = tmp_path_factory.mktemp("doc_corpora")
    small = dict(n_train=3, n_valid=1, n_test=2)
    aishell = mini.make_mini_aishell2mix(root, seed=0, **small)
    return {
        # SADDEL's scenario sampler needs 3 distinct speakers in each split
        "wham": mini.make_mini_wham(
            root, seed=0, sample_rates=(8000,), modes=("min",), **{**small, "n_valid": 3, "n_test": 4}
        ),
        "librimix": mini.make_mini_librimix(
            root, seed=0, sample_rates=(8000, 16000), modes=("min",), enrollment=True, **small
        ),
        "aishell2mix": aishell,
        "aishell2mix_lst": aishell / "lst",
        "vox2mix": mini.make_mini_vox2mix(root, seed=0, **small) / "VoxCeleb2-2Mix",
        "lrs2mix": mini.make_mini_lrs2mix(root, seed=0, **small),
        "realm": mini.make_mini_realm(root, seed=0, n_train=3, n_valid=1, n_test=2),
        # SADDEL's own corpora: WSJ0-mix (3 speakers per split), MUSAN (10 files: a test file after the 80/10/10
        # split), 100 Nonspeech, LibriSpeech (test-clean utterances of at least 6 s)
        "wsj0mix": mini.make_mini_wsj0mix(
            root, seed=0, sample_rates=(8000,), modes=("min",), n_train=3, n_valid=3, n_test=4
        ),
        "musan": mini.make_mini_musan(root, seed=0, n_train=8, n_valid=1, n_test=1),
        "nonspeech": mini.make_mini_nonspeech(root, seed=0, n_train=1, n_valid=1, n_test=2),
        "librispeech": mini.make_mini_librispeech(root, seed=0, n_train=6, n_valid=6, n_test=12),
        "reverb_set": root / "reverb_set",  # the DPCCN Table 2 set, simulated by the first recipe run
        "root": root,
    }


def prepared(command, corpora, work, shared):
    """The argv lists of one documented command, placeholders filled and tiny options appended."""
    for placeholder, key in PLACEHOLDERS.items():
        command = command.replace(placeholder, str(corpora[key]))
    runs = []
    for i, raw in enumerate(re.split(r"&&", command)):
        part = raw.strip()
        argv = [a.replace("mini_data", str(shared / "mini_data")) if "mini_data" in a else a for a in shlex.split(part)]
        argv[0] = sys.executable
        if argv[1].startswith("recipes/"):
            if str(corpora["aishell2mix"]) in part:  # the mini holds Aishell-1 and the lists, not the dump
                argv.append(f"--aishell2mix_cfg_folder={corpora['aishell2mix_lst']}")
            if re.search(r"dpccn/train.py hparams/(sdpccn|td_speakerbeam)", part):
                # a few mini mixtures have no second utterance of a speaker to draw an enrollment from
                # (the full corpora have): the mini corpora's enrollment lists, as tests/test_dpccn.py
                n_spks = 3 if "--num_spks=3" in part else 2
                argv += [f"--aux_list={corpora['librimix'] / 'lists' / f'libri{n_spks}mix'}",
                         f"--aishell2mix_aux_folder={corpora['aishell2mix_lst']}"]  # fmt: skip
            if "recipes/WSJ0Mix/" in part:  # the test conditions: as many mixtures as the mini corpora hold
                argv.append("--n_test=3")
            if "recipes/ReverbLibriSpeech/" in part and not any(a.startswith("--reverb_sizes") for a in argv):
                argv += ["--reverb_sizes=[2,1,2]", "--training_signal_len=16000"]  # a few mixtures, 1 s crops
            argv = [a for a in argv if not a.startswith("--output_folder=")]  # outputs in the test's folder
            given = {a.split("=", 1)[0] for a in argv}  # an option the command gives is kept as documented
            argv += [a for a in TINY_RUN if a.split("=", 1)[0] not in given] + [f"--output_folder={work / f'out{i}'}"]
        elif argv[1:3] == ["-m", "data_prep.mini"]:
            argv += TINY_MINI
        elif argv[1:3] == ["-m", "modules.upstream"] and "export" in argv:
            argv = [a if a != "upstream_export" else str(work / "upstream_export") for a in argv]
        runs.append(argv)
    return runs


def _run(argv):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=env, check=False)


@pytest.mark.slow
def test_documented_commands_run(corpora, tmp_path):
    """All runnable documented commands, two at a time (one thread each), each in its own folder."""
    commands = list(runnable().items())
    assert len(commands) > 20  # the recipe READMEs' commands are found
    if os.environ.get("DOC_COMMANDS_MATCH"):  # a subset while editing: DOC_COMMANDS_MATCH=nass/ pytest ...
        keep = os.environ["DOC_COMMANDS_MATCH"]
        commands = [(c, d) for c, d in commands if keep in c or c.startswith("python -m data_prep.mini")]
    # the smoke runs' "python -m data_prep.mini --out mini_data" first: later commands read mini_data
    commands.sort(key=lambda item: not item[0].startswith("python -m data_prep.mini"))
    n_setup = sum(c.startswith("python -m data_prep.mini") for c, _ in commands)

    def one(item):
        i, (command, doc) = item
        work = tmp_path / f"c{i:03d}"
        work.mkdir()
        for argv in prepared(command, corpora, work, tmp_path):
            proc = _run(argv)
            if proc.returncode != 0:
                tail = (proc.stdout[-1500:] + proc.stderr[-2500:]).strip()
                return f"{doc}: {command}\n  ran: {shlex.join(argv)}\n  exit {proc.returncode}:\n{tail}"
        return None

    items = list(enumerate(commands))
    failures = [f for f in map(one, items[:n_setup]) if f]
    with ThreadPoolExecutor(2) as pool:
        failures += [f for f in pool.map(one, items[n_setup:]) if f]
    assert not failures, f"{len(failures)} of {len(commands)} documented commands fail:\n\n" + "\n\n".join(failures)
