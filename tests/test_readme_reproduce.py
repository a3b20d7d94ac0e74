"""The README's per-table reproduce commands and coverage follow the registry; every paper table is registered."""

import importlib.util
from pathlib import Path

from modules.reproduce import load_rows

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reproduce_readme", REPO / "tools" / "reproduce_readme.py")
reproduce_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reproduce_readme)
START, END, readme_block, replace_block, setup_tables = (
    reproduce_readme.START,
    reproduce_readme.END,
    reproduce_readme.readme_block,
    reproduce_readme.replace_block,
    reproduce_readme.setup_tables,
)

#: Every table and figure with numbers in the five papers (issue 24), as `PAPER:TABLE` ids.
PAPER_TABLES = {
    "NASS": ["1", "2", "3", "4"],
    "SADDEL": ["1", "2", "3", "fig2"],
    "DPCCN": ["1", "2", "3", "4", "fig3"],
    "DIP": ["II", "III", "IV", "V", "VI", "VII", "VIII", "fig3", "fig4", "fig5"],
    "Context-aware": ["I", "II", "fig2"],
}


def test_readme_block_is_the_generated_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(START) == 1 and readme.count(END) == 1
    block = readme_block()
    assert replace_block(readme, block) == readme, "run: python tools/reproduce_readme.py --write"


def test_block_lists_every_registered_table_with_its_row_count():
    """Row counts made here from the rows (the coverage figures themselves are checked against an independent
    count of the registry's text in tests/test_reproduce.py)."""
    rows = load_rows()
    block = readme_block()
    tables = {}
    for row in rows:
        runnable, total = tables.get((row.paper, row.table), (0, 0))
        tables[(row.paper, row.table)] = (runnable + (row.run is not None), total + 1)
    for (paper, table), (runnable, total) in tables.items():
        assert f"| {paper}:{table} | {runnable} of {total} |" in block


def test_every_paper_table_is_registered():
    """A table of results has registered rows; a table of the setup (DPCCN Table 1) its numbers under ``setup``."""
    registered = {(r.paper, r.table) for r in load_rows()} | set(setup_tables())
    missing = [f"{p}:{t}" for p, tables in PAPER_TABLES.items() for t in tables if (p, t) not in registered]
    assert not missing, missing
