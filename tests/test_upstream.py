"""Contributing upstream (modules/upstream): export, our checks of SpeechBrain's rules, READMEs, core patches.

The session fixture exports the four committed recipes (WHAM! and LibriMix,
baseline and NASS) once; the tests check the export against upstream's rules
(statically for all, with one ``--debug`` run of an exported recipe with only
its folder on ``PYTHONPATH``), that a deliberately broken export fails the
check, that the resolved yamls load to the same objects as ours, that our
recipe READMEs' commands parse, and, when the SpeechBrain 1.1.2 sdist is at
hand, that the core patches apply to it and their tests pass there.
"""

import ast
import importlib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from modules.upstream.exporter import export_recipe
from modules.upstream.rules import CODESPELL_VERSION, _load_rule, check_tree, codespell_problems, docstring_problems
from modules.upstream.samples import make_samples, sample_flags

REPO = Path(__file__).resolve().parents[1]
RECIPES = ["recipes/WHAM/baseline", "recipes/WHAM/nass", "recipes/LibriMix/baseline", "recipes/LibriMix/nass"]
SDIST = Path(os.environ.get("SPEECHBRAIN_SDIST", Path.home() / ".cache/robust-sep/speechbrain-1.1.2.tar.gz"))
NASS_CONVTASNET = "recipes/WHAMandWHAMR/separation/nass/hparams/convtasnet_nass.yaml"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The four committed recipes exported into one upstream-shaped root (no yaml validation: tested apart)."""
    root = tmp_path_factory.mktemp("upstream_export")
    results = {recipe: export_recipe(REPO / recipe, root, validate=False) for recipe in RECIPES}
    return root, results


def _failures(findings):
    return [f"{f.rule} {f.subject}: {f.detail}" for f in findings if f.status == "fail"]


def test_export_layout(exported):
    root, results = exported
    folder = root / "recipes" / "WHAMandWHAMR" / "separation" / "nass"
    assert results["recipes/WHAM/nass"].folder == folder
    names = {p.name for p in folder.iterdir()}
    assert {"train.py", "wham_nass_prepare.py", "README.md", "extra_requirements.txt", "hparams"} <= names
    assert sorted(p.name for p in (folder / "hparams").iterdir()) == [
        "convtasnet_nass.yaml",
        "dprnn_nass.yaml",
        "sepformer_nass.yaml",
    ]
    train = (folder / "train.py").read_text()
    tree = ast.parse(train)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"SeparationBrain", "NASSBrain"} <= classes  # the Brains are in the script upstream's check reads
    assert "modules" not in train.split('"""', 2)[2].split("\n\n")[0]  # no import of ours
    rows = results["recipes/WHAM/nass"].rows
    assert [r["Hparam_file"].rsplit("/", 1)[1] for r in rows] == sorted(
        p.name for p in (REPO / "recipes/WHAM/nass/hparams").glob("*.yaml")
    )
    assert all(r["test_debug_flags"] and "--skip_prep=True" in r["test_debug_flags"] for r in rows)
    assert (folder / "extra_requirements.txt").read_text().split() == ["matplotlib>=3.7", "pyloudnorm>=0.1.1"]


def test_export_passes_upstream_rules(exported):
    """Every static rule passes on every exported yaml; the only unmet ones are Result_url and performance."""
    root, _ = exported
    findings = check_tree(root, run=False)
    assert not _failures(findings)
    unmet = {f.rule for f in findings if f.status == "unmet"}
    assert unmet == {"readme-links", "performance"}
    rules = {f.rule for f in findings}
    assert {"yaml-variables-read", "self-contained", "ruff", "codespell", "docstrings", "yamllint"} <= rules
    assert "mandatory-files" in rules
    for f in findings:
        if f.rule == "readme-links":
            assert "Result_url" in f.detail  # stated, with its reason
    readme = (root / "recipes/WHAMandWHAMR/separation/nass/README.md").read_text()
    assert "Result_url" in readme


#: The method recipes: Brains named by the yaml (brain_class) or the stage, dataset builders given by train.py, inputs
#: beyond a manifest (scenarios, cross-domain sets, stages, pretraining branches).
METHOD_RECIPES = [
    "recipes/LibriMix/saddel",
    "recipes/LibriMix/dpccn",
    "recipes/Aishell2Mix/dpccn",
    "recipes/LibriMix/context_aware",
    "recipes/LibriMix/dip",
    "recipes/REALM/sisnr_estimator",
    "recipes/Vox2Mix/unsupervised",
]


