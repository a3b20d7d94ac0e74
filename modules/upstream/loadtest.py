"""Upstream's yaml load test, as it runs: every registry row's yaml loaded in one process.

SpeechBrain's ``tests/.run-load-yaml-tests.sh`` calls ``load_yaml_test`` of
``tests/utils/recipe_tests.py`` from the repository root (``python -c``, so
the current folder is on ``sys.path``). For each row it changes into the
script's folder and loads the yaml with ``data_folder`` and ``output_folder``
overridden, plus a fixed list of other keys where a line of the yaml starts
with them; after each yaml it forgets the modules whose name starts with
``recipes``. Everything else stays imported: a local module a yaml names by
tag is imported once for the whole run. This module reproduces those
conditions (with imports of our packages refused, as in the recipe test) so
that :func:`modules.upstream.rules.check_tree` can report the rule; the code
is ours, written from that description.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

#: Keys upstream overrides, when a line of the yaml starts with ``<key>:``, with its data folder.
DATA_KEYS = (
    "manual_annot_folder",
    "musan_folder",
    "tea_models_dir",
    "wsj_root",
    "tokenizer_file",
    "commonlanguage_folder",
    "tea_infer_dir",
    "original_data_folder",
    "pretrain_st_dir",
)
#: Keys upstream overrides, when a line starts with ``<key>:``, with its RIR folder.
RIR_KEYS = ("rir_path", "rir_folder", "openrir_folder", "open_rir_folder", "data_folder_rirs")
#: Keys upstream overrides only where the line is ``<key>: !PLACEHOLDER`` (values as a folder or None).
PLACEHOLDER_KEYS = ("root_data_folder", "wav2vec2_folder", "channels_path", "concepts_path")


class _Refuse:
    """An import hook that refuses our packages (the recipe folder alone is the code)."""

    def __init__(self, packages):
        self.packages = tuple(packages)

    def find_spec(self, name, path=None, target=None):
        """Refuse ``name`` when it belongs to one of our packages."""
        if name.split(".")[0] in self.packages:
            raise ImportError(f"{name} is not part of the exported recipe")


def overrides_for(text, data_folder, output_folder, rir_folder):
    """The overrides upstream's load test gives a yaml of this text.

    Example
    -------
    >>> sorted(overrides_for("musan_folder: x\\nroot_data_folder: !PLACEHOLDER\\n", "D", "O", "R").items())
    [('data_folder', 'D'), ('musan_folder', 'D'), ('output_folder', 'O'), ('root_data_folder', 'D')]
    """
    overrides = {"data_folder": data_folder, "output_folder": output_folder}
    for line in text.splitlines():
        for key in PLACEHOLDER_KEYS:
            if line.startswith(f"{key}: !PLACEHOLDER"):
                overrides[key] = None if key.endswith("_path") else data_folder
        for key in DATA_KEYS:
            if line.startswith(f"{key}:"):
                overrides[key] = data_folder
        for key in RIR_KEYS:
            if line.startswith(f"{key}:"):
                overrides[key] = rir_folder
    return overrides


def load_all(root, rows, packages=()):
    """Loads each ``(Script_file, Hparam_file)`` of ``rows`` as upstream's test does; ``{hparam: error or ""}``."""
    from hyperpyyaml import load_hyperpyyaml

    if packages:
        sys.meta_path.insert(0, _Refuse(packages))
    if "" not in sys.path:
        sys.path.insert(0, "")  # what ``python -c`` puts first: the current folder, wherever it is
    data_folder = os.path.join(root, "tests", "tmp", "yaml")
    output_folder = os.path.join(root, "tests", "tmp", "")
    rir_folder = os.path.join(root, "tests", "tmp", "rir")
    results = {}
    for script, hparam in rows:
        os.chdir(os.path.join(root, os.path.dirname(script)))
        path = os.path.join(root, hparam)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            with open(path, encoding="utf-8") as f:
                load_hyperpyyaml(f, overrides_for(text, data_folder, output_folder, rir_folder))
            results[hparam] = ""
        except Exception as err:  # upstream prints the error and goes on
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            results[hparam] = last[:600]
        for name in [m for m in sys.modules if m.startswith("recipes")]:
            del sys.modules[name]
        os.chdir(root)
    return results


def main():
    """``python loadtest.py <json>`` (run as a file, so that nothing of ours is imported): prints json results."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # not this folder's modules
    job = json.loads(sys.argv[1])
    results = load_all(job["root"], job["rows"], job.get("packages", ()))
    print("LOADTEST " + json.dumps(results))


if __name__ == "__main__":
    main()
