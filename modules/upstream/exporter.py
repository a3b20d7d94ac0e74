"""Exports one of our recipes as an upstream SpeechBrain recipe folder.

``export_recipe("recipes/WHAM/nass", "out")`` writes, under ``out`` (laid
out as the root of SpeechBrain's repository)::

    recipes/WHAMandWHAMR/separation/nass/
        train.py                 the Brain classes and the steps of a run (modules.upstream.code)
        <local modules>.py       models, losses, metrics, data pipeline, file helpers
        <dataset>_<method>_prepare.py   the dataset's preparation (its helpers as prep_*.py)
        hparams/<name>.yaml      each recipe yaml with its includes written in (modules.upstream.yamlflat)
        extra_requirements.txt   what the code imports that SpeechBrain does not require
        README.md
    tests/recipes/WHAMandWHAMR.csv   the registry rows of these yamls (other rows kept)

The folder is ``recipes/<upstream dataset>/<task>/<method>``: the method level
keeps a method apart from the others and from upstream's own
``recipes/WHAMandWHAMR/separation/train.py``. Every yaml of the recipe is
exported at once (one ``train.py`` serves them all, so the code is the union
of what the yamls name); exporting again replaces the folder.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from modules.upstream.code import build_local_module, build_train, plan_export, reachable_moved
from modules.upstream.graph import YAML_TAG, ExportError, ModuleGraph, is_ours, is_stdlib
from modules.upstream.readme import _docstring_summary, exported_readme
from modules.upstream.reads import hparam_reads
from modules.upstream.registry import DATASETS, write_rows
from modules.upstream.samples import SAMPLE_DEV, SAMPLE_TRAIN, debug_checks, load_blocker, sample_flags
from modules.upstream.yamlflat import (
    LIFTED,
    _code_part,
    check_equivalent,
    drop_entries,
    flatten_yaml,
    split_entries,
    variables_to_read,
)

__all__ = [
    "RUFF_CONFIG",
    "ExportResult",
    "export_recipe",
    "extra_requirements",
    "find_ruff",
    "installed_with",
    "recipe_yamls",
    "ruff_fix",
    "script_for",
]

REPO = Path(__file__).resolve().parents[2]
RUFF_CONFIG = Path(__file__).resolve().parent / "core" / "ruff.toml"
TASK = "separation"
#: Rules an export cannot meet before a full-scale run: (rule, reason).
PENDING = (
    (
        "Result_url",
        "Result_url is empty: SpeechBrain asks for the URL of a full run's output folder (logs, checkpoints), "
        "and no full-scale run has been made yet (tests/consistency/README.md marks it mandatory)",
    ),
    (
        "performance",
        "performance is empty: no measured result yet (the README's results table shows the paper's numbers)",
    ),
)


@dataclass
class ExportResult:
    """What :func:`export_recipe` wrote.

    Attributes
    ----------
    root : Path
        The export root (laid out as SpeechBrain's repository).
    folder : Path
        The recipe folder in it.
    files : list of Path
    rows : list of dict
        The registry rows written.
    registry : Path
    notes : list of str
        What the exporter could not do the upstream way (the checks report it too).
    """

    root: Path
    folder: Path
    files: list
    rows: list
    registry: Path
    notes: list = field(default_factory=list)


def recipe_yamls(target):
    """``(recipe folder, [yaml files])`` of a recipe folder, one of its yamls, or several of them."""
    targets = [Path(t).resolve() for t in ([target] if isinstance(target, (str, Path)) else target)]
    if len(targets) == 1 and targets[0].is_dir():
        folder = targets[0]
        yamls = sorted((folder / "hparams").glob("*.yaml"))
    else:
        yamls = targets
        folders = {y.parent.parent for y in yamls}
        if len(folders) != 1 or any(y.parent.name != "hparams" for y in yamls):
            raise ExportError("give a recipe folder or yamls of one recipe's hparams/ folder")
        folder = folders.pop()
    if not list(folder.glob("*.py")):
        raise ExportError(f"{folder} has no script")
    if not yamls:
        raise ExportError(f"{folder}/hparams has no yaml")
    return folder, yamls


def script_for(yaml_path, folder):
    """The script of ``folder`` that runs a yaml: the one its comments name, else ``train.py``, else the only one."""
    text = Path(yaml_path).read_text(encoding="utf-8")
    match = re.search(rf"python \S*?(\w+\.py) hparams/{re.escape(Path(yaml_path).name)}\b", text)
    if match and (folder / match.group(1)).is_file():
        return match.group(1)
    if (folder / "train.py").is_file():
        return "train.py"
    scripts = sorted(p.name for p in folder.glob("*.py"))
    if len(scripts) == 1:
        return scripts[0]
    raise ExportError(
        f"{yaml_path}: which of {scripts} runs it? (name it in a comment: python .../<script> hparams/...)"
    )


def _tags(text):
    """Dotted paths named by yaml tags in the code part of a yaml text."""
    found = []
    for line in text.splitlines():
        code, _ = _code_part(line)
        found += [m.group(2) for m in YAML_TAG.finditer(code)]
    return found


#: The yaml key that names a recipe's Brain class (``modules.recipe.resolve_brain_class``): the class
#: moves into the script with the other Brains, and the exported yaml gives its name only (a string,
#: looked up beside the class the script passes: upstream's load test keeps one ``train`` imported).
BRAIN_CLASS_KEY = "brain_class"


def _rewrite_tags(text, graph, plan):
    def replace(match):
        kind, path = match.group(1), match.group(2)
        if not is_ours(path):
            return match.group(0)
        module, attr = graph.resolve_dotted(path)
        if attr and plan.is_moved(module, attr):  # a Brain class the yaml names: it is in the script now
            return attr
        local = plan.names[module]
        return f"!{kind}:{local}" + (f".{attr}" if attr else "")

    out = []
    for line in text.splitlines(keepends=True):
        code, comment = _code_part(line.rstrip("\n"))
        out.append(YAML_TAG.sub(replace, code) + comment + ("\n" if line.endswith("\n") else ""))
    return "".join(out)


_COMMENT_REWRITES = (
    (re.compile(r"python recipes/[\w.\-]+/[\w.\-]+/train\.py"), "python train.py"),
    (re.compile(r"Run from the repository root( \(or from this folder\))?:"), "Run from this folder:"),
)


def _rewrite_comments(text):
    """Comment lines that point at our repository's layout, rewritten for the exported folder."""
    out = []
    for line in text.splitlines(keepends=True):
        code, comment = _code_part(line.rstrip("\n"))
        if comment and ("overrides_file" in comment or "tiny.yaml" in comment) and not code.strip():
            continue  # our CPU-run overrides files are not part of the export
        for pattern, new in _COMMENT_REWRITES:
            comment = pattern.sub(new, comment)
        out.append(code + comment + ("\n" if line.endswith("\n") else ""))
    return "".join(out)


#: Upstream's yaml load test overrides these !PLACEHOLDER keys itself (tests/utils/recipe_tests.py).
UPSTREAM_PLACEHOLDERS = ("data_folder", "output_folder")
#: Keys whose value is a list (their stand-in is a list of one path).
LIST_VALUED = ("separators",)


def dummy_paths(text):
    """Each required path other than ``data_folder`` as upstream writes one: ``/yourpath/<name>``.

    Upstream's ``load_yaml_test`` (tests/utils/recipe_tests.py) loads every
    yaml overriding ``data_folder`` and ``output_folder`` (and a fixed list of
    other upstream keys) only, so a second ``!PLACEHOLDER`` (another corpus, a
    first-stage run) fails it; upstream's recipes give such paths as
    ``/yourpath/...`` (e.g. LibriMix's ``base_folder_dm``). The comment on the
    line stays; the run then fails on the missing path, naming it.

    Example
    -------
    >>> text = "data_folder: !PLACEHOLDER\\nvox2mix_folder: !PLACEHOLDER  # Vox2Mix\\nseparators: !PLACEHOLDER"
    >>> print(dummy_paths(text))
    data_folder: !PLACEHOLDER
    vox2mix_folder: /yourpath/vox2mix  # Vox2Mix
    separators: [/yourpath/separators]
    """

    def stand_in(match):
        key = match.group(1)
        if key in UPSTREAM_PLACEHOLDERS:
            return match.group(0)
        path = "/yourpath/" + re.sub(r"_folder$", "", key)
        return f"{key}: " + (f"[{path}]" if key in LIST_VALUED else path)

    return re.sub(r"^(\w+):[ \t]*!PLACEHOLDER\b", stand_in, text, flags=re.M)


def _tiny_overrides(flat_text, tmp):
    """Overrides that shrink the nested backbone blocks (``hparams/tiny.yaml``'s sizes) for validation."""
    import ruamel.yaml

    with open(REPO / "hparams" / "tiny.yaml", encoding="utf-8") as f:
        sizes = (ruamel.yaml.YAML(typ="safe").load(f) or {}).get("backbone_sizes", {})
    overrides = {"data_folder": str(tmp), "output_folder": str(tmp)}
    for entry in split_entries(flat_text):
        if entry.key and _code_part(entry.value)[0].strip() == "!PLACEHOLDER":
            overrides[entry.key] = str(tmp)
        for line in entry.lead:
            match = re.search(r"written in from backbones/(\w+)\.yaml", line)
            if match and match.group(1) in sizes and entry.key:
                overrides[entry.key] = dict(sizes[match.group(1)])
    return overrides


def find_ruff():
    """The ``ruff`` command (the one beside this Python first), or None."""
    beside = Path(sys.executable).parent / "ruff"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def ruff_fix(folder, config=RUFF_CONFIG):
    """Formats a folder with upstream's ruff settings and sorts / prunes its imports.

    Returns
    -------
    bool
        False when ruff is not installed (nothing was done).
    """
    ruff = find_ruff()
    if ruff is None:
        return False
    files = [str(p) for p in Path(folder).rglob("*.py")]
    run = {"capture_output": True, "text": True}
    subprocess.run(
        [*ruff, "check", "--config", str(config), "--select", "I001,F401", "--fix", *files], check=False, **run
    )
    subprocess.run([*ruff, "format", "--config", str(config), *files], check=False, **run)
    return True


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req):
    return _normalise(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])