@pytest.fixture(scope="module")
def method_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("method_export")
    for recipe in METHOD_RECIPES:
        export_recipe(REPO / recipe, root, validate=False)
    return root


def test_method_recipes_export_with_every_yaml_variable_read_in_train_py(method_export):
    """Every static rule passes on every yaml of the method recipes, the variable rule included.

    Their Brains (named by the yaml's ``brain_class``, or by the stage)
    and their dataset builders (given by ``train.py``) move into the
    exported ``train.py``, so upstream's line-based check sees every read.
    """
    findings = check_tree(method_export, run=False)
    assert not _failures(findings)
    passed = {f.subject for f in findings if f.rule == "yaml-variables-read" and f.status == "pass"}
    assert len(passed) == sum(len(list((REPO / r / "hparams").glob("*.yaml"))) for r in METHOD_RECIPES)
    # upstream's yaml load test, all rows in one process: each loads, the group stages too (their SSL teacher by
    # hub id; offline, a tiny random stand-in of the same type, which a real run refuses)
    loads = {f.subject: f.status for f in findings if f.rule == "load-yaml"}
    assert len(loads) == len(passed)
    assert {s: status for s, status in loads.items() if status != "pass"} == {}
    # other corpora and first-stage runs are upstream-style stand-ins, not a second !PLACEHOLDER
    dpccn = (method_export / "recipes/LibriMix/separation/dpccn/hparams/dpccn.yaml").read_text()
    assert "aishell2mix_folder: /yourpath/aishell2mix" in dpccn and dpccn.count("!PLACEHOLDER") == 1


def test_load_test_sees_a_module_two_recipes_name_alike(tmp_path):
    """Two recipes whose yamls name a local module of the same name: upstream's one-process load test imports the
    first and fails the second (why each export's preparation module is named after its dataset and method)."""
    rows = []
    for recipe, function in (("A", "prepare_a"), ("B", "prepare_b")):
        folder = tmp_path / "recipes" / recipe / "separation" / "m"
        (folder / "hparams").mkdir(parents=True)
        (folder / "train.py").write_text("")
        (folder / "prepare_data.py").write_text(f"def {function}():\n    return 1\n")
        (folder / "hparams" / "x.yaml").write_text(
            f"data_folder: !PLACEHOLDER\noutput_folder: out\nprep: !name:prepare_data.{function}\n"
        )
        rows.append({"Script_file": f"{folder.relative_to(tmp_path)}/train.py",
                     "Hparam_file": f"{folder.relative_to(tmp_path)}/hparams/x.yaml"})  # fmt: skip
    findings = []
    _load_rule(tmp_path, rows, findings, timeout=120)
    assert [f.status for f in findings] == ["pass", "fail"]
    assert "prepare_data.prepare_b" in findings[1].detail


#: One yaml per kind of method input, run as upstream's recipe test runs it.
METHOD_DEBUG_ROWS = [
    "recipes/LibriMix/separation/saddel/hparams/saddel.yaml",  # scenarios (2sp+n from the samples)
    "recipes/LibriMix/separation/dpccn/hparams/dpccn.yaml",  # a required cross-domain test set
    "recipes/LibriMix/separation/context_aware/hparams/convtasnet.yaml",  # two stages in their own folders
    "recipes/LibriMix/separation/dip/hparams/mpc.yaml",  # pretraining on a synthetic and a real branch
    "recipes/Vox2Mix/separation/unsupervised/hparams/mixcycle.yaml",  # training on mixtures only (pairs of them)
]
#: One yaml per --debug fallback (upstream's samples lack what a real run needs).
FALLBACK_DEBUG_ROWS = {
    # target speech extraction: no enrollment column, enrolled with another utterance of the samples
    "recipes/LibriMix/separation/dpccn/hparams/sdpccn.yaml": "--debug run: enrollments are other utterances",
    # a DIP separator: its pretraining stage, then the separator on a frontend without pretrained weights (random)
    "recipes/LibriMix/separation/dip/hparams/convtasnet_dip.yaml": "the separator is trained on a random frontend",
    # Mixture-Remix: the samples' IDs name no LibriSpeech speaker (speaker rule 'mixture')
    "recipes/Aishell2Mix/separation/dpccn/hparams/sdpccn_remix.yaml": "Mixture-Remix",
    # the blind SI-SNR estimator: no trained separators, the samples' mixtures through an untrained Conv-TasNet
    "recipes/REAL-M/separation/sisnr_estimator/hparams/estimator.yaml": "untrained Conv-TasNet",
}


