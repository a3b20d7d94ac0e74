"""Reproduce a paper's table with one command: the registry of paper rows, the runs, the collected table.

::

    python -m modules.reproduce list [PAPER[:TABLE]]
    python -m modules.reproduce run PAPER:TABLE [--rows LABEL ...] [--seeds 1234 1235 1236]
        [--launcher local|torchrun|slurm] [--gpus N] [--dry_run] [--tiny] [--data DATASET=PATH ...]
        [--results results/reproduce]
    python -m modules.reproduce collect PAPER:TABLE [RESULTS ...] [--output_folder OUT]

The registry
------------
The rows are those of the results tables (:func:`modules.results.load_spec`:
``modules/paper_tables/*.yaml``, one file per paper; ``--registry`` names another file
or folder). Each row
keeps the keys :mod:`modules.results` reads (``label``, ``match``, ``test_set``,
``paper``, ``source``) and may add:

* ``paper_id`` / ``table``: the paper and table the row belongs to (default: parsed
  from ``source``, ``"NASS paper, Table 3"`` -> ``NASS:3``, ``"DIP paper, Fig. 4"`` ->
  ``DIP:fig4``);
* ``run``: ``{recipe: recipes/WHAM/nass, yaml: sepformer_nass.yaml, overrides: {...},
  data: [WHAM] or {data_folder: WHAM, ...}, inputs: {init_from: "DPCCN:3/TSE sDPCCN"}}``:
  the command that produces the row. ``data`` names the corpora and the yaml keys they
  fill (a list: ``data_folder`` for the recipe's own dataset, :data:`DATA_KEYS` for the
  others); ``inputs`` gives a key the folder of another run (same seed), which then runs
  first: ``"PAPER:TABLE/label"``, another row's run (its last stage's folder);
  ``{row: "PAPER:TABLE/label", stage: NAME}``, one stage's folder of that row's run (only
  the stages up to it run first, ``--stages=...``, e.g. system 13's pretraining for DIP+);
  or ``{step: NAME, recipe: ..., script: ..., yaml: ..., overrides, data, inputs}``, an
  auxiliary step: a run that no paper row reads (DIP+'s continued pretraining,
  ``recipes/REALM/dip/pretrain.py``), in ``<results>/<DATASET>/<method>/<yaml name>[__...]/<seed>``
  like a row's, finished when its command has exited 0 (it writes no test summary: the
  runner writes ``step_done.json`` in its folder). ``script`` names a recipe's entry point
  other than ``train.py``. ``stages`` (a list of the yaml's stage names) is informative: the
  stages run are those the yaml declares (:func:`modules.recipe.declared_stages`) from the
  last one whose hand-over key (``init_from``, DIP's ``pretrained_frontend``) the row gives;
* ``not_runnable: <reason>``: the row has no command yet.

A row without ``run`` gets one derived from its ``match``: ``recipes/<dataset>/<method>/
train.py hparams/<hparams>.yaml`` with the other ``match`` keys as overrides. The
derivation fails (the row is "not yet", with the reason) when the recipe or yaml does not
exist, a ``match`` key is not a key of the yaml, ``experiment_name`` is matched to a value
the yaml does not have (the name of a run, not its configuration), a key is set by the
yaml's stages to another value, or the yaml has a ``!PLACEHOLDER`` that is neither a
corpus folder nor filled by its stages (an earlier run's folder: give ``run: inputs``).

Runs
----
A row x seed is one run of its recipe, in the folder
``<results>/<DATASET>/<method>/<yaml name>[__<key>-<value>...]/<seed>`` (the recipes' own
layout, ``results/<DATASET>/<method>/<name>/<seed>``, under ``--results``, default
``results/reproduce``): rows that need the same configuration (the same model tested on
several sets, SADDEL's Tables 1-3) share one run. A run is finished when it has the
``test_summary*.json`` of every test set its rows read and, for a yaml that declares
stages, the last stage's ``stage_done.json``: ``run`` skips it. Any other run is started
with the same command, which resumes it from the recipe's own checkpoints (a system whose
stages are all done but a test set is missing, e.g. one whose corpus is given now, runs
its last stage again with ``--stages=<last>``: it resumes at the end and tests). A run
planned up to a stage (an input ``{row, stage}``) is finished when that stage is, and runs
its unfinished stages up to it (``--stages=a,b``); an auxiliary step when it has its
``step_done.json``. A run
needs the corpora of its yaml's ``!PLACEHOLDER`` folders and of the folders its rows'
test sets read (``extra_test_sets``); the other corpus folders it has are passed when given.

Data preparation: each run prepares its own manifests (the recipe's prep writes them into
the run's ``save_folder``, beside its checkpoints, and skips when they are intact): the
recipes have no separate manifest folder to share (only SADDEL's ``prep_folder``, shared by
its stages). A corpus that a recipe *writes* (the DPCCN paper's simulated reverberant set,
:data:`GENERATED`) gets one folder for all runs, ``<results>/data/<DATASET>`` (or
``--data``): it is simulated once, by the first run. The SLURM launcher refuses to start
several jobs on a generated corpus that does not exist yet (run one row first).

Launchers: ``local`` runs each command in turn (its output in ``<run>/reproduce_log.txt``);
``torchrun`` runs each as ``torchrun --standalone --nproc_per_node=<gpus> recipes/.../train.py
...`` (SpeechBrain 1.x reads torchrun's ``RANK``/``LOCAL_RANK``: its
``--distributed_launch`` flag is not needed); ``slurm`` submits one job per run and stage
through ``submitit`` (each stage with ``--stages=<name>``, depending on its previous stage's
job with ``afterok``; a run that starts from another waits for that run's last job, or for
the job of the stage it names; a stage planned twice, in full and up to a stage, is one job),
resources from ``--gpus``, ``--time_min``, ``--partition``, ...,
or a yaml (``--slurm_config``); a job it submitted that is still pending or running is not
submitted again.

``--tiny`` runs the same rows with ``hparams/tiny.yaml`` (one thread, CPU) on miniature
corpora that it writes with :mod:`data_prep.mini` into ``<results>/mini_data`` (default
results ``results/reproduce_tiny``), to check a table's whole chain in minutes.

Collect
-------
``collect`` reads every run below the results folders (:func:`modules.results.collect_runs`),
fills the rows (:func:`modules.results.fill_tables`: the runs whose metadata match the
row's ``match``, mean and std over them) and writes, in ``<output_folder>`` (default
``<results>/tables/<PAPER>_<TABLE>``), ``table.md`` and ``table.csv`` in the paper's layout
(its rows; its columns, grouped by part where the paper's table has several), with the
paper's number, the measured mean +- std (number of runs) and the difference, and
``table.png``, paper vs measured per row and column. A row without runs reads "missing".
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from modules.files import write_csv_atomic, write_text_atomic
from modules.results import collect_runs, fill_tables, load_spec

REPO = Path(__file__).resolve().parents[1]
#: Seeds of ``run`` unless ``--seeds`` says otherwise.
DEFAULT_SEEDS = (1234, 1235, 1236)
#: Yaml keys of corpus folders -> the corpus (``data_folder`` is the recipe's own dataset).
DATA_KEYS = {
    "librimix_folder": "LibriMix",
    "aishell2mix_folder": "Aishell2Mix",
    "vox2mix_folder": "Vox2Mix",
    "lrs2mix_folder": "LRS2Mix",
    "realm_folder": "REALM",
    "wham_folder": "WHAM",
    "musan_folder": "MUSAN",
    "librispeech_folder": "LibriSpeech",
    "nonspeech_folder": "Nonspeech",
}
#: Corpora a recipe writes (simulates) into its ``data_folder``: one folder for every run.
GENERATED = {"ReverbLibriSpeech"}
#: How ``list`` and ``--dry_run`` spell a corpus folder not given (tests/test_doc_commands.py fills these).
PLACEHOLDER_NAMES = {
    "WHAM": "<WHAM root>",
    "LibriMix": "<LibriMix root>",
    "Aishell2Mix": "<Aishell2Mix root>",
    "Vox2Mix": "<Vox2Mix root>",
    "LRS2Mix": "<LRS2Mix root>",
    "REALM": "<REAL-M root>",
    "WSJ0Mix": "<WSJ0-mix root>",
    "MUSAN": "<MUSAN root>",
    "LibriSpeech": "<LibriSpeech root>",
    "Nonspeech": "<100 Nonspeech root>",
    "ReverbLibriSpeech": "<set folder>",
}
#: ``--tiny``: the mini corpus of each corpus (:data:`data_prep.mini.WRITERS` name, sizes, sub-folder to pass).
MINI = {
    "WHAM": ("wham", {"n_train": 3, "n_valid": 3, "n_test": 4, "sample_rates": (8000,), "modes": ("min",)}, ""),
    "LibriMix": (
        "librimix",
        {"n_train": 3, "n_valid": 1, "n_test": 2, "sample_rates": (8000, 16000), "modes": ("min",), "enrollment": True},
        "",
    ),
    "Aishell2Mix": ("aishell2mix", {"n_train": 3, "n_valid": 1, "n_test": 2}, ""),
    "Vox2Mix": ("vox2mix", {"n_train": 3, "n_valid": 1, "n_test": 2}, "VoxCeleb2-2Mix"),
    "LRS2Mix": ("lrs2mix", {"n_train": 3, "n_valid": 1, "n_test": 2}, ""),
    "REALM": ("realm", {"n_train": 3, "n_valid": 1, "n_test": 2}, ""),
    "WSJ0Mix": ("wsj0mix", {"n_train": 3, "n_valid": 3, "n_test": 4, "sample_rates": (8000,), "modes": ("min",)}, ""),
    "MUSAN": ("musan", {"n_train": 8, "n_valid": 1, "n_test": 1}, ""),
    "Nonspeech": ("nonspeech", {"n_train": 1, "n_valid": 1, "n_test": 2}, ""),
    "LibriSpeech": ("librispeech", {"n_train": 6, "n_valid": 6, "n_test": 12}, ""),
}
#: ``--tiny``: options of every run (the tiny model, CPU, one process) ...
TINY_OPTIONS = ("--overrides_file=hparams/tiny.yaml", "--device=cpu", "--noprogressbar")
#: ... and values for the keys a recipe has that the mini corpora need (as tests/test_doc_commands.py passes them).
TINY_VALUES = {"n_test": 3, "reverb_sizes": "[2,1,2]"}
#: How the torchrun launcher (and a SLURM job of several GPUs) starts a run: one machine, a free port.
TORCHRUN = ("torchrun", "--standalone")
#: Files a finished stage writes (modules.recipe.STAGE_DONE; not imported: ``list`` stays free of torch).
STAGE_DONE = "stage_done.json"
#: Written by the runner in an auxiliary step's folder when its command has exited 0 (it writes no test summary).
STEP_DONE = "step_done.json"
_SOURCE = re.compile(r"^\s*(?P<paper>[\w-]+)\s+paper,\s*(?P<kind>Table|Tab\.|Figure|Fig\.)\s*(?P<id>[\w.]+)", re.I)


class RegistryError(ValueError):
    """A registry row or a selection that cannot be used (one line, for the command line)."""


# ----------------------------------------------------------------------------- registry
@dataclass
class Run:
    """The command of a row: recipe, yaml, overrides, corpora, inputs from other rows' runs."""

    recipe: str
    yaml: str
    overrides: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # yaml key -> corpus
    optional_data: dict = field(default_factory=dict)  # keys filled when the corpus is given
    inputs: dict = field(default_factory=dict)  # yaml key -> "PAPER:TABLE/label", {row, stage} or a step's spec
    stages: list = field(default_factory=list)  # the declared stages it runs (informative)
    script: str = "train.py"  # the recipe's entry point
    input_runs: dict = field(default_factory=dict)  # yaml key -> Run of an auxiliary step (an inputs mapping)

    @property
    def hparams_path(self):
        return REPO / self.recipe / "hparams" / self.yaml

    @property
    def dataset(self):
        return Path(self.recipe).parts[1]

    @property
    def method(self):
        return Path(self.recipe).parts[2]

    def key(self):
        """What identifies the run (rows with the same key share it)."""
        return json.dumps([self.recipe, self.yaml, self.overrides, self.inputs], sort_keys=True, default=str)

    def folder_name(self):
        """``<yaml name>[__k-v__...]``, or a hash of the overrides when that gets long."""
        stem = Path(self.yaml).stem
        parts = [f"{k}-{_flat(v)}" for k, v in sorted(self.overrides.items())]
        parts += [f"{k}-{_input_name(v)}" for k, v in sorted(self.inputs.items())]
        slug = re.sub(r"[^A-Za-z0-9_.+-]+", "-", "__".join(parts)).strip("-")  # no '=': SpeechBrain splits on it
        if len(slug) > 150:
            slug = hashlib.sha1(slug.encode()).hexdigest()[:12]
        return f"{stem}__{slug}" if slug else stem

    def folder(self, results, seed):
        return Path(results) / self.dataset / self.method / self.folder_name() / str(seed)


