#!/usr/bin/env python3
"""Checks the upstream patches against the SpeechBrain 1.1.2 source distribution.

For each patch of ``modules.upstream.patches`` (on its own, on a fresh copy of
the unpacked sdist), then for all of them in order:

1. ``git apply --check`` and ``git apply`` (falls back to ``patch -p1``);
2. the patch's unit tests fail on the pristine copy (they test the change)
   and pass on the patched copy, which is the ``speechbrain`` imported;
3. the doctests of the changed modules pass on the patched copy;
4. ruff format --check and ruff check with the sdist's own ``pyproject.toml``
   settings, on the changed and new files;
5. our check of upstream's docstring rule on the changed ``speechbrain/`` files.

Optionally (``--upstream-tests <checkout of speechbrain>``) the repository's own
``tests/unittests/test_checkpoints.py`` and ``test_losses.py`` run on the
patched copy too.

Usage::

    python tools/check_upstream_patches.py [--sdist speechbrain-1.1.2.tar.gz] [--download] [--out DIR]

The sdist is looked up in ``$SPEECHBRAIN_SDIST`` and then
``~/.cache/robust-sep/speechbrain-1.1.2.tar.gz``; ``--download`` fetches it
there with ``pip download speechbrain==1.1.2 --no-deps --no-binary :all:``.
Not part of the test suite (it needs the sdist); ``tests/test_upstream.py``
runs a shorter version of it when the sdist is present and skips otherwise.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modules.upstream.patches import PATCHES, build_patches  # noqa: E402
from modules.upstream.rules import docstring_problems  # noqa: E402

DEFAULT_SDIST = Path.home() / ".cache" / "robust-sep" / "speechbrain-1.1.2.tar.gz"


def find_sdist(explicit=None):
    """The sdist path: the argument, ``$SPEECHBRAIN_SDIST``, or the default cache (None if absent)."""
    for candidate in (explicit, os.environ.get("SPEECHBRAIN_SDIST"), DEFAULT_SDIST):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def download(target=DEFAULT_SDIST):
    """Downloads the sdist with pip into ``target``'s folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "speechbrain==1.1.2", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*cmd, "-d", str(target.parent)], check=True)
    return target


def unpack(sdist, where):
    """A fresh copy of the unpacked sdist under ``where``; returns its root."""
    if Path(sdist).is_dir():
        root = Path(where) / Path(sdist).name
        shutil.copytree(sdist, root)
        return root
    with tarfile.open(sdist) as tar:
        tar.extractall(where, filter="data")
        top = tar.getnames()[0].split("/")[0]
    return Path(where) / top


def apply(root, patch):
    """Applies a patch file to ``root``; returns (ok, message)."""
    check = subprocess.run(
        ["git", "apply", "--check", str(patch)], cwd=root, capture_output=True, text=True, check=False
    )
    if check.returncode == 0:
        done = subprocess.run(["git", "apply", str(patch)], cwd=root, capture_output=True, text=True, check=False)
        return done.returncode == 0, done.stderr.strip()
    done = subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=root, capture_output=True, text=True, check=False)
    return done.returncode == 0, (check.stderr + done.stdout + done.stderr).strip()


def run_pytest(root, args):
    """Runs pytest in ``root`` (whose ``speechbrain/`` is then the one imported)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root), *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)


def _failed(proc):
    """Test ids a pytest run (with ``-rf``) reports as failed or in error."""
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))}


def changed_files(patch_file):
    """Paths a patch touches."""
    return [line.split(" b/", 1)[1] for line in patch_file.read_text().splitlines() if line.startswith("diff --git")]


def ruff(root, files):
    """ruff format --check and ruff check with the sdist's pyproject.toml; returns (ok, output)."""
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    config = str(root / "pyproject.toml")
    run = {"cwd": root, "capture_output": True, "text": True, "check": False}
    fmt = subprocess.run([exe, "format", "--check", "--config", config, *files], **run)  # noqa: PLW1510
    lint = subprocess.run([exe, "check", "--config", config, *files], **run)  # noqa: PLW1510
    return fmt.returncode == 0 and lint.returncode == 0, (fmt.stdout + lint.stdout).strip()