def test_method_recipes_run_on_upstream_samples_with_only_their_folder(method_export, tmp_path):
    """upstream's recipe test on the strict samples (s3 column, longer noise): the method rows pass, and one row per
    --debug fallback (TSE without an enrollment column, a DIP separator without pretrained weights, Mixture-Remix
    on IDs without speakers, the SI-SNR estimator without trained separators) runs and logs its fallback."""
    rows = set(METHOD_DEBUG_ROWS) | set(FALLBACK_DEBUG_ROWS)
    findings = check_tree(
        method_export, run=True, strict_samples=True, small=True, only=rows, keep_outputs=str(tmp_path), load=False
    )
    runs = {f.subject: f for f in findings if f.rule == "debug-run"}
    checks = {f.subject: f for f in findings if f.rule == "debug-checks"}
    for row in rows:
        assert runs[row].status == "pass", (row, runs[row].detail)
        assert checks[row].status == "pass", (row, checks[row].detail)
    for row, logged in FALLBACK_DEBUG_ROWS.items():
        logs = "".join(p.read_text() for p in Path(runs[row].detail).rglob("log.txt"))
        assert logged in logs, row
    for readme in ("LibriMix/separation/dpccn", "REAL-M/separation/sisnr_estimator"):
        text = (method_export / "recipes" / readme / "README.md").read_text()
        assert "the recipe test on tests/samples cannot run" not in text, readme  # no longer stated as unmet


def test_estimator_debug_flags_give_no_separators():
    """The blind SI-SNR estimator's row gives ``--separators=[]`` (its --debug fallback, an untrained separator);
    a real yaml's list of separators is not overridden, nor is a yaml without the key given one."""
    from modules.upstream.exporter import dummy_paths

    estimator = dummy_paths((REPO / "recipes/REALM/sisnr_estimator/hparams/estimator.yaml").read_text())
    assert "separators: [/yourpath/separators]" in estimator
    assert "--separators=[]" in sample_flags({"separators", "data_folder"}, estimator).split()
    assert "--separators" not in sample_flags({"separators", "data_folder"}, "separators: [run1, run2]\n")
    assert "--separators" not in sample_flags({"data_folder"}, estimator)


def test_debug_flags_shrink_memory_of_saddel_and_whole_utterance_rows_only(exported, method_export):
    """SADDEL rows train on batches of one and a recipe that trains on whole utterances crops them under upstream's
    recipe test (as the yamls give them they were killed at 10.6-22.7 GiB); model sizes and other rows unchanged."""
    import csv

    rows = {}
    for root in (exported[0], method_export):
        for table in (root / "tests" / "recipes").glob("*.csv"):
            with open(table, newline="") as f:
                rows.update({r["Hparam_file"]: r["test_debug_flags"].split() for r in csv.DictReader(f)})
    crops = ("--limit_training_signal_len", "--training_signal_len", "--batch_size")
    for name, flags in rows.items():
        given = {f.split("=")[0]: f.split("=", 1)[1] for f in flags if f.split("=")[0] in crops}
        if "/saddel/" in name:
            assert given == {"--batch_size": "1"}, name
        elif "/baseline/hparams/" in name or "/dip/hparams/bilstm_" in name or name.endswith("/estimator.yaml"):
            assert given == {"--limit_training_signal_len": "True"}, name  # their yamls train on whole utterances
        else:
            assert given == {}, name
        assert not any(f.startswith(("--N_encoder_out", "--out_channels", "--num_layers")) for f in flags), name
    assert sum("/saddel/" in n for n in rows) == 5 and sum("/baseline/hparams/" in n for n in rows) == 6
    assert any(n.endswith("/sisnr_estimator/hparams/estimator.yaml") for n in rows)
    assert sum("/dip/hparams/bilstm_" in n for n in rows) == 8


def test_debug_run_with_only_the_recipe_folder(exported, tmp_path):
    """upstream's recipe test: PYTHONPATH=<recipe folder>, --debug, tests/samples-style data, our packages refused."""
    root, _ = exported
    findings = check_tree(root, run=True, strict_samples=False, small=True, only={NASS_CONVTASNET})
    by_rule = {f.rule: f for f in findings if f.subject == NASS_CONVTASNET}
    assert by_rule["debug-run"].status == "pass", by_rule["debug-run"].detail
    assert by_rule["debug-checks"].status == "pass", by_rule["debug-checks"].detail


