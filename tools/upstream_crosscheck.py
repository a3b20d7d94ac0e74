#!/usr/bin/env python3
"""Runs SpeechBrain's own checks on an export, row by row, and counts what passes.

Our checks (``python -m modules.upstream check``) are our own code; this tool
runs upstream's, from a copy of SpeechBrain's repository, on an export root
(the ``--out`` of ``python -m modules.upstream export`` for every recipe
folder), as a second opinion. Nothing of upstream is copied into this
repository: its ``tests/`` helpers, ``tests/samples`` and lint settings are
read from the given checkout (or bare git mirror) into a temporary folder for
the run. Each check gives one result per registry row (``tests/recipes/*.csv``):

``consistency``
    ``tests.utils.check_yaml.check_yaml_vs_script`` on the row, and
    ``tests/consistency/test_recipe.py``'s four tests (registry lists every
    yaml, files exist, mandatory files, README links) run on the whole
    export, each error they print charged to the row whose files it names
    (an error naming a yaml that no row lists is reported on its own). The
    detail says how many of the row's variables upstream accepted only as
    "maybe used" through a line of its wildcard patterns (e.g.
    ``signals[f"s{i}"]`` matches every variable): those are not checked by
    it (our own ``yaml-variables-read`` rule reads the code and checks them);
``load``
    ``tests.utils.recipe_tests.load_yaml_test`` as
    ``tests/.run-load-yaml-tests.sh`` calls it, every row in one process, in
    registry order, one row per call (a module a yaml names is imported once
    for all the rows);
``lint``
    the hooks of upstream's ``.pre-commit-config.yaml`` on every file of the
    row's recipe folder, with the tools given by ``--lint-bin`` (install
    the pinned versions there: ruff 0.12.4, yamllint 1.35.1, codespell
    2.3.0, pre-commit-hooks 2.5.0): ruff check and ruff format with
    upstream's ``pyproject.toml``, yamllint with its ``.yamllint.yaml``,
    codespell with the hook's arguments and upstream's
    ``.dict-speechbrain.txt``, and pre-commit-hooks' whitespace, end-of-file,
    line-ending and requirements fixers (run on a copy: a file they would
    change fails) and the 1024 kB size limit;
``run``
    ``tests.utils.recipe_tests.run_recipe_tests(do_checks=True,
    run_opts="--device=cpu")`` on upstream's own ``tests/samples``, one row
    per call (``filters_fields=["Hparam_file"]``), each in its own process
    with ``--timeout``; the result holds the recipe process's peak resident
    set (``getrusage``), also for a run the kernel killed.

Results go to ``--json`` (rewritten after every row, so an interrupted run
keeps what it measured) and a summary is printed.

Usage::

    python tools/upstream_crosscheck.py EXPORT_ROOT (--checkout DIR | --mirror GIT_DIR)
        [--checks consistency,load,lint,run] [--lint-bin VENV/bin] [--rows SUBSTRING ...]
        [--timeout S] [--json FILE]
"""

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

NEEDED = ["tests/utils", "tests/consistency", "tests/__init__.py", "tests/samples"]
LINT_FILES = ["pyproject.toml", ".yamllint.yaml", ".dict-speechbrain.txt", ".pre-commit-config.yaml"]
CHECKS = ("consistency", "load", "lint", "run")
MARKER = ".copied_by_upstream_crosscheck"


