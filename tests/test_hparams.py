"""The recipe yamls are lint-clean and every top-level key is used."""

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from speechbrain.utils.run_opts import RunOptions

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted(REPO.glob("recipes/*/*/hparams/*.yaml")) + sorted(REPO.glob("hparams/**/*.yaml"))
CODE = "\n".join(p.read_text() for p in (REPO / "modules").rglob("*.py"))
#: How the code reads a hyperparameter: hparams.x, hp.x, ["x"], .get("x"), _hp("x"), getattr(..., "x")
READ = r"""(hparams\.|hp\.|\[["']|\.get\(["']|_hp\(["']|getattr\(\w+(\.hparams)?, ["'])"""
SHARED_BLOCK = REPO / "hparams" / "training.yaml"
RUN_OPTIONS = {f.name for f in fields(RunOptions)}  # read by speechbrain.Brain from the hparams


def test_yamllint():
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint"), "hparams", "recipes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def top_level_keys(text):
    return re.findall(r"^([A-Za-z_][\w]*):", text, flags=re.M)


@pytest.mark.parametrize("path", [p for p in YAMLS if "recipes" in p.parts], ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_key_is_used(path):
    text = path.read_text()
    unused = []
    for key in top_level_keys(text):
        referenced = re.search(rf"<{key}[\[>]", text)
        read_by_code = re.search(rf"{READ}{key}\b", CODE)
        if not (referenced or read_by_code or key in RUN_OPTIONS or key.startswith("__")):
            unused.append(key)
    assert not unused, f"{path.name}: top-level keys never used: {unused}"


@pytest.mark.parametrize("path", [p for p in YAMLS if p.parent.name == "backbones"], ids=lambda p: p.name)
def test_every_backbone_key_is_used(path):
    """A backbone file's key is read by the file itself or, in a file of sizes only (a separator built by the
    recipe, e.g. ``bilstm_psm.yaml``), by a recipe yaml that includes it (``<backbone[key]>``)."""
    text = path.read_text()
    exported = {"separator"}  # what the recipes take from a backbone
    includers = "\n".join(p.read_text() for p in YAMLS if f"backbones/{path.name}" in p.read_text())
    unused = [
        k
        for k in top_level_keys(text)
        if k not in exported and not re.search(rf"<{k}>", text) and not re.search(rf"<backbone\[{k}\]>", includers)
    ]
    assert not unused, f"{path.name}: keys never used: {unused}"


def test_every_shared_training_key_is_used():
    """Keys of hparams/training.yaml are referenced inside it or read by the code (they are lifted to the top level)."""
    text = SHARED_BLOCK.read_text()
    unused = []
    for key in top_level_keys(text):
        referenced = re.search(rf"<{key}[\[>]", text)
        read_by_code = re.search(rf"{READ}{key}\b", CODE)
        if not (referenced or read_by_code or key in RUN_OPTIONS):
            unused.append(key)
    assert not unused, f"training.yaml: keys never used: {unused}"


@pytest.mark.parametrize("path", [p for p in YAMLS if "recipes" in p.parts], ids=lambda p: str(p.relative_to(REPO)))
def test_recipes_include_the_shared_training_block(path):
    """Recipes say what differs: the epoch counter, checkpointer, logger and dataloaders come from the block
    (a recipe may replace the optimiser or the LR schedule by a top-level key of its own)."""
    text = path.read_text()
    assert "!include:../../../../hparams/training.yaml" in text
    for key in ("epoch_counter", "checkpointer", "train_logger", "dataloader_opts"):
        assert not re.search(rf"^{key}:", text, flags=re.M), f"{path.name} redefines {key}"


@pytest.mark.parametrize("path", [p for p in YAMLS if "recipes" in p.parts], ids=lambda p: str(p.relative_to(REPO)))
def test_no_tagged_object_is_overridden_inside_an_include(path):
    """hyperpyyaml merges such an override into the included object and keeps the included tag (an
    `optimizer: !name:torch.optim.AdamW` under `training:` silently stays Adam): define it at the top level."""
    import ruamel.yaml

    from modules.recipe import included_files

    yaml = ruamel.yaml.YAML()
    doc = yaml.load(path.read_text())
    for key, included in included_files(path).items():
        node = doc[key]
        target = yaml.load(Path(included).read_text())
        for sub, value in (node or {}).items():
            tag = getattr(getattr(value, "tag", None), "value", None) or ""
            target_tag = getattr(getattr(target.get(sub), "tag", None), "value", None) or ""
            assert not (tag.startswith("!") and target_tag.startswith(("!new:", "!name:", "!apply:"))), (
                f"{path.name}: `{key}: {sub}` replaces a tagged object of {Path(included).name}; "
                "define it at the recipe's top level instead"
            )