def test_broken_export_fails_the_check(exported, tmp_path):
    """A yaml variable no code reads, a missing README, an import of our package: each fails its rule."""
    root, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(root / "recipes" / "WHAMandWHAMR", broken / "recipes" / "WHAMandWHAMR")
    (broken / "tests" / "recipes").mkdir(parents=True)
    shutil.copy(root / "tests/recipes/WHAMandWHAMR.csv", broken / "tests/recipes/WHAMandWHAMR.csv")
    folder = broken / "recipes/WHAMandWHAMR/separation/nass"
    with open(folder / "hparams/convtasnet_nass.yaml", "a") as f:
        f.write("unused_knob: 3  # read by no code\n")
    (folder / "README.md").unlink()
    with open(folder / "separator.py", "a") as f:
        f.write("\n\ndef helper():\n    from modules.losses import apply_perm\n\n    return apply_perm\n")
    fails = _failures(check_tree(broken, run=False))
    assert any(f.startswith(f"yaml-variables-read {NASS_CONVTASNET}") and "unused_knob" in f for f in fails)
    assert any(f.startswith("mandatory-files") and "Readme_file" in f for f in fails)
    assert any(f.startswith("self-contained") and "modules.losses" in f for f in fails)
    assert any(f.startswith("docstrings") and "helper" in f for f in fails)


@pytest.mark.parametrize(
    ("recipe", "yaml"),
    [("recipes/WHAM/nass", "sepformer_nass.yaml"), ("recipes/LibriMix/baseline", "dprnn.yaml")],
)
def test_resolved_yaml_loads_to_the_same_objects(recipe, yaml, tmp_path):
    from modules.upstream.exporter import _tiny_overrides
    from modules.upstream.yamlflat import check_equivalent, flatten_yaml

    path = REPO / recipe / "hparams" / yaml
    text, included, _ = flatten_yaml(path)
    assert {p.name for p in included} >= {"training.yaml"}
    assert not [line for line in text.splitlines() if "!include" in line.split("#")[0]]
    assert check_equivalent(path, text, _tiny_overrides(text, tmp_path)) == []
    changed = text.replace("lr_patience: 2", "lr_patience: 3")
    assert check_equivalent(path, changed, _tiny_overrides(changed, tmp_path))  # a difference is found


def test_upstream_style_samples_load_as_a_two_speaker_recipe_reads_them():
    """Upstream's tests/samples rows: an s3 column for two-speaker recipes and a noise longer than the mixture.

    A recipe with ``num_spks: 2`` reads the first two ``s<k>`` columns only, and
    the noise is cut to the mixture it belongs to, so the exported recipes run
    on upstream's own samples (the strict samples reproduce both quirks).
    """
    import tempfile

    from modules.data import build_datasets, collate

    root = Path(tempfile.mkdtemp())
    paths = make_samples(root, strict=True)
    hparams = {
        "train_data": str(root / paths["train_csv"]),
        "valid_data": str(root / paths["dev_csv"]),
        "test_data": str(root / paths["dev_csv"]),
        "data_folder": str(root / paths["data_folder"]),
        "num_spks": 2,
        "dataloader_opts": {},
    }
    train, _, _ = build_datasets(hparams)
    item = train[0]
    assert "s3_sig" not in item and item["noise_sig"].shape[0] > item["mix_sig"].shape[0]  # as upstream's samples
    batch = collate([item])
    assert batch.sources.shape[-1] == 2
    assert batch.noise.shape == batch.mix.shape


def test_spaced_csv_headers_load(tmp_path):
    """Headers written with a space after each comma (upstream's tests/samples style) are read."""
    from modules.data import collate, load_manifest

    paths = make_samples(tmp_path, strict=False)
    data = load_manifest(tmp_path / paths["train_csv"], tmp_path / paths["data_folder"])
    item = data[0]
    assert sorted(item) == ["id", "mix_sig", "noise_sig", "s1_sig", "s2_sig"]
    batch = collate([item])
    assert batch.sources.shape[-1] == 2 and batch.noise.shape == batch.mix.shape