@dataclass
class Row:
    """One registered row: where it is in its paper, its spec, and its command or why there is none."""

    paper: str
    table: str
    label: str
    spec: dict
    part: dict  # the yaml table holding the row (title, metrics or scenarios)
    run: Run | None = None
    reason: str | None = None

    @property
    def ref(self):
        return f"{self.paper}:{self.table}/{self.label}"

    @property
    def test_set(self):
        return self.spec.get("test_set", "test")


def _input_name(ref):
    """How a run's folder name spells one of its inputs: the row's label[, the stage], or the step's name.

    Example
    -------
    >>> _input_name("DPCCN:3/TSE sDPCCN"), _input_name({"row": "DIP:III/Sys. 13", "stage": "pretrain"})
    ('TSE sDPCCN', 'Sys. 13-pretrain')
    >>> _input_name({"step": "dip_plus", "recipe": "recipes/REALM/dip", "yaml": "pretrain_plus.yaml"})
    'dip_plus'
    """
    if not isinstance(ref, dict):
        return str(ref).split("/")[-1]
    if "row" in ref:
        return f"{str(ref['row']).split('/')[-1]}-{ref.get('stage')}"
    return str(ref.get("step") or Path(str(ref.get("yaml"))).stem)


def _flat(value):
    """An override value as the command line writes it (yaml flow for lists and mappings)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def paper_and_table(row):
    """``(paper, table)`` of a registry row: its ``paper_id``/``table``, else parsed from ``source``.

    Example
    -------
    >>> paper_and_table({"source": "NASS paper, Table 4 (16.3 in SpeechBrain's model card)"})
    ('NASS', '4')
    >>> paper_and_table({"source": "DIP paper, Fig. 4"}), paper_and_table({"paper_id": "DIP", "table": "II"})
    (('DIP', 'fig4'), ('DIP', 'II'))
    """
    paper, table = row.get("paper_id"), row.get("table")
    if paper is None or table is None:
        found = _SOURCE.match(str(row.get("source", "")))
        if found is None:
            raise RegistryError(
                f"row {row.get('label')!r}: give paper_id and table (source {row.get('source')!r} "
                "does not read '<PAPER> paper, Table <N>')"
            )
        kind = "fig" if found["kind"].lower().startswith("fig") else ""
        paper = paper if paper is not None else found["paper"]
        table = table if table is not None else kind + found["id"].rstrip(".")
    return str(paper), str(table)


def _yaml_doc(path):
    """A yaml file's round-trip document (tags kept, nothing built); read once per process (do not modify it)."""
    return _read_yaml(str(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_yaml(path, _mtime):
    import ruamel.yaml

    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f) or {}


def _placeholders(path):
    return re.findall(r"^(\w+):\s*!PLACEHOLDER", Path(path).read_text(encoding="utf-8"), flags=re.M)


def _plain_value(node):
    """A yaml node's plain value, or ``None`` for a tagged one (``!ref``, ``!new:``, ...)."""
    if getattr(getattr(node, "tag", None), "value", None):
        return None
    return node


def _stage_entries(doc):
    return [dict(e) for e in (doc.get("stages") or [])]


def _required_keys(doc, test_set):
    """The corpus folder keys an extra test set reads (``!ref <librispeech_folder>`` anywhere in its entry).

    :func:`modules.data.available_test_sets` leaves out a set whose ``requires`` or
    ``data_folder`` is null; its ``prepare`` may read more (SADDEL's Libri N_H set: the
    Nonspeech noise).

    Example
    -------
    >>> doc = {"extra_test_sets": {"x": {"requires": "<a_folder>", "prepare": {"noise": "<b_folder>/n"}}}}
    >>> sorted(_required_keys(doc, "x")), _required_keys(doc, "test")
    (['a_folder', 'b_folder'], set())
    """
    sets = doc.get("extra_test_sets")
    entry = sets.get(test_set) if hasattr(sets, "get") else None
    found, stack = set(), [entry]
    while stack:
        node = stack.pop()
        if hasattr(node, "values"):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif node is not None:
            found |= set(re.findall(r"<(\w+_folder)>", str(getattr(node, "value", node))))
    return found


def resolve_run(row, registry_rows=None):
    """``(Run, None)`` for a row with a command, ``(None, reason)`` for one without.

    Arguments
    ---------
    row : dict
        A registry row.
    registry_rows : dict, optional
        ``{"PAPER:TABLE/label": row dict}``: checks that a ``run: inputs`` reference exists.
    """
    if row.get("not_runnable"):
        return None, str(row["not_runnable"])
    spec = row.get("run")
    match = dict(row.get("match") or {})
    derived = spec is None
    if derived:
        missing = [k for k in ("dataset", "method", "hparams") if k not in match]
        if missing:
            return None, f"match has no {'/'.join(missing)} to derive the command from (give run:)"
        spec = {
            "recipe": f"recipes/{match.pop('dataset')}/{match.pop('method')}",
            "yaml": f"{match.pop('hparams')}.yaml",
            "overrides": match,
        }
    if not isinstance(spec, dict) or not spec.get("recipe") or not spec.get("yaml"):
        return None, "run: needs recipe and yaml"
    recipe = str(spec["recipe"]).rstrip("/")
    if len(Path(recipe).parts) != 3 or Path(recipe).parts[0] != "recipes":
        return None, f"run: recipe {recipe!r} is not recipes/<DATASET>/<method>"
    yaml_name = str(spec["yaml"]).removeprefix("hparams/")
    yaml_name = yaml_name if yaml_name.endswith((".yaml", ".yml")) else yaml_name + ".yaml"
    run = Run(recipe, yaml_name, dict(spec.get("overrides") or {}), inputs=dict(spec.get("inputs") or {}))
    run.script = str(spec.get("script") or "train.py")
    if not (REPO / recipe / run.script).is_file():
        return None, f"no recipe {recipe}/{run.script}"
    if not run.hparams_path.is_file():
        return None, f"no yaml {recipe}/hparams/{yaml_name}"
    doc = _yaml_doc(run.hparams_path)
    entries = _stage_entries(doc)
    run.stages = [str(e.get("name")) for e in entries]
    given = set(run.overrides) | set(run.inputs)
    for i, entry in enumerate(entries[1:], start=1):  # the row gives a stage's start: the stages before it do not run
        if str(entry.get("handover", "init_from")) in given:
            run.stages = [str(e.get("name")) for e in entries[i:]]
    keys = set(doc)
    for entry in entries:
        if entry.get("hparams"):
            stage_yaml = run.hparams_path.parent / str(entry["hparams"])
            if not stage_yaml.is_file():
                return None, f"stage {entry.get('name')}: no yaml {stage_yaml.relative_to(REPO)}"
            keys |= set(_yaml_doc(stage_yaml))
    last = dict(entries[-1].get("overrides") or {}) if entries else {}
    for key, value in list(run.overrides.items()):
        if key not in keys:
            return None, f"{key} is not a key of {yaml_name}" + (" (match key; give run:)" if derived else "")
        if key == "experiment_name" and derived and str(_plain_value(doc.get(key))) != str(value):
            return None, f"experiment_name={value} names a run, not its configuration (give run: overrides)"
        if key in last:
            if str(last[key]) != str(value):
                return None, f"{key}={value}: the last stage of {yaml_name} sets {key}={last[key]}"
            del run.overrides[key]  # the stages set it
    handovers = {str(e.get("handover", "init_from")) for e in entries[1:]}
    data = spec.get("data")
    if isinstance(data, dict):
        run.data = {str(k): str(v) for k, v in data.items()}
    elif data:
        for corpus in data:
            key = (
                "data_folder" if corpus == run.dataset else next((k for k, v in DATA_KEYS.items() if v == corpus), None)
            )
            if key is None or key not in keys:
                return None, f"run: data {corpus} has no key in {yaml_name} (give data: {{key: {corpus}}})"
            run.data[key] = str(corpus)
    for key in _placeholders(run.hparams_path):
        if key in run.data or key in run.overrides or key in run.inputs or key in handovers:
            continue
        if key == "data_folder":
            if any(DATA_KEYS.get(k) == run.dataset for k in doc):  # e.g. Aishell2Mix's remix: data_folder is LibriMix
                return None, f"data_folder of {yaml_name} is not its {run.dataset} folder (give run: data)"
            run.data[key] = run.dataset
        elif key in DATA_KEYS:
            run.data[key] = DATA_KEYS[key]
        else:
            return None, f"{yaml_name} needs {key} (an earlier run's folder: give run: inputs)"
    run.optional_data = {k: c for k, c in DATA_KEYS.items() if k in doc and k not in run.data and doc[k] is None}
    for key in _required_keys(doc, row.get("test_set", "test")) & set(run.optional_data):
        run.data[key] = run.optional_data.pop(
            key
        )  # the row's test set is tested with that corpus (SADDEL's Tables 2-3)
    for key, ref in run.inputs.items():
        if key not in keys:
            return None, f"inputs: {key} is not a key of {yaml_name}"
        if isinstance(ref, dict) and "recipe" in ref:  # an auxiliary step
            step, why = resolve_run({"run": ref}, registry_rows)
            if step is None:
                return None, f"inputs: {key}: step {ref.get('step')!r}: {why}"
            run.input_runs[key] = step
            continue
        if isinstance(ref, dict) and (set(ref) != {"row", "stage"} or not ref["row"] or not ref["stage"]):
            return None, (f"inputs: {key} is a row 'PAPER:TABLE/label', {{row: <that>, stage: <name>}} or a step "
                          f"{{step, recipe, yaml, ...}}, got {dict(ref)}")  # fmt: skip
        target = ref["row"] if isinstance(ref, dict) else ref
        if registry_rows is not None and target not in registry_rows:
            return None, f"inputs: {key} refers to {target!r}, not a registered row"
    return run, None


def _stage_problem(run, rows_by_ref):
    """Why a run's ``{row, stage}`` input (its steps' too) cannot be run, or ``None``."""
    for key, ref in run.inputs.items():
        if key in run.input_runs:
            problem = _stage_problem(run.input_runs[key], rows_by_ref)
        elif isinstance(ref, dict):
            source = rows_by_ref.get(ref["row"])
            if source is None or source.run is None:
                problem = f"inputs: {key} refers to {ref['row']!r}, which has no command"
            elif ref["stage"] not in source.run.stages:
                problem = f"inputs: {key}: the run of {ref['row']!r} has no stage {ref['stage']!r}"
            else:
                problem = None
        else:
            problem = None
        if problem:
            return problem
    return None


def load_rows(registry=None):
    """Every registered row (:class:`Row`), in registry order, commands resolved."""
    spec = load_spec(registry)
    found = []
    for part in spec.get("tables", []):
        for row_spec in part.get("rows", []):
            paper, table = paper_and_table(row_spec)
            found.append(Row(paper, table, str(row_spec["label"]), row_spec, part))
    by_ref = {row.ref: row.spec for row in found}
    for row in found:
        row.run, row.reason = resolve_run(row.spec, by_ref)
    rows_by_ref = {row.ref: row for row in found}
    for row in found:
        problem = row.run and _stage_problem(row.run, rows_by_ref)
        if problem:
            row.run, row.reason = None, problem
    return found


def _norm(text):
    return str(text).lower()


def select(rows, selection=None, labels=None):
    """The rows of ``PAPER`` or ``PAPER:TABLE`` (case-insensitive), optionally only those labelled ``labels``."""
    if selection:
        paper, _, table = selection.partition(":")
        chosen = [r for r in rows if _norm(r.paper) == _norm(paper) and (not table or _norm(r.table) == _norm(table))]
        if not chosen:
            tables = sorted({f"{r.paper}:{r.table}" for r in rows})
            raise RegistryError(f"no registered rows for {selection!r} (registered: {', '.join(tables)})")
    else:
        chosen = list(rows)
    if labels:
        known = {r.label for r in chosen}
        wrong = [label for label in labels if label not in known]
        if wrong:
            raise RegistryError(f"--rows {wrong} not in {selection} (rows: {sorted(known)})")
        chosen = [r for r in chosen if r.label in labels]
    return chosen


def coverage(rows):
    """``{paper: (runnable rows, rows)}`` in registry order.

    Example
    -------
    >>> rows = [Row("A", "1", "x", {}, {}, run=Run("r", "y")), Row("A", "1", "y", {}, {}, reason="no")]
    >>> coverage(rows)
    {'A': (1, 2)}
    """
    out = {}
    for row in rows:
        runnable, total = out.get(row.paper, (0, 0))
        out[row.paper] = (runnable + (row.run is not None), total + 1)
    return out


# ----------------------------------------------------------------------------- commands
def data_overrides(run, paths, results, strict=True):
    """``--key=path`` of the corpora a run reads: ``paths`` (``{corpus: folder}``), generated ones, placeholders."""
    out = []
    for key, corpus in run.data.items():
        if corpus in paths:
            out.append(f"--{key}={paths[corpus]}")
        elif corpus in GENERATED:
            out.append(f"--{key}={Path(results) / 'data' / corpus}")
        elif strict:
            raise RegistryError(f"{run.recipe}/hparams/{run.yaml} needs {corpus}: give --data {corpus}=PATH")
        else:
            out.append(f"--{key}={PLACEHOLDER_NAMES.get(corpus, f'<{corpus} root>')}")
    out += [f"--{k}={paths[c]}" for k, c in run.optional_data.items() if c in paths and k not in run.data]
    return out


def base_command(run):
    """``[recipe/train.py, yaml, --key=value ...]`` (no corpora, seed or output folder)."""
    return [
        f"{run.recipe}/{run.script}",
        f"hparams/{run.yaml}",
        *[f"--{k}={_flat(v)}" for k, v in run.overrides.items()],
    ]


def _tiny_values(run, paths):
    """The overrides a tiny run needs for the mini corpora (only keys the yaml has)."""
    keys = set(_yaml_doc(run.hparams_path))
    values = {k: v for k, v in TINY_VALUES.items() if k in keys and k not in run.overrides}
    if "training_signal_len" in keys and "reverb_sizes" in keys:
        values["training_signal_len"] = 16000  # the mini set's mixtures are short
    aishell = paths.get("Aishell2Mix")
    if aishell and "aishell2mix_cfg_folder" in keys:
        values["aishell2mix_cfg_folder"] = Path(aishell) / "lst"
    if aishell and "aishell2mix_aux_folder" in keys:
        values["aishell2mix_aux_folder"] = Path(aishell) / "lst"
    librimix = paths.get("LibriMix")
    if librimix and "aux_list" in keys:  # a few mini mixtures have no second utterance of a speaker
        values["aux_list"] = Path(librimix) / "lists" / f"libri{run.overrides.get('num_spks', 2)}mix"
    if {"ssl_loader", "ssl_size"} <= _run_keys(run) and "ssl_checkpoint" not in run.overrides:
        values.update(ssl_loader="torchaudio", ssl_size="tiny")  # context-aware teachers: tiny, random, no download
    return [f"--{k}={_flat(v)}" for k, v in values.items()]


def _run_keys(run):
    """The top-level keys of a run's yaml and of its stages' yamls."""
    doc = _yaml_doc(run.hparams_path)
    keys = set(doc)
    for entry in _stage_entries(doc):
        if entry.get("hparams"):
            keys |= set(_yaml_doc(run.hparams_path.parent / str(entry["hparams"])))
    return keys


def run_command(run, seed, folder, paths, results, launcher="local", gpus=1, tiny=False, inputs=None, strict=True):
    """The argv of one run (``inputs``: ``{key: folder}`` of the runs it starts from)."""
    argv = [*base_command(run), *data_overrides(run, paths, results, strict=strict)]
    argv += [f"--{k}={v}" for k, v in (inputs or {}).items()]
    argv += [f"--seed={seed}", f"--output_folder={folder}"]
    if "teacher_cache_folder" in _run_keys(run):  # one cache for the runs of every table (context-aware)
        argv.append(f"--teacher_cache_folder={Path(results) / 'teacher_cache'}")
    if tiny:
        argv += [*TINY_OPTIONS, *_tiny_values(run, paths)]
    if launcher == "torchrun" or (launcher == "slurm" and gpus > 1):
        if tiny:  # processes on the CPU: gloo (NCCL needs GPUs)
            argv.append("--distributed_backend=gloo")
        return [*TORCHRUN, f"--nproc_per_node={gpus}", *argv]
    return ["python" if launcher == "print" else sys.executable, *argv]


def compose(run, folder, overrides_file="hparams/tiny.yaml", build=True):
    """Loads a run's yaml (each stage's) as its recipe would, corpora and inputs as stand-in folders.

    The command line is parsed by :func:`modules.recipe.parse_arguments` (a misspelt key of
    an included block fails), every override must name a key of the yaml (or of a stage's
    yaml), and the yaml is loaded with ``load_hyperpyyaml`` (``build``: objects built, the
    tiny sizes of ``overrides_file`` keep that quick) or only its references resolved
    (:func:`modules.recipe.resolved_yaml`, nothing built). Raises ``SystemExit`` or an
    exception of hyperpyyaml when the configuration does not compose; returns the loaded
    hparams (of the last stage).
    """
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.run_opts import RunOptions

    from modules.recipe import declared_stages, parse_arguments, resolved_yaml, stage_overrides, top_level_keys

    folder = Path(folder)
    stand_ins = [f"--{k}={folder / 'corpora' / c}" for k, c in {**run.data, **run.optional_data}.items()]
    stand_ins += [f"--{k}={folder / 'inputs' / k}" for k in run.inputs]
    argv = [str(run.hparams_path), *base_command(run)[2:], *stand_ins, f"--output_folder={folder / 'out'}"]
    argv += [f"--overrides_file={overrides_file}"] if overrides_file else []
    recipe_dir = str(REPO / run.recipe)
    hparams_file, _, overrides = parse_arguments(argv, recipe_dir)
    stages = declared_stages(hparams_file, overrides)
    if not stages:
        unknown = sorted(set(overrides) - set(top_level_keys(hparams_file)) - set(RunOptions.__dataclass_fields__))
        if unknown:
            raise SystemExit(f"error: override(s) {unknown} are not keys of {run.yaml}")
        plans = [(hparams_file, overrides)]
    else:
        per_stage = stage_overrides(stages, str(REPO / run.recipe / run.script), argv)
        plans = []
        for i, (stage, given) in enumerate(zip(stages, per_stage)):
            mine = {**stage["overrides"], **given, "output_folder": stage["output_folder"]}
            if i > 0:
                mine.setdefault(stage["handover"], stages[i - 1]["output_folder"])
            plans.append((stage["hparams"], mine))
    hparams = None
    for path, mine in plans:
        if not build:
            hparams = resolved_yaml(path, mine)
            continue
        with open(path, encoding="utf-8") as f:
            hparams = load_hyperpyyaml(f, mine)
    return hparams


# ----------------------------------------------------------------------------- plan
@dataclass
class Planned:
    """One run of the plan: its rows, seed, folder, command and stages."""

    run: Run
    seed: int
    folder: Path
    rows: list
    command: list = field(default_factory=list)
    stages: list = field(default_factory=list)  # [(name, folder)] of the stages run, [] for a one-stage yaml
    after: list = field(default_factory=list)  # the Planned runs it starts from
    inputs: dict = field(default_factory=dict)  # yaml key -> their folders
    upto: str | None = None  # the last stage it runs (a stage another run starts from), None: all

    @property
    def needs_marker(self):
        """A step that no row reads and that declares no stages: the runner marks it done (:data:`STEP_DONE`)."""
        return not self.rows and not self.stages

    @property
    def name(self):
        return f"{self.run.dataset}/{self.run.method}/{self.run.folder_name()}/{self.seed}"

    def test_folder(self):
        return Path(self.stages[-1][1]) if self.stages else self.folder

    def finished(self):
        """The last stage is done and every test set its rows read has its summary."""
        if self.stages and not (Path(self.stages[-1][1]) / STAGE_DONE).is_file():
            return False
        if not self.rows:  # a stage another run starts from, or an auxiliary step: no test set read
            return bool(self.stages) or (self.folder / STEP_DONE).is_file()
        names = {r.test_set for r in self.rows}
        return all((self.test_folder() / _summary_name(name)).is_file() for name in names)

    def stage_finished(self, index):
        return (Path(self.stages[index][1]) / STAGE_DONE).is_file()

    def command_to_finish(self):
        """The command, or for a system whose stages are done but a test set is not, its last stage again.

        The recipe skips a finished stage; ``--stages=<last>`` runs it anyway: its checkpoints
        are at the end of training, so it tests (e.g. a set whose corpus is given now). A run
        that stops at a stage (``upto``) runs its unfinished stages up to it, ``--stages=a,b``.
        """
        if self.upto is not None:
            todo = [name for i, (name, _) in enumerate(self.stages) if not self.stage_finished(i)]
            return [*self.command, f"--stages={','.join(todo)}"]
        if self.stages and self.stage_finished(len(self.stages) - 1) and not self.finished():
            return [*self.command, f"--stages={self.stages[-1][0]}"]
        return list(self.command)


def _summary_name(test_set):
    return "test_summary.json" if test_set == "test" else f"test_summary_{test_set}.json"


def _declared_stages(run, overrides, folder):
    """``[(name, folder)]`` of the stages the run's yaml declares with these overrides (``[]`` for none)."""
    if not run.stages:
        return []
    from modules.recipe import declared_stages  # torch and SpeechBrain: only when running

    stages = declared_stages(str(run.hparams_path), {**overrides, "output_folder": str(folder)})
    return [(s["name"], s["output_folder"]) for s in stages or [] if s["name"] in run.stages]


def plan_runs(rows, seeds, results, paths, launcher="local", gpus=1, tiny=False, all_rows=None, strict=True):
    """The runs of ``rows`` x ``seeds`` (and the runs their ``inputs`` start from, first), one per configuration.

    An input ``{row, stage}`` plans that row's run up to the stage (``upto``; a separate item
    from the row's full run, same folder); an auxiliary step plans its run (no rows).
    """
    by_ref = {r.ref: r for r in (all_rows or rows)}
    planned = {}

    def place(run, seed, row=None, upto=None, stack=()):
        key = (run.key(), seed, upto)
        if key in planned:
            item = planned[key]
            if row is not None and row not in item.rows:
                item.rows.append(row)
            if row is not None and set(row.run.data) - set(item.run.data):  # its test set needs another corpus
                item.run = replace(item.run, data={**item.run.data, **row.run.data})
                item.command = run_command(item.run, seed, item.folder, paths, results, launcher, gpus, tiny,
                                           item.inputs, strict)  # fmt: skip
            return item
        ident = row.ref if row is not None else key[0]
        if ident in stack:
            raise RegistryError(f"inputs of {row.ref if row is not None else run.recipe} form a cycle")
        after, inputs = [], {}
        for name, ref in run.inputs.items():
            if name in run.input_runs:  # an auxiliary step
                earlier = place(run.input_runs[name], seed, stack=(*stack, ident))
            else:
                target, stage = (ref["row"], ref["stage"]) if isinstance(ref, dict) else (ref, None)
                source = by_ref.get(target)
                if source is None or source.run is None:
                    raise RegistryError(f"{ident}: inputs {name} refers to {target}, which has no command")
                earlier = place(source.run, seed, None if stage else source, stage, (*stack, ident))
            after.append(earlier)
            inputs[name] = earlier.test_folder()  # a staged run's model: its last (or named) stage's folder
        folder = run.folder(results, seed)
        item = Planned(run, seed, folder, [row] if row is not None else [], after=after, inputs=inputs, upto=upto)
        item.command = run_command(run, seed, folder, paths, results, launcher, gpus, tiny, inputs, strict)
        item.stages = _declared_stages(run, dict(run.overrides), folder)
        if upto is not None:
            names = [name for name, _ in item.stages]
            if upto not in names:
                raise RegistryError(f"{run.recipe}/hparams/{run.yaml}: no stage {upto!r} (stages: {names})")
            item.stages = item.stages[: names.index(upto) + 1]
        planned[key] = item
        return item

    for seed in seeds:
        for row in rows:
            if row.run is not None:
                place(row.run, seed, row)
    return list(planned.values())  # dependencies are added before the runs that need them


def chain(run, rows_by_ref):
    """The runs a row's command starts from through stage and step inputs, in order, then the command itself.

    Returns ``[(what, run, upto, {key: folder text})]`` with symbolic folders (``<output folder of
    step N>``; no torch: for ``list``). An input ``"PAPER:TABLE/label"`` is a row of its own,
    listed with its command: ``<the run of PAPER:TABLE/label>``.
    """
    out = []

    def visit(run, what, upto=None):
        inputs = {}
        for key, ref in run.inputs.items():
            if key in run.input_runs:
                number = visit(run.input_runs[key], f"step {_input_name(ref)}")
                inputs[key] = f"<output folder of {number}>"
            elif isinstance(ref, dict):
                what_ = f"stage {ref['stage']} of the run of {ref['row']}"
                number = visit(rows_by_ref[ref["row"]].run, what_, ref["stage"])
                inputs[key] = f"<output folder of {number}>/{ref['stage']}"
            else:
                inputs[key] = f"<the run of {ref}>"
        out.append((what, run, upto, inputs))
        return len(out)

    visit(run, None)
    return out


# ----------------------------------------------------------------------------- launchers
def _env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def launch_local(plan, dry_run=False, tiny=False):
    """Runs the plan's unfinished runs one after the other; returns the failed ones."""
    failed = []
    for item in plan:
        if item.finished():
            print(f"[done]    {item.name}")
            continue
        if any(dep in failed for dep in item.after):
            print(f"[blocked] {item.name}: an input run failed")
            failed.append(item)
            continue
        command = item.command_to_finish()
        print(f"[run]     {item.name}\n          {shlex.join(command)}", flush=True)
        if dry_run:
            continue
        item.folder.mkdir(parents=True, exist_ok=True)
        env = _env()
        if tiny:
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(item.folder / "reproduce_log.txt", "a", encoding="utf-8") as log:
            proc = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        if proc.returncode == 0 and item.needs_marker:
            mark_done(item.folder / STEP_DONE, command)
        if proc.returncode != 0 or not item.finished():
            print(f"[failed]  {item.name} (exit {proc.returncode}; log: {item.folder / 'reproduce_log.txt'})")
            failed.append(item)
    return failed


def mark_done(path, command):
    """Writes an auxiliary step's :data:`STEP_DONE` (its command, when)."""
    record = {"command": list(command), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


#: Defaults of the SLURM resources (``--slurm_config`` yaml keys and options of the same names).
SLURM_DEFAULTS = {
    "gpus": 1,
    "cpus_per_task": 8,
    "mem_gb": 64,
    "time_min": 2880,
    "partition": None,
    "account": None,
    "qos": None,
    "cluster": "slurm",
    "additional": {},
}


@dataclass
class Submission:
    """A submitted job: name, command, the executor's parameters, the jobs it waits for, the submitit job."""

    name: str
    command: list
    parameters: dict
    depends_on: list
    job: object = None


def _command_function(command, done=None):
    import submitit

    # no env: the job keeps the node's environment (SLURM's CUDA_VISIBLE_DEVICES, ...), not this machine's
    function = submitit.helpers.CommandFunction(command, cwd=str(REPO))
    return function if done is None else MarkedCommand(function, done)


class MarkedCommand:
    """A job that runs a command (a submitit ``CommandFunction``), then writes its step's :data:`STEP_DONE`.

    The command raises when it exits non-zero: then nothing is written.
    """

    def __init__(self, function, done):
        self.function, self.done = function, str(done)

    def __call__(self):
        out = self.function()
        mark_done(self.done, self.function.command)
        return out


def slurm_parameters(resources, name, depends_on):
    """The submitit ``AutoExecutor`` parameters of one job."""
    extra = dict(resources.get("additional") or {})
    if depends_on:
        extra["dependency"] = "afterok:" + ":".join(str(j) for j in depends_on)
    params = {
        "name": name,
        "timeout_min": int(resources["time_min"]),
        "gpus_per_node": int(resources["gpus"]),
        "cpus_per_task": int(resources["cpus_per_task"]),
        "mem_gb": int(resources["mem_gb"]),
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_additional_parameters": extra,
    }
    for key in ("partition", "account", "qos"):
        if resources.get(key):
            params[f"slurm_{key}"] = resources[key]
    return params


#: SLURM states of a job that will still run: a rerun does not submit its run again.
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
#: The jobs submitted (``{job name: job id}``), in the submitit folder.
JOBS_FILE = "reproduce_jobs.json"


def slurm_state(job_id, folder):
    """The SLURM state of a job (``sacct`` through submitit; ``UNKNOWN`` when it cannot be asked)."""
    import submitit

    try:
        return str(submitit.SlurmJob(folder=str(folder), job_id=str(job_id)).state)
    except Exception:  # no sacct here, a job id of another executor, ...
        return "UNKNOWN"


def launch_slurm(plan, resources, log_folder, dry_run=False, make_callable=None, executor=None, job_state=None):
    """Submits one job per unfinished run and stage, each stage after its previous stage's job (``afterok``).

    Arguments
    ---------
    plan : list of Planned
    resources : dict
        :data:`SLURM_DEFAULTS` keys.
    log_folder : str or Path
        submitit's folder (job scripts, logs).
    dry_run : bool
        Print the jobs, submit nothing.
    make_callable : callable, optional
        ``(command, planned, stage) -> callable`` the job runs (default: the command,
        ``submitit.helpers.CommandFunction``); the tests pass a fake.
    executor : submitit executor, optional
        Default ``submitit.AutoExecutor(log_folder, cluster=resources["cluster"])``.
    job_state : callable, optional
        ``job id -> SLURM state`` (default :func:`slurm_state`): a job submitted by an
        earlier call (``<log_folder>/reproduce_jobs.json``) that is still queued or running
        (:data:`ACTIVE_STATES`) is not submitted again; later stages wait for it.

    Returns
    -------
    list of Submission
    """
    generated = {}
    for item in plan:
        for corpus in set(item.run.data.values()) & GENERATED:
            if not item.finished():
                generated.setdefault(corpus, []).append(item)
    for corpus, items in generated.items():
        folder = next(a.split("=", 1)[1] for a in items[0].command if a.startswith(f"--{_data_key(items[0], corpus)}="))
        if len(items) > 1 and not any(Path(folder).glob("*.csv")):
            raise RegistryError(
                f"{len(items)} jobs would simulate {corpus} into {folder} at once: run one of them "
                "first (--launcher local --rows ...), then submit"
            )
    if executor is None and not dry_run:
        import submitit

        executor = submitit.AutoExecutor(folder=str(log_folder), cluster=resources.get("cluster") or "slurm")
    make_callable = make_callable or (
        lambda command, item, stage: _command_function(command, item.folder / STEP_DONE if item.needs_marker else None)
    )
    job_state = job_state or (lambda job_id: slurm_state(job_id, log_folder))
    record = Path(log_folder) / JOBS_FILE
    jobs = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    submissions, last_job, this_call = [], {}, {}
    for item in plan:
        if item.finished():
            print(f"[done]    {item.name}")
            continue
        waits = [last_job[id(dep)] for dep in item.after if id(dep) in last_job]
        stages = item.stages or [(None, item.folder)]
        for index, (stage, _) in enumerate(stages):
            if stage is not None and item.stage_finished(index) and index < len(stages) - 1:
                continue  # the last stage runs again when a test set is missing (command_to_finish)
            command = [*item.command, f"--stages={stage}"] if stage else list(item.command)
            name = f"{item.name}" + (f":{stage}" if stage else "")
            if name in this_call:  # the same stage of a run planned twice (in full, and up to a stage another needs)
                waits = [this_call[name]]
                continue
            earlier = jobs.get(name)
            if earlier is not None and job_state(earlier) in ACTIVE_STATES:
                print(f"[queued]  {name}: job {earlier}, submitted earlier")
                this_call[name] = earlier
                waits = [earlier]
                continue
            params = slurm_parameters(resources, name, waits)
            sub = Submission(name, command, params, list(waits))
            print(
                f"[submit]  {name}"
                + (f" after {', '.join(map(str, waits))}" if waits else "")
                + f"\n          {shlex.join(command)}"
            )
            if not dry_run:
                executor.update_parameters(**params)
                sub.job = executor.submit(make_callable(command, item, stage))
                jobs[name] = sub.job.job_id
                waits = [sub.job.job_id]
            else:
                waits = [name]
            this_call[name] = waits[0]
            submissions.append(sub)
        if waits:
            last_job[id(item)] = waits[0]
    if not dry_run and submissions:
        write_text_atomic(record, json.dumps(jobs, indent=2, sort_keys=True) + "\n")
    return submissions


def _data_key(item, corpus):
    return next(k for k, c in item.run.data.items() if c == corpus)


# ----------------------------------------------------------------------------- tiny corpora
def mini_corpora(corpora, folder):
    """``{corpus: path}`` of mini copies of ``corpora`` in ``folder`` (written once; reused when complete)."""
    from data_prep import mini

    out = {}
    for corpus in corpora:
        if corpus in GENERATED:
            continue
        if corpus not in MINI:
            raise RegistryError(f"--tiny: no mini corpus for {corpus} (give --data {corpus}=PATH)")
        writer, sizes, sub = MINI[corpus]
        done = Path(folder) / f".{writer}.done"
        if done.is_file():
            root = Path(done.read_text(encoding="utf-8").strip())
        else:
            root = mini.make_mini(writer, folder, seed=0, **sizes)[writer]
            write_text_atomic(done, f"{root}\n")
        out[corpus] = Path(root) / sub if sub else Path(root)
    return out


# ----------------------------------------------------------------------------- collect
def _groups(parts):
    """Column groups of a paper table's parts: parts with the same columns and different rows share one.

    A part (a yaml table) holding rows of another with the same columns is the same systems
    tested on another set: its own group, named by its ``group`` key or its rows' usual test
    set. Returns ``[(name, [part, ...])]``; the name is ``""`` when there is one group.
    """
    groups = []
    for part in parts:
        columns = list(part.get("scenarios") or part.get("metrics", ["si-snr_i", "sdr_i"]))
        labels = {r["label"] for r in part.get("rows", [])}
        home = next((g for g in groups if g[1] == columns and not labels & g[2] and not part.get("group")), None)
        if home is None:
            sets = [r.get("test_set", "test") for r in part.get("rows", [])]
            name = str(part.get("group") or (max(dict.fromkeys(sets), key=sets.count) if sets else "test"))
            while name in [g[0] for g in groups]:
                name += "'"
            groups.append([name, columns, set(labels), [part]])
        else:
            home[2] |= labels
            home[3].append(part)
    if len(groups) == 1:
        groups[0][0] = ""
    return [(name, members) for name, _, _, members in groups]


def collect_table(rows, paths):
    """The paper's layout of ``rows`` (one paper table) from the runs below ``paths``.

    Returns
    -------
    labels : list of str
        The paper's rows, in order.
    columns : list of (group name, column)
    cells : dict
        ``{(label, group, column): filled}`` with ``paper``, ``measured``, ``std``, ``diff``, ``n_runs``.
    titles : dict
        ``{group name: the yaml tables' titles}``.
    """
    records = collect_runs(paths)
    parts, seen = [], set()
    for row in rows:
        if id(row.part) not in seen:
            seen.add(id(row.part))
            parts.append(row.part)
    chosen = {id(r.spec) for r in rows}
    labels, columns, cells, titles = [], [], {}, {}
    for name, members in _groups(parts):
        spec = {"tables": [{**p, "rows": [r for r in p.get("rows", []) if id(r) in chosen]} for p in members]}
        filled_parts = fill_tables(spec, records)
        titles[name] = "; ".join(title for title, _, _ in filled_parts)
        columns += [(name, m) for m in filled_parts[0][1]]
        for _, metrics, filled in filled_parts:
            for row in filled:
                if row["label"] not in labels:
                    labels.append(row["label"])
                for m in metrics:
                    cells[(row["label"], name, m)] = {
                        "paper": row[f"{m} paper"],
                        "measured": row[f"{m} measured"],
                        "std": row[f"{m} std"],
                        "diff": row[f"{m} diff"],
                        "n_runs": row["n_runs"],
                    }
    return labels, columns, cells, titles


def _number(value):
    return "missing" if value is None else f"{value:.2f}"


def table_markdown(key, labels, columns, cells, titles):
    """Markdown of :func:`collect_table`: per column the paper's number, measured mean +- std (runs), difference."""
    heads = [f"{part} {col}".strip() for part, col in columns]
    header = ["Row", *[f"{h} {k}" for h in heads for k in ("paper", "measured", "Δ")]]
    lines = [f"### {key}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in labels:
        out = [label]
        for part, col in columns:
            cell = cells.get((label, part, col))
            if cell is None:
                out += ["", "", ""]
                continue
            measured = "missing" if cell["measured"] is None else f"{cell['measured']:.2f}"
            if cell["std"] is not None:
                measured += f" ± {cell['std']:.2f}"
            if cell["measured"] is not None:
                measured += f" ({cell['n_runs']})"
            out += [
                _number(cell["paper"]) if cell["paper"] is not None else "—",
                measured,
                "missing" if cell["diff"] is None and cell["measured"] is None else _signed(cell["diff"]),
            ]
        lines.append("| " + " | ".join(out) + " |")
    lines += ["", *[f"- {part or 'table'}: {title}" for part, title in titles.items()]]
    return "\n".join(lines) + "\n"


def _signed(value):
    return "—" if value is None else f"{value:+.2f}"


def table_csv_rows(labels, columns, cells):
    """The wide CSV of :func:`collect_table`: a line per row, paper/measured/std/runs/diff per column."""
    header = ["row"]
    for part, col in columns:
        name = f"{part} {col}".strip()
        header += [f"{name} paper", f"{name} measured", f"{name} std", f"{name} runs", f"{name} diff"]
    out = []
    for label in labels:
        line = {"row": label}
        for part, col in columns:
            name = f"{part} {col}".strip()
            cell = cells.get((label, part, col)) or {}
            line.update(
                {
                    f"{name} paper": "" if cell.get("paper") is None else cell["paper"],
                    f"{name} measured": "missing" if cell.get("measured") is None else round(cell["measured"], 4),
                    f"{name} std": "" if cell.get("std") is None else round(cell["std"], 4),
                    f"{name} runs": cell.get("n_runs", 0),
                    f"{name} diff": "" if cell.get("diff") is None else round(cell["diff"], 4),
                }
            )
        out.append(line)
    return header, out


def table_figure(key, labels, columns, cells, output):
    """Bars of the paper's number and the measured mean (+- std) per row and column; missing runs marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = [(label, part, col) for label in labels for part, col in columns if (label, part, col) in cells]
    x = np.arange(len(pairs))
    paper = [cells[p]["paper"] for p in pairs]
    measured = [cells[p]["measured"] for p in pairs]
    std = [cells[p]["std"] or 0.0 for p in pairs]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(pairs) + 2), 4.5))
    width = 0.38
    ax.bar(x - width / 2, [np.nan if v is None else v for v in paper], width, label="paper", color="tab:gray")
    ax.bar(
        x + width / 2,
        [np.nan if v is None else v for v in measured],
        width,
        yerr=std,
        capsize=2,
        label="measured (mean ± std)",
        color="tab:blue",
    )
    for i, value in enumerate(measured):
        if value is None:
            ax.text(x[i] + width / 2, 0, "missing", rotation=90, ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{label}\n{part} {col}".strip() for label, part, col in pairs], rotation=60, ha="right", fontsize=7
    )
    ax.set_ylabel("dB")
    ax.set_title(f"{key}: paper vs measured")
    ax.legend()
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def collect(selection, paths, output_folder, registry=None):
    """Writes ``table.md``, ``table.csv`` and ``table.png`` of a paper table; returns the cells."""
    if ":" not in selection:
        raise RegistryError(f"collect takes one table, PAPER:TABLE (got {selection!r})")
    rows = select(load_rows(registry), selection)
    key = f"{rows[0].paper}:{rows[0].table}"
    labels, columns, cells, titles = collect_table(rows, paths)
    out = Path(output_folder)
    out.mkdir(parents=True, exist_ok=True)
    markdown = table_markdown(key, labels, columns, cells, titles)
    write_text_atomic(out / "table.md", markdown)
    header, lines = table_csv_rows(labels, columns, cells)
    write_csv_atomic(out / "table.csv", header, lines)
    table_figure(key, labels, columns, cells, out / "table.png")
    print(markdown)
    print(f"Written: {out / 'table.md'}, {out / 'table.csv'}, {out / 'table.png'}")
    return cells


# ----------------------------------------------------------------------------- command line
def _list_command(run, inputs, upto=None):
    """A run's command as ``list`` prints it: placeholders for the corpora, no seed or output folder."""
    command = run_command(run, "<seed>", "<output folder>", {}, "<results>", launcher="print", strict=False)
    command = [a for a in command if not a.startswith(("--seed=", "--output_folder="))]
    command += [f"--{k}={v}" for k, v in inputs.items()]
    if upto is not None:
        command.append(f"--stages={','.join(run.stages[: run.stages.index(upto) + 1])}")
    return shlex.join(command)


def print_list(rows, selection=None, all_rows=None):
    """The ``list`` report: rows with status and command (or chain of commands), then the coverage per paper."""
    rows_by_ref = {r.ref: r for r in (all_rows or rows)}
    order = list(dict.fromkeys(f"{r.paper}:{r.table}" for r in rows))
    current = None
    for row in sorted(rows, key=lambda r: order.index(f"{r.paper}:{r.table}")):  # stable: the registry's row order
        key = f"{row.paper}:{row.table}"
        if key != current:
            print(f"\n{key}")
            current = key
        if row.run is None:
            print(f"  - {row.label} [{row.test_set}]: not yet ({row.reason})")
            continue
        stages = f" (stages: {' -> '.join(row.run.stages)})" if row.run.stages else ""
        steps = chain(row.run, rows_by_ref)
        if len(steps) == 1:  # inputs of other rows only (listed with their commands)
            inputs = "".join(f" (--{k}= the run of {v})" for k, v in row.run.inputs.items())
            print(f"  - {row.label} [{row.test_set}]: runnable{stages}\n      {_list_command(row.run, {})}{inputs}")
            continue
        print(f"  - {row.label} [{row.test_set}]: runnable{stages}, {len(steps)} commands in turn")
        for number, (what, run, upto, inputs) in enumerate(steps, start=1):
            print(f"      {number}. {_list_command(run, inputs, upto)}" + (f"  ({what})" if what else ""))
    print("\nCoverage: " + "; ".join(f"{p}: {n} of {t} rows runnable" for p, (n, t) in coverage(rows).items()))


def _upstream_runs(run, rows_by_ref):
    """A run and every run its inputs start from (rows', stages', steps'), recursively."""
    out, stack = [], [run]
    while stack:
        current = stack.pop()
        if any(current is seen for seen in out):
            continue
        out.append(current)
        for key, ref in current.inputs.items():
            target = ref.get("row") if isinstance(ref, dict) else ref
            source = current.input_runs.get(key) or getattr(rows_by_ref.get(target), "run", None)
            if source is not None:
                stack.append(source)
    return out


def _data_paths(items):
    paths = {}
    for item in items or []:
        corpus, sep, path = item.partition("=")
        if not sep or not corpus or not path:
            raise RegistryError(f"--data takes DATASET=PATH, got {item!r}")
        paths[corpus] = Path(path).expanduser().absolute()
    return paths


def _resources(args):
    resources = dict(SLURM_DEFAULTS)
    if args.slurm_config:
        import ruamel.yaml

        with open(args.slurm_config, encoding="utf-8") as f:
            given = ruamel.yaml.YAML(typ="safe", pure=True).load(f) or {}
        unknown = sorted(set(given) - set(SLURM_DEFAULTS))
        if unknown:
            raise RegistryError(f"{args.slurm_config}: unknown keys {unknown} (known: {sorted(SLURM_DEFAULTS)})")
        resources.update(given)
    for key in ("gpus", "cpus_per_task", "mem_gb", "time_min", "partition", "account", "qos"):
        if getattr(args, key, None) is not None:
            resources[key] = getattr(args, key)
    return resources


def run(args):
    """``run``: plan the rows x seeds, then launch the unfinished runs; returns the exit code."""
    all_rows = load_rows(args.registry)
    rows = select(all_rows, args.table, args.rows)
    skipped = [r for r in rows if r.run is None]
    for row in skipped:
        print(f"[not yet] {row.label}: {row.reason}")
    results = Path(args.results or ("results/reproduce_tiny" if args.tiny else "results/reproduce")).absolute()
    paths = _data_paths(args.data)
    if args.tiny:
        # the optional corpora too: SADDEL's test conditions need LibriSpeech and Nonspeech together
        by_ref = {r.ref: r for r in all_rows}
        runs = [run for r in rows if r.run for run in _upstream_runs(r.run, by_ref)]
        needed = {c for run in runs for c in [*run.data.values(), *run.optional_data.values()]}
        needed -= set(paths)
        # a LibriMix is made from the LibriSpeech it is given: the mini LibriMix's enrollment lists name the
        # utterances of its own partial LibriSpeech, so a table that needs both reads that one
        librispeech_of_librimix = {"LibriSpeech", "LibriMix"} <= needed
        needed -= {"LibriSpeech"} if librispeech_of_librimix else set()
        if not args.dry_run:
            paths.update(mini_corpora(sorted(needed), results / "mini_data"))
        else:
            paths.update({c: results / "mini_data" / c for c in needed})
        if librispeech_of_librimix:
            paths["LibriSpeech"] = paths["LibriMix"] / "LibriSpeech"
    resources = _resources(args)
    gpus = int(resources["gpus"]) if args.launcher != "local" else 1
    runnable = [r for r in rows if r.run]
    plan = plan_runs(runnable, args.seeds, results, paths, args.launcher, gpus, args.tiny, all_rows, not args.dry_run)
    if args.launcher == "slurm":
        launch_slurm(plan, resources, results / "slurm", dry_run=args.dry_run)
        return 0
    failed = launch_local(plan, dry_run=args.dry_run, tiny=args.tiny)
    done = sum(item.finished() for item in plan)
    print(f"{done} of {len(plan)} runs finished" + (f"; failed: {', '.join(i.name for i in failed)}" if failed else ""))
    if not args.dry_run:
        print(f"Collect: python -m modules.reproduce collect {args.table} {results}")
    return 1 if failed else 0


def build_parser():
    """Command-line parser of ``python -m modules.reproduce``.

    Example
    -------
    >>> args = build_parser().parse_args(["run", "NASS:4", "--seeds", "1", "2", "--dry_run"])
    >>> args.table, args.seeds, args.launcher, args.dry_run
    ('NASS:4', [1, 2], 'local', True)
    """
    parser = argparse.ArgumentParser(
        prog="python -m modules.reproduce",
        description="Reproduce a paper's table: list its rows, run them, collect them",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="registry file or folder (default: modules/paper_tables/, one yaml per paper)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("list", help="rows, their commands and status, coverage per paper")
    show.add_argument("table", nargs="?", default=None, help="PAPER or PAPER:TABLE (default: every row)")
    go = sub.add_parser("run", help="run the unfinished rows of a table")
    go.add_argument("table", help="PAPER:TABLE (or PAPER: all its tables)")
    go.add_argument("--rows", nargs="+", default=None, help="only these row labels")
    go.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    go.add_argument("--launcher", choices=["local", "torchrun", "slurm"], default="local")
    go.add_argument("--dry_run", action="store_true", help="print the commands (or jobs), run nothing")
    go.add_argument("--tiny", action="store_true", help="tiny models on mini corpora written into <results>/mini_data")
    go.add_argument(
        "--data", nargs="+", default=None, metavar="DATASET=PATH", help="corpus folders, e.g. WHAM=/data/wham"
    )
    go.add_argument("--results", default=None, help="results root (default results/reproduce, results/reproduce_tiny)")
    go.add_argument("--gpus", type=int, default=None, help="GPUs per run (torchrun, slurm; default 1)")
    go.add_argument("--slurm_config", default=None, help=f"yaml of SLURM resources ({', '.join(SLURM_DEFAULTS)})")
    for key in ("cpus_per_task", "mem_gb", "time_min"):
        go.add_argument(f"--{key}", type=int, default=None, help=f"SLURM (default {SLURM_DEFAULTS[key]})")
    for key in ("partition", "account", "qos"):
        go.add_argument(f"--{key}", default=None, help="SLURM")
    gather = sub.add_parser("collect", help="the table in the paper's layout with the measured numbers")
    gather.add_argument("table", help="PAPER:TABLE")
    gather.add_argument("results", nargs="*", default=None, help="folders of runs (default results/reproduce)")
    gather.add_argument("--output_folder", default=None, help="default <first results folder>/tables/<PAPER>_<TABLE>")
    return parser


def main(argv=None):
    """Entry point of ``python -m modules.reproduce``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            rows = load_rows(args.registry)
            print_list(select(rows, args.table), all_rows=rows)
            return 0
        if args.command == "run":
            return run(args)
        paths = args.results or ["results/reproduce"]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise RegistryError(f"no results folder {', '.join(missing)}")
        out = args.output_folder or Path(paths[0]) / "tables" / args.table.replace(":", "_")
        collect(args.table, paths, out, args.registry)
        return 0
    except (RegistryError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