def check_one(sdist, patches, label, upstream_tests=None):
    """Applies ``patches`` in order to a fresh copy and runs the checks; returns a list of (check, ok, detail)."""
    results = []
    tests = [t for p in patches for t in PATCHES[[q.name for q in PATCHES].index(p.name)].tests]
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack(sdist, tmp)
        if len(patches) == 1:
            (root / "tests" / "unittests").mkdir(parents=True, exist_ok=True)
            for test in tests:  # the new tests on the pristine copy must fail
                source = [line[1:] for line in patches[0].read_text().split(f"+++ b/{test}\n", 1)[1].splitlines(True)]
                source = "".join(line for line in source if not line.startswith(("@@", "diff --git")))
                (root / test).write_text(source.split("\ndiff --git")[0])
            before = run_pytest(root, tests)
            results.append((f"{label}: its tests fail without it", before.returncode != 0, before.stdout[-300:]))
            for test in tests:
                (root / test).unlink()
        before_fail = set()
        if upstream_tests:  # their tests take a `device` fixture from the repository's conftest.py
            (root / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef device():\n    return 'cpu'\n")
            own = [Path(upstream_tests) / "tests" / "unittests" / n for n in ("test_checkpoints.py", "test_losses.py")]
            before_fail = _failed(run_pytest(root, ["-rf", *[str(f) for f in own if f.exists()]]))
        for patch in patches:
            ok, message = apply(root, patch)
            results.append((f"{label}: {patch.name} applies", ok, message))
            if not ok:
                return results
        after = run_pytest(root, tests)
        results.append((f"{label}: its tests pass with it", after.returncode == 0, after.stdout[-600:]))
        touched = sorted({f for p in patches for f in changed_files(p)})
        modules = [f for f in touched if f.startswith("speechbrain/")]
        doctest = run_pytest(root, ["--doctest-modules", *modules])
        results.append((f"{label}: doctests of {', '.join(modules)}", doctest.returncode == 0, doctest.stdout[-600:]))
        ok, out = ruff(root, touched)
        results.append((f"{label}: ruff with SpeechBrain's settings", ok, out[-600:]))
        problems = [f"{m}: {p}" for m in modules for p in docstring_problems(root / m)]
        results.append((f"{label}: docstring rule", not problems, "; ".join(problems)))
        if upstream_tests:
            own = [Path(upstream_tests) / "tests" / "unittests" / n for n in ("test_checkpoints.py", "test_losses.py")]
            own = [str(f) for f in own if f.exists()]
            if not own:
                results.append((f"{label}: SpeechBrain's own tests", False, f"none found under {upstream_tests}"))
            else:
                after_fail = _failed(run_pytest(root, ["-rf", *own]))
                new = sorted(after_fail - before_fail)
                name = f"{label}: SpeechBrain's own {', '.join(Path(f).name for f in own)}: no new failure"
                detail = f"new failures: {new} (failing before too: {sorted(before_fail)})"
                results.append((name, not new, detail))
    return results


def main(argv=None):
    """Builds the patches, checks each alone and all together, prints a report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", help="speechbrain-1.1.2.tar.gz or its unpacked folder")
    parser.add_argument("--download", action="store_true", help="download the sdist with pip if absent")
    parser.add_argument("--out", default=None, help="where to write the patches (default: a temporary folder)")
    parser.add_argument("--upstream-tests", help="a checkout of SpeechBrain whose own unit tests to run as well")
    args = parser.parse_args(argv)
    sdist = find_sdist(args.sdist)
    if sdist is None:
        if not args.download:
            print(f"error: no sdist (give --sdist, set SPEECHBRAIN_SDIST, or pass --download to fetch {DEFAULT_SDIST})")
            return 2
        sdist = download()
    out = Path(args.out or tempfile.mkdtemp(prefix="upstream_patches_"))
    patches = build_patches(sdist, out)
    print(f"patches written to {out}")
    results = []
    for patch in patches:
        results += check_one(sdist, [patch], patch.name.split("-")[0], args.upstream_tests)
    results += check_one(sdist, patches, "all, in order", args.upstream_tests)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
        if not ok and detail:
            print("      " + detail.replace("\n", "\n      "))
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