def _parse_command(command):
    """Parses a README command as the recipe (or module) would; returns the overrides."""
    from modules.recipe import parse_arguments
    from modules.upstream.rules import _run_options
    from modules.upstream.yamlflat import flatten_yaml, split_entries

    argv = shlex.split(command)
    assert argv[0] == "python"
    if argv[1] == "-m":
        module = importlib.import_module(argv[2])
        if not hasattr(module, "build_parser"):  # a package run as python -m
            module = importlib.import_module(f"{argv[2]}.__main__")
        module.build_parser().parse_args(argv[3:])
        return {}
    script = REPO / argv[1]
    assert script.is_file(), command
    hparams_file, _run_opts, overrides = parse_arguments(argv[2:], str(script.parent))
    text, _, _ = flatten_yaml(hparams_file)
    keys = {e.key for e in split_entries(text) if e.key}
    unknown = set(overrides) - keys - _run_options()
    assert not unknown, f"{command}: {sorted(unknown)} are not keys of {hparams_file}"
    return overrides


ALL_RECIPES = sorted(str(p.parent.relative_to(REPO)) for p in REPO.glob("recipes/*/*/README.md"))


@pytest.mark.parametrize("recipe", ALL_RECIPES)
def test_recipe_readme_commands_parse(recipe):
    from modules.upstream.readme import readme_commands

    text = (REPO / recipe / "README.md").read_text()
    commands = readme_commands(text)
    runs = [c for c in commands if c.startswith(f"python {recipe}/")]
    assert len(runs) >= len(list((REPO / recipe / "hparams").glob("*.yaml")))  # one per yaml at least
    for command in commands:
        if command.startswith("python"):
            _parse_command(command)


def test_readme_command_with_a_misspelt_key_fails():
    with pytest.raises(AssertionError, match="pcl_wieght"):
        _parse_command("python recipes/WHAM/nass/train.py hparams/sepformer_nass.yaml --data_folder=x --pcl_wieght=1")


def test_accessor_rewrite_is_the_same_read():
    """The export spells ``self._hp("k", d)`` as ``getattr(self.hparams, "k", d)``: same value, hparams or not."""
    from modules.brain import SeparationBrain

    separator = torch.nn.Linear(1, 1)
    for hparams in ({"a": 1}, {}):  # SeparationBrain needs hparams (its constructor reads them)
        brain = SeparationBrain({"separator": separator}, hparams=hparams, run_opts={"device": "cpu"})
        for key in ("a", "b"):
            assert brain._hp(key, 7) == getattr(brain.hparams, key, 7)
            assert brain._hp(key) == getattr(brain.hparams, key, None)


def test_upstream_core_sources_match_ours():
    """The upstream-shaped PIT loss and SDR give our modules' values and gradients."""
    from modules.losses import pit_si_snr_loss
    from modules.metrics import sdr
    from modules.upstream.core.bss_eval import sdr as upstream_sdr
    from modules.upstream.core.pit import pit_si_snr

    torch.manual_seed(0)
    source = torch.randn(3, 4000, 3, dtype=torch.float64)
    noisy = source[:, :, [2, 0, 1]] + 0.4 * torch.randn_like(source)
    ours_in, theirs_in = noisy.clone().requires_grad_(), noisy.clone().requires_grad_()
    ours_loss, ours_perm = pit_si_snr_loss(ours_in, source)
    theirs_loss, theirs_perm = pit_si_snr(source, theirs_in)
    assert torch.allclose(ours_loss, theirs_loss, atol=1e-10)
    assert torch.equal(ours_perm, theirs_perm)
    ours_loss.sum().backward()
    theirs_loss.sum().backward()
    assert torch.allclose(ours_in.grad, theirs_in.grad, atol=1e-12)
    refs = torch.randn(2, 3000, 2)
    est = refs + 0.3 * torch.randn_like(refs)
    assert torch.allclose(sdr(est, refs), upstream_sdr(est, refs), atol=1e-9)


def test_docstring_rule_on_our_committed_modules():
    """The docstring rule upstream applies to its library holds for the modules an export carries."""
    files = ["modules/brain.py", "modules/data/manifests.py", "modules/models/patch_sampler.py", "data_prep/wham.py"]
    files += ["data_prep/librimix.py", "modules/losses/si_snr.py", "modules/metrics.py", "modules/checkpoints.py"]
    assert {f: docstring_problems(REPO / f) for f in files if docstring_problems(REPO / f)} == {}


