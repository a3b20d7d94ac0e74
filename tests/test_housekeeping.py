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
