"""Upstream's recipe registry: one CSV per dataset under ``tests/recipes/``, one row per yaml.

The columns are those SpeechBrain's recipe test runner and consistency tests
read (``tests/utils/recipe_tests.py``, ``tests/consistency/test_recipe.py``,
documented in ``tests/consistency/README.md``): which script runs which yaml,
its data preparation and README files, the URL of the full run's output
folder, the pretrained model, and the flags and checks of the small-data test.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

__all__ = ["COLUMNS", "DATASETS", "FILE_COLUMNS", "MANDATORY_COLUMNS", "read_registry", "write_rows"]

COLUMNS = (
    "Task",
    "Dataset",
    "Script_file",
    "Hparam_file",
    "Data_prep_file",
    "Readme_file",
    "Result_url",
    "HF_repo",
    "test_debug_flags",
    "test_debug_checks",
    "performance",
)
#: Columns holding paths (space-separated) that must exist.
FILE_COLUMNS = ("Script_file", "Hparam_file", "Data_prep_file", "Readme_file")
#: Columns every row must fill with an existing file.
MANDATORY_COLUMNS = ("Script_file", "Hparam_file", "Readme_file")

#: Our dataset folder -> upstream's ``recipes/<name>`` (and ``tests/recipes/<name>.csv``).
DATASETS = {
    "WHAM": "WHAMandWHAMR",
    "LibriMix": "LibriMix",
    "REALM": "REAL-M",
    "Aishell2Mix": "Aishell2Mix",
    "Vox2Mix": "Vox2Mix",
    "LRS2Mix": "LRS2Mix",
}


def read_registry(path):
    """The rows of a registry CSV as dicts (values stripped, as upstream reads them)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        header = list(reader.fieldnames or [])
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return header, rows


def write_rows(path, rows, replace_folder=None):
    """Writes rows into a registry CSV, keeping the rows of other recipes.

    Arguments
    ---------
    path : str or Path
        ``tests/recipes/<Dataset>.csv``.
    rows : list of dict
        New rows (keys: :data:`COLUMNS`).
    replace_folder : str, optional
        Rows whose ``Script_file`` lies in this folder are replaced.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "X.csv"
    >>> write_rows(path, [dict.fromkeys(COLUMNS, "a")])
    >>> read_registry(path)[1][0]["Task"]
    'a'
    """
    path = Path(path)
    kept = []
    if path.exists():
        _, old = read_registry(path)
        kept = [r for r in old if not (replace_folder and r.get("Script_file", "").startswith(replace_folder + "/"))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in [*kept, *rows]:
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")