@pytest.mark.skipif(not SDIST.exists(), reason=f"SpeechBrain 1.1.2 sdist not found ({SDIST}; set SPEECHBRAIN_SDIST)")
def test_ruff_settings_are_speechbrains():
    import tomllib

    with tarfile.open(SDIST) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/pyproject.toml") and m.name.count("/") == 1)
        theirs = tomllib.loads(tar.extractfile(member).read().decode())["tool"]["ruff"]
    ours = tomllib.loads((REPO / "modules/upstream/core/ruff.toml").read_text())
    assert ours["line-length"] == theirs["line-length"] and ours["target-version"] == theirs["target-version"]
    assert ours["lint"]["select"] == theirs["lint"]["select"]
    assert ours["lint"]["ignore"] == theirs["lint"]["ignore"]
    assert ours["lint"]["isort"] == theirs["lint"]["isort"] and ours["format"] == theirs["format"]


@pytest.mark.skipif(not SDIST.exists(), reason=f"SpeechBrain 1.1.2 sdist not found ({SDIST}; set SPEECHBRAIN_SDIST)")
def test_core_patches_apply_to_the_sdist_and_their_tests_pass(tmp_path):
    """The three patches apply in order to the unpacked sdist; their unit tests pass on the patched copy."""
    from modules.upstream.patches import PATCHES, build_patches

    patches = build_patches(SDIST, tmp_path / "patches")
    committed = REPO / "modules/upstream/core/patches"
    for patch in patches:  # the committed copies are these
        assert (committed / patch.name).read_text() == patch.read_text(), f"regenerate {patch.name}"
    with tarfile.open(SDIST) as tar:
        tar.extractall(tmp_path, filter="data")
        top = tmp_path / tar.getnames()[0].split("/")[0]
    for patch in patches:
        proc = subprocess.run(["git", "apply", str(patch)], cwd=top, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    tests = [t for p in PATCHES for t in p.tests]
    env = dict(os.environ, PYTHONPATH=str(top))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(top), *tests]
    proc = subprocess.run(cmd, cwd=top, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_codespell_with_upstreams_settings(tmp_path):
    """codespell at upstream's pin flags a misspelling; a word upstream's dictionary ignores (``fo``) and a line
    marked ``# codespell:ignore <word>`` (upstream's inline mechanism) pass; the DIP losses (``NCE``) are clean."""
    from importlib.metadata import version

    assert version("codespell") == CODESPELL_VERSION  # requirements.txt pins it
    bad = tmp_path / "bad.py"
    bad.write_text('"""Teh NCE loss."""\n\nwith open("x") as fo:\n    nce = 1  # codespell:ignore nce\n')
    found = codespell_problems([bad.name], cwd=tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == ["Teh ==> The", "NCE ==> ONCE, NICE"]
    assert codespell_problems([REPO / "modules/losses/dip.py", REPO / "modules/checkpoints.py"]) == []


def test_crosscheck_run_row_reports_the_peak_rss_of_a_killed_recipe(tmp_path):
    """tools/upstream_crosscheck.py: a recipe the kernel kills is a failure with its peak resident set."""
    spec = importlib.util.spec_from_file_location("upstream_crosscheck", REPO / "tools" / "upstream_crosscheck.py")
    crosscheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crosscheck)
    upstream, root = tmp_path / "upstream", tmp_path / "export"
    (upstream / "tests" / "utils").mkdir(parents=True)
    for init in ("tests/__init__.py", "tests/utils/__init__.py"):
        (upstream / init).touch()
    # a stand-in for upstream's runner: its recipe (a shell child, as upstream's) touches ~200 MB, then is SIGKILLed
    recipe = tmp_path / "recipe.py"
    recipe.write_text(
        "import os, signal\nx = bytearray(200 * 2**20)\nx[::4096] = bytes(len(x[::4096]))\n"
        "x[::4096] = b'1' * len(x[::4096])\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    (upstream / "tests" / "utils" / "recipe_tests.py").write_text(
        "import subprocess, sys\n"
        "def run_recipe_tests(**kwargs):\n"
        f"    return subprocess.Popen([sys.executable + ' {recipe}'], shell=True).wait() == 0\n"
    )
    (root / "tests" / "recipes").mkdir(parents=True)
    hparam = "recipes/Toy/separation/toy/hparams/toy.yaml"
    (root / "tests" / "recipes" / "Toy.csv").write_text(f"Task,Dataset,Hparam_file\nSeparation,Toy,{hparam}\n")
    ok, _detail, _seconds, peak = crosscheck.run_row(upstream, root, {"Hparam_file": hparam}, timeout=60)
    assert not ok
    assert peak is not None and 0.19 < peak < 1.0, peak
    assert crosscheck.peak_rss_gib("noise\n@@MAXRSS_KB@@2097152\n") == 2.0
    assert crosscheck.peak_rss_gib("no marker") is None
