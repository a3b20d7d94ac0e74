"""The suite's housekeeping (``conftest.py`` at the repository root): temporary files stay in pytest's folder."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def test_temporary_files_land_in_pytests_base_folder(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    assert Path(tempfile.mkdtemp()).is_relative_to(base)
    with tempfile.TemporaryDirectory() as folder:
        assert Path(folder).is_relative_to(base)
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    assert Path(child.stdout.strip()).is_relative_to(base)  # a subprocess's TMPDIR too


def test_a_test_leaves_no_logging_handler_and_no_results_folder(pytester):
    """The root ``conftest.py`` in a session of its own: a handler the first test adds is gone for the second,
    and a test writing under ``results/`` next to the conftest errors at its teardown."""
    pytester.makeconftest((Path(__file__).resolve().parents[1] / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        """
        import logging
        from pathlib import Path

        def test_adds_a_file_handler(tmp_path):
            logging.getLogger().addHandler(logging.FileHandler(tmp_path / "log.txt"))

        def test_finds_none():
            assert not [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)
                        and not type(h).__module__.startswith("_pytest")]

        def test_writes_results():
            (Path(__file__).parent / "results" / "run" / "save").mkdir(parents=True)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_writes_results*", "*results/run/save*"])