def materialise(checkout=None, mirror=None):
    """A temporary folder holding upstream's ``tests/`` helpers, samples and lint settings; returns its path."""
    tmp = Path(tempfile.mkdtemp(prefix="sb_upstream_"))
    if checkout:
        for rel in NEEDED + LINT_FILES:
            src, dst = Path(checkout) / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    else:
        archive = subprocess.run(
            ["git", "-C", mirror, "archive", "HEAD", *NEEDED, *LINT_FILES], capture_output=True, check=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
    for init in ("tests/utils/__init__.py", "tests/consistency/__init__.py"):
        (tmp / init).touch()
    return tmp


def upstream_commit(checkout=None, mirror=None):
    """The commit of the upstream tree the checks come from."""
    git = ["git", "-C", checkout] if checkout else ["git", "--git-dir", mirror]
    proc = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def registry_rows(root):
    """Every row of the export's ``tests/recipes/*.csv``, in file and row order."""
    rows = []
    for path in sorted((root / "tests" / "recipes").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows += [{k.strip(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
    return rows


def _python(upstream, script, root, timeout=None):
    """Runs ``script`` with upstream's helpers importable, from the export root; returns the process."""
    env = dict(os.environ, PYTHONPATH=str(upstream), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


_CONSISTENCY = r"""
import contextlib, csv, glob, io, json, sys
from tests.utils.check_yaml import check_yaml_vs_script
import tests.consistency.test_recipe as tr
out = {"rows": {}, "tests": {}}
for path in sorted(glob.glob("tests/recipes/*.csv")):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                ok = check_yaml_vs_script(row["Hparam_file"], row["Script_file"])
            out["rows"][row["Hparam_file"]] = [bool(ok), text.getvalue()]
for name in ("test_recipe_list", "test_recipe_files", "test_mandatory_files", "test_README_links"):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            getattr(tr, name)()
            ok = True
        except AssertionError:
            ok = False
    out["tests"][name] = [ok, text.getvalue()]
print("@@JSON@@" + json.dumps(out))
"""


def check_consistency(upstream, root, rows):
    """``{hparam: (ok, detail)}`` from upstream's consistency tests (see the module docstring)."""
    proc = _python(upstream, _CONSISTENCY, root)
    if "@@JSON@@" not in proc.stdout:
        raise RuntimeError(f"the consistency tests did not run: {proc.stderr[-2000:]}")
    found = json.loads(proc.stdout.split("@@JSON@@", 1)[1])
    results = {}
    for hparam, (ok, text) in found["rows"].items():
        # a variable accepted only as "maybe used" by a line such as x[f"s{i}"] (upstream's wildcard patterns)
        maybe = re.findall(r"potential inconsistency (\w+) maybe used in (.*) \(or not\)", text)
        lines = sorted({line for _var, line in maybe})
        wildcard = f"{len(maybe)} variables accepted as 'maybe used' by {lines[:3]}" if maybe else ""
        errors_here = [line.strip() for line in text.splitlines() if "ERROR" in line]
        results[hparam] = (ok, "; ".join(errors_here + [wildcard] * bool(wildcard))[-400:])
    errors = [line.strip() for _name, (_ok, text) in found["tests"].items() for line in text.splitlines()]
    errors = [line for line in errors if "ERROR" in line]
    by_csv = {}
    for row in rows:
        by_csv.setdefault(Path(row["Hparam_file"]).parts[1], []).append(row)
    claimed = set()
    for row in rows:
        files = [row.get(c, "") for c in ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file")]
        index = by_csv[Path(row["Hparam_file"]).parts[1]].index(row)
        dataset = Path(row["Hparam_file"]).parts[1]
        mine = [e for e in errors if any(f and f in e for f in files[1:2])]
        mine += [e for e in errors if re.search(rf"recipe {index} does not contain .* {re.escape(dataset)}\.csv", e)]
        mine += [e for e in errors if "does not exist" in e and any(f and f in e for f in files)]
        claimed |= set(mine)
        if mine:
            ok, detail = results.get(row["Hparam_file"], (True, ""))
            results[row["Hparam_file"]] = (False, "; ".join([detail] * (not ok) + mine))
    unclaimed = [e for e in errors if e not in claimed]
    failed_tests = [name for name, (ok, _text) in found["tests"].items() if not ok]
    return results, {"failed_tests": failed_tests, "errors_without_row": unclaimed}


_LOAD = r"""
import json, logging, os, sys
from tests.utils.recipe_tests import load_yaml_test
rows = json.loads(sys.argv[1])
avoid = json.loads(sys.argv[2])
root = os.getcwd()
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.ERROR:
            messages.append(record.getMessage())
logging.getLogger("tests.utils.recipe_tests").addHandler(Keep())
logging.getLogger("tests.utils.recipe_tests").setLevel(logging.INFO)
out = {}
for hparam in rows:
    os.chdir(root)
    del messages[:]
    try:
        ok = load_yaml_test(filters_fields=["Hparam_file"], filters=[hparam], avoid_list=avoid)
    except BaseException as err:
        ok, messages[:] = False, [f"{type(err).__name__}: {err}"]
    out[hparam] = [bool(ok), " | ".join(m.strip() for m in messages)[-400:]]
    os.chdir(root)
print("@@JSON@@" + json.dumps(out))
"""

#: tests/.run-load-yaml-tests.sh's avoid list (upstream recipes only; none of ours is on it).
AVOID = []


def check_load(upstream, root, rows):
    """``{hparam: (ok, detail)}`` from upstream's ``load_yaml_test``, all rows in one process."""
    hparams = [r["Hparam_file"] for r in rows]
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, json.dumps(hparams), json.dumps(AVOID)],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(upstream), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")),
        capture_output=True,
        text=True,
        check=False,
    )
    if "@@JSON@@" not in proc.stdout:
        raise RuntimeError(f"the load test did not finish: {proc.stderr[-2000:]}")
    return {h: tuple(v) for h, v in json.loads(proc.stdout.split("@@JSON@@", 1)[1]).items()}


def _tool(bin_dir, name):
    path = Path(bin_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: install the pinned linters there (see the module docstring)")
    return str(path)


def lint_folder(upstream, root, folder, bin_dir):
    """The problems the pre-commit hooks find in one recipe folder (paths relative to the export root)."""
    files = sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    rel = [str(p.relative_to(root)) for p in files]
    py = [f for f in rel if f.endswith(".py")]
    yamls = [f for f in rel if f.endswith((".yaml", ".yml"))]
    problems = []

    def tool(cmd, label, first=5):
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        if proc.returncode:
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            problems.append(f"{label}: " + " | ".join(lines[:first]))

    config = str(upstream / "pyproject.toml")
    if py:
        tool([_tool(bin_dir, "ruff"), "check", "--config", config, "--output-format", "concise", *py], "ruff")
        tool([_tool(bin_dir, "ruff"), "format", "--check", "--config", config, *py], "ruff-format")
    if yamls:
        tool([_tool(bin_dir, "yamllint"), "-c", str(upstream / ".yamllint.yaml"), *yamls], "yamllint")
    spell = [
        _tool(bin_dir, "codespell"),
        f"--ignore-words={upstream / '.dict-speechbrain.txt'}",
        "--skip=*.ipynb",
        "--ignore-regex='base64,.*?=='",
    ]
    tool([*spell, *[f for f in rel if not f.endswith(".wav")]], "codespell")
    big = [f for f, p in zip(rel, files, strict=True) if p.stat().st_size > 1024 * 1024]
    if big:
        problems.append(f"check-added-large-files: {big}")
    with tempfile.TemporaryDirectory() as tmp:  # the fixers rewrite files: run them on a copy
        copy = Path(tmp) / "c"
        shutil.copytree(root / folder, copy)
        fixers = [
            ("trailing-whitespace-fixer", [], [f for f in rel if not f.endswith(".wav")]),
            ("end-of-file-fixer", [], py),
            ("mixed-line-ending", ["--fix=no"], py),
            ("requirements-txt-fixer", [], [f for f in rel if re.search(r"requirements.*\.txt$", f)]),
        ]
        for name, args, chosen in fixers:
            if chosen:
                targets = [str(copy / Path(f).relative_to(folder)) for f in chosen]
                tool([_tool(bin_dir, name), *args, *targets], name)
    return problems


def check_lint(upstream, root, rows, bin_dir):
    """``{hparam: (ok, detail)}``: a row passes when its recipe folder passes every hook."""
    by_folder = {}
    for row in rows:
        folder = str(Path(row["Script_file"]).parent)
        if folder not in by_folder:
            by_folder[folder] = lint_folder(upstream, root, folder, bin_dir)
    out = {}
    for row in rows:
        problems = by_folder[str(Path(row["Script_file"]).parent)]
        out[row["Hparam_file"]] = (not problems, " || ".join(problems)[:600])
    return out, {"folders": {k: not v for k, v in by_folder.items()}}


_RUN = r"""
import resource, sys
from tests.utils.recipe_tests import run_recipe_tests
ok = run_recipe_tests(recipe_folder="tests/recipes", output_folder="tests/tmp", do_checks=True,
                      run_opts="--device=cpu", filters_fields=["Hparam_file"], filters=[sys.argv[1]])
print(f"@@MAXRSS_KB@@{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", flush=True)
sys.exit(0 if ok else 1)
"""


def peak_rss_gib(stdout):
    """The largest resident set (GiB) of the recipe processes a ``_RUN`` call waited for, or None.

    ``_RUN`` prints ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (kB on Linux): the peak of its
    largest finished descendant, the recipe's ``train.py``, also when the kernel killed it.
    """
    found = re.findall(r"@@MAXRSS_KB@@(\d+)", stdout)
    return round(int(found[-1]) / 1024**2, 2) if found else None


def run_row(upstream, root, row, timeout):
    """``(ok, detail, seconds, peak RSS in GiB or None)`` of upstream's recipe test on one row."""
    start = time.time()
    env = dict(os.environ, PYTHONPATH=str(upstream), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUN, row["Hparam_file"]],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return False, f"no exit within {timeout} s", time.time() - start, None
    seconds = time.time() - start
    peak = peak_rss_gib(proc.stdout)
    if proc.returncode == 0:
        return True, "", seconds, peak
    recipe_id = _recipe_id(root, row)
    stderr = root / "tests" / "tmp" / recipe_id / "stderr.txt"
    text = stderr.read_text(encoding="utf-8", errors="replace") if stderr.exists() else ""
    last = [line for line in text.splitlines() if line.strip()][-3:]
    missing = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "does not exist" in line]
    return False, " | ".join(last + missing[:3])[-600:], seconds, peak


def _recipe_id(root, row):
    """The recipe id upstream's ``prepare_test`` gives a row (``<csv stem>_row_<n>``, counted from 2)."""
    dataset = Path(row["Hparam_file"]).parts[1]
    with open(root / "tests" / "recipes" / f"{dataset}.csv", newline="", encoding="utf-8") as f:
        for n, r in enumerate(csv.DictReader(f, skipinitialspace=True), start=2):
            if r["Hparam_file"].strip() == row["Hparam_file"]:
                return f"{dataset}_row_{n:02d}"
    return dataset


def main(argv=None):
    """Runs the checks; returns 0 when every selected row passes every selected check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export_root")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkout", help="a working tree of SpeechBrain's repository")
    source.add_argument("--mirror", help="a bare git repository of SpeechBrain")
    parser.add_argument("--checks", default="consistency,load,lint", help=f"comma-separated, of {CHECKS}")
    parser.add_argument("--lint-bin", help="a bin/ folder with ruff, yamllint, codespell, pre-commit-hooks")
    parser.add_argument(
        "--rows", nargs="*", help="only the rows whose Hparam_file contains one of these, in that order"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per recipe test run")
    parser.add_argument("--json", help="write the per-row results here (rewritten after each row)")
    args = parser.parse_args(argv)
    checks = [c for c in args.checks.split(",") if c]
    unknown = set(checks) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks {sorted(unknown)}; choose from {CHECKS}")
    if "lint" in checks and not args.lint_bin:
        parser.error("--lint-bin is needed for the lint check")
    root = Path(args.export_root).resolve()
    rows = registry_rows(root)
    if args.rows:  # in the order of the first substring each row contains ("" matches the rest)
        rank = {}
        for row in rows:
            rank[row["Hparam_file"]] = next((i for i, s in enumerate(args.rows) if s in row["Hparam_file"]), None)
        rows = sorted((r for r in rows if rank[r["Hparam_file"]] is not None), key=lambda r: rank[r["Hparam_file"]])
    upstream = materialise(args.checkout, args.mirror)
    report = {"upstream_commit": upstream_commit(args.checkout, args.mirror), "rows": [r["Hparam_file"] for r in rows]}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")

    try:
        if "consistency" in checks:
            report["consistency"], report["consistency_notes"] = check_consistency(upstream, root, rows)
            save()
        if "load" in checks:
            report["load"] = check_load(upstream, root, rows)
            save()
        if "lint" in checks:
            report["lint"], report["lint_notes"] = check_lint(upstream, root, rows, args.lint_bin)
            save()
        if "run" in checks:
            report["run"] = {}
            samples = root / "tests" / "samples"
            if samples.exists() and not (samples / MARKER).exists():
                print(f"error: {samples} exists and is not upstream's copy made by this tool; remove it first")
                return 2
            shutil.rmtree(samples, ignore_errors=True)
            shutil.copytree(upstream / "tests" / "samples", samples)
            (samples / MARKER).write_text("SpeechBrain's tests/samples, copied for a recipe test run\n")
            for row in rows:
                ok, detail, seconds, peak = run_row(upstream, root, row, args.timeout)
                report["run"][row["Hparam_file"]] = (ok, detail, round(seconds, 1), peak)
                rss = f"peak RSS {peak} GiB" if peak is not None else "peak RSS unknown"
                print(
                    f"run {'PASS' if ok else 'FAIL'} {seconds:6.0f} s {rss} {row['Hparam_file']} {detail}", flush=True
                )
                save()
    finally:
        shutil.rmtree(upstream, ignore_errors=True)
    status = 0
    for check in checks:
        results = report.get(check, {})
        passed = sum(1 for v in results.values() if v[0])
        print(f"{check}: {passed}/{len(results)}")
        for hparam, value in results.items():
            if not value[0]:
                print(f"  FAIL {hparam}: {value[1]}")
        status |= passed != len(results)
    save()
    return status


if __name__ == "__main__":
    csv.field_size_limit(1 << 20)
    sys.exit(main())
