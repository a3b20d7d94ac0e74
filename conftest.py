"""Suite-wide housekeeping, for every test and doctest (``tests/``, ``modules/``, ``data_prep/``).

The suite leaves nothing behind when it passes, and writes nothing into the checkout:

- Temporary files: every ``tempfile.mkdtemp()``/``TemporaryDirectory`` of a test or doctest, and the
  ``TMPDIR`` of the subprocesses they start, lands in pytest's base temporary folder (``tempfile/`` in
  it), not loose in ``/tmp``. With ``tmp_path_retention_policy = failed`` (``pytest.ini``), pytest
  deletes a passing test's ``tmp_path`` at its teardown and the whole base folder when the session
  passes; a failing session keeps its folder for inspection (the last three sessions, pytest's default).
  Before this, one full run left about 1.5 GB of temporary folders in ``/tmp``, and repeated runs filled
  the disk.
- The repository's ``results/`` (where the recipes' yamls put their output folders by default): a test
  that creates a folder there (a yaml loaded without an ``output_folder`` in ``tmp_path``, whose
  checkpointer makes ``<output_folder>/save``) errors at its teardown, naming the new folders.
- Logging: a recipe run in the test process configures logging as SpeechBrain does (``dictConfig`` of its
  ``log-config.yaml``: a console handler and a ``log.txt`` file handler on the root logger, level DEBUG).
  After each test, the root logger gets back the handlers and level it had when the session started
  (pytest's own capture handlers are pytest's business). Otherwise later tests' messages go to an
  earlier run's ``log.txt``, which fails once that run's ``tmp_path`` has been deleted.
"""

import logging
import os
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)  # tests/test_housekeeping.py runs this file in a pytest of its own

REPO_RESULTS = Path(__file__).resolve().parent / "results"
_ROOT_LOGGER = logging.getLogger()
_SESSION_LOGGING = set(_ROOT_LOGGER.handlers), _ROOT_LOGGER.level


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_basetemp(tmp_path_factory):
    """Point ``tempfile`` (and subprocesses' ``TMPDIR``) at a folder of this session's base temporary folder."""
    folder = str(tmp_path_factory.mktemp("tempfile"))
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = folder
    os.environ["TMPDIR"] = folder
    yield folder
    tempfile.tempdir = saved[0]
    if saved[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[1]


def results_folders(root=REPO_RESULTS):
    """The set of folders under ``root`` (itself included when it exists), as strings."""
    return {dirpath for dirpath, _, _ in os.walk(root)}


@pytest.fixture(scope="session")
def _results_before():
    return results_folders()


@pytest.fixture(autouse=True)
def _no_output_under_repo_results(_results_before):
    """Error at teardown when the test created a folder under the repository's ``results/``."""
    yield
    new = results_folders() - _results_before
    if new:
        _results_before.update(new)  # reported once, by the test after which they appeared
        shown = sorted(str(Path(f).relative_to(REPO_RESULTS.parent)) for f in new)
        pytest.fail(
            "this test (or one running beside it in another pytest-xdist worker) created folders under the "
            f"repository's results/: {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''}; give the yaml "
            "an output_folder in tmp_path",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _logging_as_the_session_started():
    """Close and remove the root logger's handlers added since the session started (pytest's excepted)."""
    yield
    handlers, level = _SESSION_LOGGING
    for handler in _ROOT_LOGGER.handlers[:]:
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            _ROOT_LOGGER.removeHandler(handler)
            handler.close()
    _ROOT_LOGGER.setLevel(level)
