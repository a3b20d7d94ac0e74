"""Shared fixtures: miniature corpora built once per test session, and a recipe runner.

Two tiers (``pytest.ini`` registers the ``slow`` marker):

- ``python -m pytest -m "not slow"``: the quick tier (unit tests, doctests, static checks), minutes;
- ``python -m pytest -n 2``: everything, including the recipe runs, learning tests, DDP, kill-and-resume
  and the upstream export runs, in two pytest-xdist workers (one per core; ``-n auto`` on a bigger machine).
  Each worker builds the session fixtures (mini corpora) once; ``--dist=worksteal`` (``pytest.ini``) moves
  queued tests to an idle worker so that the long tests do not pile up on one.

Tests are marked ``slow`` here, in one place (:func:`pytest_collection_modifyitems`), besides any
``@pytest.mark.slow`` written in a test file. A test is slow when

1. its file is all recipe runs (:data:`SLOW_FILES`), or
2. its name says it trains to a threshold (``learn`` in the name: the learning tests), or
3. it uses, directly or through its fixtures (as pytest resolves them), a fixture of
   :data:`SLOW_FIXTURES` (mini corpora, learning corpora, trained runs), or the source of the test
   or of one of its fixtures calls something of :data:`SLOW_CALLS` (a recipe run in a subprocess or
   in this process, a mini corpus, a subprocess).

A new slow test that none of these rules catches (a helper under another name) fails in the quick
tier: :func:`pytest_runtest_makereport` fails any unmarked test whose setup and call take longer than
``QUICK_TEST_LIMIT_S`` seconds (default 30) when the run is ``-m "not slow"``, with a message asking to
mark it slow (the full suite does not fail on timings).

Threads: torch runs one intra-op thread in this process (set once at session start, never raised) and
in the recipe subprocesses of the learning tests (``OMP_NUM_THREADS=1``/``MKL_NUM_THREADS=1``), so the
learning tests' figures do not depend on the machine's core count (nor on ``-n``); other recipe subprocesses
keep torch's default, one thread under pytest-xdist. ``TEST_TORCH_THREADS=n`` leaves the pytest process's
count alone and gives subprocesses ``n`` threads (to measure the figures at 2 threads).
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = "hparams/tiny.yaml"

#: Files whose every test runs recipes (prep -> train -> test) or trains to a threshold.
SLOW_FILES = {"test_recipes.py", "test_learning.py", "test_ddp.py", "test_resume.py", "test_upstream.py"}
#: Fixtures that build corpora or train runs: any test using one (even through another fixture) is slow.
SLOW_FIXTURES = {"mini_root", "learning_corpus", "learning_librimix", "corpora"}
#: Calls that run a recipe (``run_recipe_cmd``, ``run_recipe``, ``run_dpccn_recipe``, ``run_pretrain_cmd``,
#: ``run_saddel``, ``tiny_run``), an export or a process: in a test's or its fixtures' source.
SLOW_CALLS = re.compile(r"\brun_\w*(recipe|cmd|saddel)\w*\(|\btiny_run\(|subprocess\.|export_recipe|torchrun")
#: Single slow tests that no rule above catches (seconds measured on 2 loaded cores, load 7-10).
SLOW_TESTS = {
    "test_dnsmos_is_finite_on_a_mini_file",  # 53 s: the DNSMOS ONNX models on CPU
}
#: An unmarked test taking longer than this (setup + call, seconds) fails: mark it slow.
QUICK_TEST_LIMIT_S = float(os.environ.get("QUICK_TEST_LIMIT_S", "30"))
#: Intra-op threads for tests and recipe subprocesses (see the module docstring).
TEST_THREADS = os.environ.get("TEST_TORCH_THREADS")


def pytest_configure(config):
    if TEST_THREADS is None:
        import torch

        torch.set_num_threads(1)  # lowering only (raising it after a batched solve breaks oneMKL here)


def _subprocess_threads(launcher):
    """Intra-op threads of a recipe subprocess: one for a launcher's processes (several share two cores), for
    the learning tests (their figures must not depend on the core count) and under pytest-xdist (``-n 2``: each
    worker already has a core), ``TEST_TORCH_THREADS`` when set, else torch's default (the other recipe runs
    check that a recipe runs, not a figure, and run faster on two cores when the suite runs in one process)."""
    if launcher:
        return "1"
    if TEST_THREADS is not None:
        return TEST_THREADS
    if "learn" in os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1] or os.environ.get("PYTEST_XDIST_WORKER"):
        return "1"
    return None


def _source(obj):
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _slow_reason(item):
    if Path(str(item.fspath)).name in SLOW_FILES:
        return "file of recipe runs"
    if not isinstance(item, pytest.Function):
        return None  # doctests
    if "learn" in item.originalname:
        return "learning test"
    if item.originalname in SLOW_TESTS:
        return "listed in SLOW_TESTS"
    info = getattr(item, "_fixtureinfo", None)
    names = set(info.names_closure) if info else set()
    if names & SLOW_FIXTURES:
        return f"uses {sorted(names & SLOW_FIXTURES)}"
    sources = [_source(item.function)]
    for name in names:
        for fixturedef in info.name2fixturedefs.get(name) or ():
            if str(inspect.getsourcefile(fixturedef.func) or "").startswith(str(REPO)):  # ours, not pytest's
                sources.append(_source(fixturedef.func))
    for src in sources:
        found = SLOW_CALLS.search(src)
        if found:
            return f"calls {found.group(0)}"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is None and _slow_reason(item):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    spent = item.stash.setdefault(_SPENT, [0.0])
    if call.when == "setup":
        spent[0] = call.duration
    elif call.when == "call" and report.passed and item.get_closest_marker("slow") is None and _quick_tier(item):
        total = spent[0] + call.duration
        if total > QUICK_TEST_LIMIT_S:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} took {total:.1f} s (setup + call) in the quick tier (limit {QUICK_TEST_LIMIT_S:g} s, "
                "QUICK_TEST_LIMIT_S): mark it @pytest.mark.slow or teach tests/conftest.py's rules about it"
            )


_SPENT = pytest.StashKey[list]()


def _quick_tier(item):
    """Whether this run is the quick tier (``-m "not slow"``): the time limit is enforced there only, so that a
    loaded machine cannot fail the full suite (CI) on a timing."""
    return "not slow" in (item.config.option.markexpr or "")


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    """Mini WHAM! and LibriMix (8 kHz, min) shared by the recipe tests."""
    from data_prep.mini import make_mini_librimix, make_mini_wham

    root = tmp_path_factory.mktemp("mini")
    small = {"n_train": 6, "n_valid": 2, "n_test": 3, "sample_rates": (8000,), "modes": ("min",)}
    return {
        "wham": make_mini_wham(root, seed=0, **small),
        "librimix": make_mini_librimix(root, seed=0, **small),
    }


@pytest.fixture(scope="session")
def learning_corpus(tmp_path_factory):
    """A larger mini WHAM! (200 training mixtures, 8 kHz min) for the learning tests."""
    from data_prep.mini import make_mini_wham

    root = tmp_path_factory.mktemp("learning")
    return make_mini_wham(root, seed=0, n_train=200, n_valid=10, n_test=16, sample_rates=(8000,), modes=("min",))


def run_recipe_cmd(
    dataset,
    method,
    hparams,
    data_folder,
    output_folder,
    *extra,
    launcher=None,
    timeout=900,
    check=True,
    overrides_file=TINY,
):
    """Runs ``recipes/<dataset>/<method>/train.py`` (tiny by default), as a user would, from the repo root."""
    cmd = launcher or [sys.executable]
    cmd = [
        *cmd,
        f"recipes/{dataset}/{method}/train.py",
        hparams,
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        f"--overrides_file={overrides_file}",
        "--device=cpu",
        "--noprogressbar",
        *extra,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    threads = _subprocess_threads(launcher)
    if threads is not None:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(autouse=True)
def _threads_untouched():
    """No test may change torch's thread count: on this CPU build, setting it above one after a batched
    ``torch.linalg.solve`` has run breaks every later solve (oneMKL), and with it the SDR of later tests."""
    import torch

    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "a test changed torch.set_num_threads; leave the thread count alone"