def installed_with(dist="speechbrain"):
    """Distributions ``pip install <dist>`` brings: ``dist`` and its requirements, transitively (extras left out)."""
    seen, todo = set(), [_normalise(dist)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def _imported_modules(tree):
    """Dotted names of the modules an AST imports (not relative ones)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def extra_requirements(folder, yaml_texts=()):
    """Requirement lines for what the code of ``folder`` imports and an install of SpeechBrain lacks.

    A distribution counts as present when ``pip install speechbrain`` installs
    it (SpeechBrain's requirements, transitively). Versions come from our
    ``requirements.txt`` where it names the distribution.

    Returns
    -------
    list of str
    """
    local = {p.stem for p in Path(folder).glob("*.py")}
    imported = set()
    for path in Path(folder).glob("*.py"):
        imported |= _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    for text in yaml_texts:
        imported |= {path.rsplit(".", 1)[0] for path in _tags(text)}
    imported = {n for n in imported if n.split(".")[0] not in local and not is_stdlib(n.split(".")[0])}
    imported = {n for n in imported if not is_ours(n)}
    dists = importlib.metadata.packages_distributions()
    ours = {}
    for raw in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            ours[_requirement_name(line)] = line
    have = installed_with("speechbrain")
    lines = set()
    for dotted in imported:
        candidates = dists.get(dotted.split(".")[0], [dotted.split(".")[0]])
        prefixes = {_normalise(".".join(dotted.split(".")[:i])) for i in range(1, dotted.count(".") + 2)}
        exact = [d for d in candidates if _normalise(d) in prefixes]
        for dist in exact or candidates:
            if _normalise(dist) not in have:
                lines.add(ours.get(_normalise(dist), dist))
    return sorted(lines, key=str.lower)


def prep_module_name(dataset, method):
    """Local name of an exported recipe's preparation module: ``<dataset>_<method>_prepare``.

    The yamls name it by tag (``prepare_data: !name:<module>.<function>``), and
    upstream's ``load_yaml_test`` (tests/utils/recipe_tests.py) loads every
    recipe's yamls in one process: a module is imported once per process, so
    two recipes with a ``prepare_data.py`` each would find the first one's
    functions only. The name follows upstream's ``<dataset>_prepare.py`` and is
    unique per recipe.

    Example
    -------
    >>> prep_module_name("WHAM", "saddel")
    'wham_saddel_prepare'
    """
    return f"{dataset.lower()}_{method}_prepare"


def stage_yamls(text, folder):
    r"""The yamls that a system's ``stages`` run besides its own (their ``hparams:``), as paths in ``folder``.

    Example
    -------
    >>> text = "stages:\n    - {name: pretrain, hparams: mic.yaml}\n    - {name: separate}\nx: 1\n"
    >>> [p.name for p in stage_yamls(text, Path("hparams"))]
    ['mic.yaml']
    """
    block = re.search(r"^stages:[^\n]*\n((?:[ \t-][^\n]*\n?)*)", text, flags=re.M)
    if not block:
        return []
    return [Path(folder) / name for name in re.findall(r"\bhparams:\s*([\w.\-/]+\.yaml)", block.group(1))]


def _system_flags(path, keys, yaml_out):
    """``test_debug_flags`` of a yaml: :func:`sample_flags` of its keys, then of each key only a stage's yaml has.

    A system's first stage may read inputs the system's yaml does not have
    (DIP's pretraining: its synthetic and real branches); the stage runner
    gives each stage the overrides its yaml has, so those flags are added
    (a key the system's yaml has keeps the system's flag: e.g. its hand-over
    key is not set, which would skip the stage before it). A Mixture-Remix
    yaml remixes the samples' mixtures (the preparation that writes its
    target-domain manifests is off) and its speaker rule becomes ``mixture``
    (``modules.data.remix.mixture_speakers``): the samples' IDs (``0``) name
    no LibriSpeech speaker; the remixed items are not joined by the
    samples' own (``with_source_data``: those have no enrollment, and a batch
    holds items with or items without one).
    """
    text = yaml_out[path.name]
    flags = sample_flags(keys, text)
    remix = {"remix_train_mixtures": SAMPLE_TRAIN, "remix_valid_mixtures": SAMPLE_DEV, "remix_speaker_rule": "mixture"}
    remix["remix_pool"] = "librimix"  # the samples' sources, not a LibriSpeech pool (the samples have none)
    remix["with_source_data"] = "False"  # the samples' items have no enrollment, the remixed ones have one
    for key, value in remix.items():
        if key in keys:
            flags = f"{flags} --{key}={value}".strip()
    for stage in stage_yamls(text, path.parent):
        stage_text = yaml_out.get(stage.name)
        if stage_text is None:
            continue
        only_stage = {e.key for e in split_entries(stage_text) if e.key} - set(keys)
        more = sample_flags(only_stage, stage_text)
        if more:
            flags = f"{flags} {more}".strip()
            keys = set(keys) | only_stage
    return flags


def export_recipe(target, out, validate=True, format_code=True):
    """Writes the upstream-shaped folder of a recipe (see the module docstring).

    Arguments
    ---------
    target : str or Path or list
        A recipe folder (every yaml of its ``hparams/``), or yamls of one recipe.
    out : str or Path
        The export root.
    validate : bool
        Load each original yaml and its flattened text (with ``hparams/tiny.yaml``'s
        backbone sizes) and fail on any difference.
    format_code : bool
        Format with ruff and upstream's settings.

    Returns
    -------
    ExportResult
    """
    recipe_dir, yamls = recipe_yamls(target)
    graph = ModuleGraph(REPO)
    dataset, method = recipe_dir.parent.name, recipe_dir.name
    upstream_dataset = DATASETS.get(dataset, dataset)
    rel_folder = f"recipes/{upstream_dataset}/{TASK}/{method}"
    out = Path(out).resolve()
    dest = out / rel_folder

    flat, lifted, roots, pinned, prep_module, brains = {}, {}, set(), set(), None, {}
    for path in yamls:
        text, _, lifted[path] = flatten_yaml(path)
        flat[path] = text
        brain_tags = {t for e in split_entries(text) if e.key == BRAIN_CLASS_KEY for t in _tags(e.head)}
        brains[path] = {graph.resolve_dotted(t) for t in brain_tags if is_ours(t)}
        for tag in _tags(text):
            if is_ours(tag):
                module, attr = graph.resolve_dotted(tag)
                roots.add(module)
                if attr and tag not in brain_tags:  # a Brain class moves into the script like the others
                    pinned.add((module, attr))
        for entry in split_entries(text):
            if entry.key == "prepare_data":
                tags = [t for t in _tags(entry.head) if is_ours(t)]
                if tags:
                    prep_module = prep_module or graph.resolve_dotted(tags[0])[0]
    scripts = {path: script_for(path, recipe_dir) for path in yamls}
    sources, starts = {}, {}
    for script in sorted(set(scripts.values())):
        sources[script] = (recipe_dir / script).read_text(encoding="utf-8")
        starts[script] = set()
        for node in ast.walk(ast.parse(sources[script])):
            if isinstance(node, ast.ImportFrom) and is_ours(node.module or ""):
                for alias in node.names:
                    target = graph.resolve(node.module, alias.name)
                    roots.add(target[0])
                    starts[script].add(target)
    for path, named in brains.items():  # the Brains the script's yamls name go into the script too
        starts[scripts[path]] |= named
    for path in yamls:  # and those of the stages its yaml runs (DIP's pretraining stage runs from train.py)
        for stage in stage_yamls(flat[path], path.parent):
            starts[scripts[path]] |= brains.get(stage, set())
    prep_name = prep_module_name(dataset, method)
    plan = plan_export(graph, sorted(roots), pinned, prep_module, prep_name)

    notes = list(plan.notes)
    texts = {}
    for script, source in sources.items():
        first = next(p.name for p, sc in scripts.items() if sc == script)
        docstring = (
            textwrap.fill(_docstring_summary(recipe_dir / script), 76) + "\n\nTo run it, from this folder:\n\n"
            f"> python {script} hparams/{first} --data_folder=<dataset root>\n\n"
            "The Brain classes and the steps of a run (data preparation, datasets,\n"
            "training, test, results) are in this file; the models, losses, metrics\n"
            "and the data pipeline are the modules beside it.\n\n"
            f"Exported from robust-sep-recipes, recipes/{dataset}/{method}/{script}."
        )
        include = reachable_moved(graph, plan, starts[script])
        texts[Path(script).stem] = build_train(graph, plan, source, docstring, include)
    summary = _docstring_summary(recipe_dir / ("train.py" if "train.py" in sources else next(iter(sources))))
    for module in plan.closure:
        if plan.names[module] in texts:
            raise ExportError(f"the local module name {plan.names[module]} is taken by a script of the recipe")
        texts[plan.names[module]] = build_local_module(graph, plan, module)
    dropped = {}
    script_names = {Path(s).stem for s in sources}
    local_reads = {r.key for n, t in texts.items() if n not in script_names for r in hparam_reads(ast.parse(t))}
    for path in yamls:  # keys of the shared block that no code run with this yaml reads go (upstream: all are used)
        script = Path(scripts[path]).stem
        reads = local_reads | {r.key for r in hparam_reads(ast.parse(texts[script]))}
        dropped[path] = set()
        while True:
            dead = [k for k in variables_to_read(flat[path]) if k in lifted[path] and k not in reads]
            if not dead:
                break
            dropped[path] |= set(dead)
            flat[path] = drop_entries(flat[path], dead)
        if dropped[path]:
            notes.append(f"{path.name}: left out the shared block's {sorted(dropped[path])} (this recipe uses none)")
    if validate:
        with tempfile.TemporaryDirectory() as tmp:
            for path, text in flat.items():
                try:
                    problems = check_equivalent(path, text, _tiny_overrides(text, tmp), dropped[path])
                except ExportError:
                    raise
                except Exception as err:  # e.g. a pretrained checkpoint the yaml loads is not here
                    notes.append(f"{path.name}: not validated (loading it failed: {type(err).__name__}: {err})")
                    continue
                if problems:
                    raise ExportError(f"{path.name}: the resolved yaml differs from the original: {problems[:5]}")

    yaml_out = {p.name: dummy_paths(_rewrite_comments(_rewrite_tags(t, graph, plan))) for p, t in flat.items()}
    keep = _reachable(texts, yaml_out, [Path(s).stem for s in sources])

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "hparams").mkdir(parents=True)
    written = []
    for name in sorted(keep):
        path = dest / f"{name}.py"
        path.write_text(texts[name], encoding="utf-8")
        written.append(path)
    for name, text in yaml_out.items():
        (dest / "hparams" / name).write_text(text, encoding="utf-8")
        written.append(dest / "hparams" / name)
    if format_code and not ruff_fix(dest):
        notes.append("ruff is not installed: the code was not formatted with upstream's settings")

    requirements = extra_requirements(dest, yaml_out.values())
    if requirements:
        (dest / "extra_requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        written.append(dest / "extra_requirements.txt")
    unmet = [reason for _rule, reason in PENDING]
    for path in yamls:
        blocker = load_blocker(yaml_out[path.name])
        if blocker:
            unmet.append(f"`hparams/{path.name}`: {blocker}")
    problem = samples_problem()
    if problem:
        unmet.append(f"the recipe test on SpeechBrain's own tests/samples data fails: {problem}")
    readme = exported_readme(
        dataset, upstream_dataset, method, rel_folder, yamls, summary, unmet, requirements, scripts, prep_name
    )
    (dest / "README.md").write_text(readme, encoding="utf-8")
    written.append(dest / "README.md")

    rows = []
    prep_file = f"{rel_folder}/{prep_name}.py" if (dest / f"{prep_name}.py").exists() else ""
    for path in yamls:
        keys = {e.key for e in split_entries(yaml_out[path.name]) if e.key}
        rows.append(
            {
                "Task": "Separation",
                "Dataset": upstream_dataset,
                "Script_file": f"{rel_folder}/{scripts[path]}",
                "Hparam_file": f"{rel_folder}/hparams/{path.name}",
                "Data_prep_file": prep_file,
                "Readme_file": f"{rel_folder}/README.md",
                "Result_url": "",
                "HF_repo": "",
                "test_debug_flags": _system_flags(path, keys, yaml_out),
                "test_debug_checks": debug_checks(keys, yaml_out[path.name], scripts[path]),
                "performance": "",
            }
        )
    registry = out / "tests" / "recipes" / f"{upstream_dataset}.csv"
    write_rows(registry, rows, replace_folder=rel_folder)
    return ExportResult(out, dest, written, rows, registry, notes)


def samples_problem(num_spks=2):
    """Why our data pipeline cannot read upstream's ``tests/samples`` separation rows, or None.

    Reads the rows of :func:`modules.upstream.samples.make_samples` (strict)
    with :func:`modules.data.build_datasets` and collates one item, as a
    two-speaker recipe does.
    """
    from modules.data import build_datasets, collate
    from modules.upstream.samples import make_samples

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_samples(tmp, strict=True, seconds=0.1)
        hparams = {
            "train_data": str(Path(tmp) / paths["train_csv"]),
            "valid_data": str(Path(tmp) / paths["dev_csv"]),
            "test_data": str(Path(tmp) / paths["dev_csv"]),
            "data_folder": str(Path(tmp) / paths["data_folder"]),
            "num_spks": num_spks,
            "dataloader_opts": {},
        }
        problems = []
        item = build_datasets(hparams)[0][0]
        n_sources = sum(1 for key in item if re.fullmatch(r"s\d+_sig", key))
        if n_sources != num_spks:
            problems.append(
                f"a {num_spks}-speaker recipe reads {n_sources} sources from a row (its s3 column; "
                "modules/data/builders.py reads every s<k> column)"
            )
        try:
            collate([item])
        except Exception as err:  # the reason is what is reported
            problems.append(
                f"collating a row fails ({type(err).__name__}): its noise is longer than the mixture, which "
                "modules/data/batch.py's collate cannot pad"
            )
    return "; ".join(problems) or None


def _reachable(texts, yaml_texts, scripts):
    """Local modules reached from the scripts and the yamls' tags."""
    todo = list(scripts) + [path.split(".")[0] for text in yaml_texts.values() for path in _tags(text)]
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in texts:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(texts[name])):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo.append(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[0] for a in node.names]
    return seen


def lifted_block_name():
    """The name of the block our runner lifts (kept for the checks' messages)."""
    return LIFTED
