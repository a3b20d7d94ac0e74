#!/usr/bin/env python3
"""Runs SpeechBrain's own consistency checks and recipe tests on an export.

Our checks (``python -m modules.upstream check``) are our own code; this tool
runs upstream's, from a copy of SpeechBrain's repository, on an export root,
as a second opinion. Nothing of upstream is copied into this repository: the
files are read from the given checkout (or bare git mirror) into a temporary
folder for the run.

1. ``tests.utils.check_yaml.check_yaml_vs_script`` on every registry row;
2. ``tests/consistency/test_recipe.py``'s four tests (registry lists every
   yaml, files exist, mandatory files, README links), run with the export
   root as the working directory;
3. with ``--run``: ``tests.utils.recipe_tests.run_recipe_tests`` on the
   export's registry, on upstream's own ``tests/samples`` data.

Usage::

    python tools/upstream_crosscheck.py EXPORT_ROOT (--checkout DIR | --mirror GIT_DIR) [--run]
"""

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NEEDED = ["tests/utils", "tests/consistency", "tests/__init__.py"]


def materialise(checkout=None, mirror=None, with_samples=False):
    """A temporary folder holding upstream's ``tests/`` helpers (and samples); returns its path."""
    tmp = Path(tempfile.mkdtemp(prefix="sb_upstream_"))
    paths = NEEDED + (["tests/samples"] if with_samples else [])
    if checkout:
        for rel in paths:
            src = Path(checkout) / rel
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    else:
        archive = subprocess.run(["git", "-C", mirror, "archive", "HEAD", *paths], capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
    for init in ("tests/utils/__init__.py", "tests/consistency/__init__.py"):
        (tmp / init).touch()
    return tmp


def main(argv=None):
    """Runs the checks; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export_root")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkout", help="a working tree of SpeechBrain's repository")
    source.add_argument("--mirror", help="a bare git repository of SpeechBrain")
    parser.add_argument("--run", action="store_true", help="also run the recipe tests on upstream's tests/samples")
    args = parser.parse_args(argv)
    root = Path(args.export_root).resolve()
    upstream = materialise(args.checkout, args.mirror, with_samples=args.run)
    env = dict(os.environ, PYTHONPATH=str(upstream))
    script = """
import csv, glob, os, sys
from tests.utils.check_yaml import check_yaml_vs_script
import tests.consistency.test_recipe as tr
ok = True
for path in glob.glob("tests/recipes/*.csv"):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            ok &= check_yaml_vs_script(row["Hparam_file"], row["Script_file"])
for name in ("test_recipe_list", "test_recipe_files", "test_mandatory_files", "test_README_links"):
    try:
        getattr(tr, name)()
        print("PASS", name)
    except AssertionError:
        ok = False
        print("FAIL", name)
print("yaml/script consistency and registry tests:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
"""
    status = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, check=False).returncode
    if args.run:
        ours = root / "tests" / "samples"
        if ours.exists() and not (ours / ".generated_by_modules_upstream").exists():
            print(f"error: {ours} exists and is not ours; remove it first")
            return 2
        shutil.rmtree(ours, ignore_errors=True)
        shutil.copytree(upstream / "tests" / "samples", ours)
        (ours / "README.txt").write_text("SpeechBrain's tests/samples, copied here for a recipe test run\n")
        runner = (
            "from tests.utils.recipe_tests import run_recipe_tests\n"
            "import sys\n"
            "sys.exit(0 if run_recipe_tests(recipe_folder='tests/recipes', output_folder='tests/tmp', "
            "do_checks=True, run_opts='--device=cpu') else 1)\n"
        )
        code = subprocess.run([sys.executable, "-c", runner], cwd=root, env=env, check=False).returncode
        print("recipe tests on upstream's tests/samples:", "PASS" if code == 0 else "FAIL (see tests/tmp/*/stderr.txt)")
        shutil.rmtree(ours, ignore_errors=True)
        status |= code
    shutil.rmtree(upstream, ignore_errors=True)
    return status


if __name__ == "__main__":
    csv.field_size_limit(1 << 20)
    sys.exit(main())
