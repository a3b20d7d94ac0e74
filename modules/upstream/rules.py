"""Our checks of SpeechBrain's documented recipe rules, run on an exported tree.

SpeechBrain's source distribution does not ship the repository's ``tests/``,
and that code is not ours to copy: each rule below is our own check of what
upstream's tests and contributor documents require (the file each rule comes
from is named in :data:`RULES`). :func:`check_tree` runs them on every row of
every ``tests/recipes/*.csv`` of an export root and returns one
:class:`Finding` per rule and row: ``pass``, ``fail``, or ``unmet`` (a rule
that cannot be met yet, e.g. ``Result_url`` before a full-scale run exists,
stated with its reason; it does not fail the check).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ruamel.yaml

from modules.upstream.exporter import PENDING, RUFF_CONFIG, extra_requirements, find_ruff
from modules.upstream.graph import OUR_PACKAGES, YAML_TAG, is_ours
from modules.upstream.reads import hparam_reads, upstream_visible
from modules.upstream.registry import COLUMNS, FILE_COLUMNS, MANDATORY_COLUMNS, read_registry
from modules.upstream.samples import load_blocker, make_samples
from modules.upstream.yamlflat import _REF as YAML_REF
from modules.upstream.yamlflat import _code_part, split_entries, variables_to_read

__all__ = [
    "RULES",
    "Finding",
    "check_tree",
    "codespell_problems",
    "docstring_problems",
    "find_codespell",
    "report",
    "wildcard_lines",
    "yaml_variables",
]

#: Rule name -> (what it requires, upstream file(s) it comes from).
RULES = {
    "yaml-variables-read": (
        "every top-level yaml variable that the yaml itself does not reference, that is not an !apply entry "
        "and not a SpeechBrain run option, is read in the Script_file, on one line, in a spelling a line-based "
        'reader sees (hparams.<key>, ["<key>"], hparams.get("<key>"), getattr(self.hparams, "<key>"))',
        "tests/utils/check_yaml.py, tests/consistency/test_yaml.py",
    ),
    "registry-columns": (
        "the registry CSV has the columns the recipe runner and the consistency tests read",
        "tests/consistency/README.md, tests/utils/recipe_tests.py",
    ),
    "registry-lists-every-yaml": (
        "every hparams yaml under recipes/<Dataset>/ is a row of tests/recipes/<Dataset>.csv",
        "tests/consistency/test_recipe.py (test_recipe_list)",
    ),
    "debug-flags": (
        "every row has non-empty test_debug_flags",
        "tests/consistency/test_recipe.py (test_recipe_list), tests/recipes/README.md",
    ),
    "registry-files-exist": (
        "every path in Script_file, Hparam_file, Data_prep_file and Readme_file exists",
        "tests/consistency/test_recipe.py (test_recipe_files)",
    ),
    "mandatory-files": (
        "Script_file, Hparam_file and Readme_file are given and exist",
        "tests/consistency/test_recipe.py (test_mandatory_files)",
    ),
    "readme-links": (
        "the README mentions the Result_url and HF_repo of its rows; Result_url is mandatory",
        "tests/consistency/test_recipe.py (test_README_links), tests/consistency/README.md",
    ),
    "self-contained": (
        "no import of our packages (code, doctest lines, yaml tags): the recipe folder alone is the code",
        "tests/utils/recipe_tests.py (PYTHONPATH is the recipe folder only)",
    ),
    "debug-run": (
        "`PYTHONPATH=<recipe folder> python <Script_file> <Hparam_file> <test_debug_flags> --device=cpu "
        "--output_folder=<out> --debug --debug_persistently` exits 0 on tests/samples-style data",
        "tests/utils/recipe_tests.py (run_recipe_tests), tests/recipes/README.md",
    ),
    "debug-checks": (
        "the files of test_debug_checks' file_exists list are in the output folder, the script among them",
        "tests/utils/recipe_tests.py (check_files), tests/recipes/*.csv",
    ),
    "ruff": (
        "ruff format --check and ruff check pass with SpeechBrain's ruff settings",
        "pyproject.toml [tool.ruff], tests/.run-linters.sh",
    ),
    "yamllint": (
        "yamllint passes (no errors) with SpeechBrain's yamllint settings",
        ".yamllint.yaml, tests/.run-linters.sh",
    ),
    "codespell": (
        "codespell passes at upstream's pinned version with upstream's pre-commit arguments (--skip=*.ipynb, "
        "--ignore-regex='base64,.*?=='); words upstream ignores (its .dict-speechbrain.txt) or a line marks "
        "(# codespell:ignore <word>) pass",
        ".pre-commit-config.yaml (codespell hook), .dict-speechbrain.txt",
    ),
    "docstrings": (
        "every module starts with a docstring; every function and class whose name does not start with an "
        "underscore (nested ones included) has one",
        "tests/consistency/test_docstrings.py, tests/utils/check_docstrings.py, tests/consistency/DOCSTRINGS.md",
    ),
    "load-yaml": (
        "every yaml loads from its script's folder with only data_folder, output_folder and upstream's fixed list "
        "of other keys overridden, all rows in one process (a module a yaml names is imported once for all)",
        "tests/utils/recipe_tests.py (load_yaml_test), tests/.run-load-yaml-tests.sh",
    ),
    "yaml-check-wildcards": (
        "no line of the Script_file subscripts with an f-string whose literal text is under 3 characters "
        '(x[f"s{i}"]): upstream\'s line-based yaml check takes such a line for a read of every variable that '
        "contains that text, so it would check nothing",
        "tests/utils/check_yaml.py (detect_script_vars)",
    ),
    "extra-requirements": (
        "extra_requirements.txt lists what the code imports that an install of SpeechBrain lacks",
        "tests/recipes/README.md (recipe structure)",
    ),
}

#: SpeechBrain's yamllint settings (its .yamllint.yaml), as a yamllint configuration.
YAMLLINT_CONFIG = """extends: default
rules:
  document-start:
    present: False
  truthy:
    allowed-values: ['True', 'False']
    level: error
  comments: disable
  comments-indentation: disable
  line-length:
    level: warning
    allow-non-breakable-inline-mappings: True
"""

#: The codespell release SpeechBrain's ``.pre-commit-config.yaml`` pins (``rev: v2.3.0``).
CODESPELL_VERSION = "2.3.0"
#: The arguments of SpeechBrain's codespell hook, less its ``--ignore-words`` file (not ours to copy); the quotes
#: of its ``--ignore-regex`` are kept, as pre-commit passes them (no shell).
CODESPELL_ARGS = ("--skip=*.ipynb", "--ignore-regex='base64,.*?=='")
#: The words of SpeechBrain's ``.dict-speechbrain.txt`` (its codespell ignore list) that an export uses: ``fo``
#: (a file object, in the checkpointer). Another word of our code that codespell flags is fixed, or ignored on its
#: line with ``# codespell:ignore <word>`` as upstream's own code does.
UPSTREAM_IGNORED_WORDS = ("fo",)


def find_codespell():
    """The ``codespell`` command of this Python at upstream's pinned version.

    Returns
    -------
    tuple
        ``(command, "")``: the command as a list of str; ``(None, reason)``
        when codespell is absent or at another version.
    """
    try:
        from importlib.metadata import PackageNotFoundError, version

        found = version("codespell")
    except PackageNotFoundError:
        return None, f"codespell is not installed (pip install codespell=={CODESPELL_VERSION})"
    if found != CODESPELL_VERSION:
        return None, f"codespell {found} is installed; upstream pins {CODESPELL_VERSION}"
    return [sys.executable, "-m", "codespell_lib"], ""


def codespell_problems(files, cwd=None):
    """codespell's findings on ``files`` with upstream's settings (see :data:`CODESPELL_ARGS`).

    Arguments
    ---------
    files : list of str or Path
    cwd : str or Path, optional
        Where codespell runs (the export root: the paths it prints are relative to it).

    Returns
    -------
    list of str
        One ``path:line: word ==> fixes`` line per finding; empty when none.

    Raises
    ------
    RuntimeError
        When codespell is not installed at upstream's pinned version, or fails
        for another reason than a finding.
    """
    command, reason = find_codespell()
    if command is None:
        raise RuntimeError(reason)
    if not files:
        return []
    ignore = f"--ignore-words-list={','.join(UPSTREAM_IGNORED_WORDS)}"
    proc = subprocess.run([*command, *CODESPELL_ARGS, ignore, *map(str, files)], cwd=cwd, check=False, **_CAPTURE)
    found = [line for line in proc.stdout.splitlines() if "==>" in line]
    if proc.returncode not in (0, 65) or (proc.returncode == 65 and not found):  # 65: misspellings found
        raise RuntimeError(f"codespell failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return found


#: Runs a script as ``__main__`` with imports of our packages refused (they are installed here, not upstream).
_BOOT = (
    "import os, runpy, sys\n"
    "class _Refuse:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.split('.')[0] in {tuple(OUR_PACKAGES)!r}:\n"
    "            raise ImportError(f'{name} is not part of the exported recipe')\n"
    "sys.meta_path.insert(0, _Refuse())\n"
    "script = sys.argv[1]\n"
    "sys.argv = sys.argv[1:]\n"
    "sys.path[0] = os.path.dirname(os.path.abspath(script))\n"
    "runpy.run_path(script, run_name='__main__')\n"
)


@dataclass
class Finding:
    """The outcome of one rule on one registry row (or on a whole folder)."""

    rule: str
    subject: str
    status: str  # pass, fail or unmet
    detail: str = ""


def _run_options():
    from speechbrain.utils.run_opts import RunOptions

    return set(RunOptions().as_dict())


#: A subscript by an f-string: ``x[f"<prefix>{...}<suffix>"]``.
_FSTRING_KEY = re.compile(r"""\[f(["'])([^"'{]*)\{[^}]*\}([^"'{]*)\1\]""")


def wildcard_lines(source):
    r"""Lines of a script that upstream's yaml check reads as a use of (nearly) any variable.

    Upstream's line-based check (``tests/utils/check_yaml.py``) takes a
    subscript by an f-string for a read of every yaml variable that contains
    its literal text; with no or little text (``signals[f"s{i}"]``), every
    variable passes and the check checks nothing.

    Example
    -------
    >>> wildcard_lines('signals[f"s{s + 1}"] = ref\nx = signals[name]\nlengths = inputs[f"{name}_lengths"]\n')
    ['line 1: [f"s{s + 1}"]']
    """
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        for match in _FSTRING_KEY.finditer(line):
            if len(match.group(2) + match.group(3)) < 3:
                found.append(f"line {number}: {match.group(0)}")
    return found


def yaml_variables(path):
    """The top-level variables of a yaml file that its script must read.

    Those of :func:`variables_to_read`, and the keys the yaml refers to only
    above their definition: upstream's line-based check drops a key from its
    list when a later line refers to it, so a reference above the key's own
    line does not count there.
    """
    text = Path(path).read_text(encoding="utf-8")
    return variables_to_read(text) + [k for k in referenced_only_above(text) if k in _unreferenced_candidates(text)]


def referenced_only_above(text):
    r"""Top-level keys of a yaml text whose every ``!ref``/``!copy`` stands above the key's own line.

    Example
    -------
    >>> referenced_only_above("prep: !name:f\n    inner: !ref <b>\nb: !name:g\nc: !ref <prep>\n")
    ['b']
    """
    defined, before, after = set(), set(), set()
    for entry in split_entries(text):
        for line in [entry.head, *entry.body]:
            code, _ = _code_part(line)
            if "!ref" in code or "!copy" in code:
                for match in YAML_REF.finditer(code):
                    (after if match["name"] in defined else before).add(match["name"])
        if entry.key:
            defined.add(entry.key)
    return sorted((before - after) & defined)


def _unreferenced_candidates(text):
    """Top-level keys that are neither ``!apply`` entries, pretrainers nor SpeechBrain run options."""
    from speechbrain.utils.run_opts import RunOptions

    options = set(RunOptions().as_dict())
    keys = set()
    for entry in split_entries(text):
        tag = _code_part(entry.head.split(":", 1)[1] if ":" in entry.head else "")[0].strip()
        if entry.key and entry.key not in options and not tag.startswith("!apply") and "Pretrainer" not in tag:
            keys.add(entry.key)
    return keys


def docstring_problems(path):
    """Definitions of a Python file that lack the docstring upstream's docstring test asks for.

    Example
    -------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "m.py"
    >>> _ = f.write_text('def f():\\n    def g():\\n        return 1\\n    return g\\n')
    >>> docstring_problems(f)
    ['module has no docstring', 'f (line 1) has no docstring', 'g (line 2) has no docstring']
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    problems = [] if ast.get_docstring(tree) is not None else ["module has no docstring"]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not node.name.startswith("_") and ast.get_docstring(node) is None:
                problems.append(f"{node.name} (line {node.lineno}) has no docstring")
    return problems


def _file_exists_list(checks):
    match = re.search(r"file_exists=\[(.*?)\]", checks or "")
    return [f.strip() for f in match.group(1).split(",") if f.strip()] if match else []


def _our_imports(path):
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if is_ours(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and is_ours(node.module):
            found.append(f"line {node.lineno}: from {node.module} import ...")
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if re.match(rf"\s*(>>>|\.\.\.)\s+(from|import)\s+({'|'.join(OUR_PACKAGES)})\b", line):
            found.append(f"line {i}: doctest imports {line.strip()}")
    return found


def _small_flags(hparam_path):
    """Small backbone sizes for a quick debug run: ``--<block>={...}`` for each nested backbone block."""
    from modules.upstream.exporter import REPO

    with open(REPO / "hparams" / "tiny.yaml", encoding="utf-8") as f:
        sizes = (ruamel.yaml.YAML(typ="safe").load(f) or {}).get("backbone_sizes", {})
    flags, key_of = [], None
    for line in Path(hparam_path).read_text(encoding="utf-8").splitlines():
        match = re.search(r"written in from backbones/(\w+)\.yaml", line)
        if match:
            key_of = match.group(1)
            continue
        head = re.match(r"^([A-Za-z_]\w*):", line)
        if head and key_of:
            if key_of in sizes:
                inner = ", ".join(f"{k}: {v}" for k, v in sizes[key_of].items())
                flags.append(f"--{head.group(1)}={{{inner}}}")
            key_of = None
    return flags


def _debug_run(root, row, out, extra, timeout):
    folder = root / Path(row["Script_file"]).parent
    cmd = [
        sys.executable,
        "-c",
        _BOOT,
        row["Script_file"],
        row["Hparam_file"],
        *shlex.split(row["test_debug_flags"]),  # upstream runs the command through a shell
        "--device=cpu",
        f"--output_folder={out}",
        "--debug",
        "--debug_persistently",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(folder), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc


def _failure(proc, out):
    """The error of a failed run: the last exception line of its log (SpeechBrain logs it there) or output."""
    texts = [(out / "log.txt").read_text(encoding="utf-8", errors="replace") if (out / "log.txt").exists() else ""]
    texts += [proc.stderr or "", proc.stdout or ""]
    for text in texts:
        errors = [line.strip() for line in text.splitlines() if re.match(r"^\s*[\w.]*(Error|Exception)\b", line)]
        if errors:
            return errors[-1][:600]
    return " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])[:600]


def _row_rules(root, csv_name, row, findings, run, samples_ready, small, timeout, keep_outputs):
    subject = row.get("Hparam_file") or csv_name
    script = root / row.get("Script_file", "")
    hparam = root / row.get("Hparam_file", "")

    missing = [c for c in MANDATORY_COLUMNS if not row.get(c) or not (root / row[c]).exists()]
    findings.append(Finding("mandatory-files", subject, "fail" if missing else "pass", ", ".join(missing)))
    absent = [f for c in FILE_COLUMNS for f in (row.get(c) or "").split() if not (root / f).exists()]
    findings.append(Finding("registry-files-exist", subject, "fail" if absent else "pass", ", ".join(absent)))
    flags = (row.get("test_debug_flags") or "").strip()
    findings.append(Finding("debug-flags", subject, "pass" if flags else "fail", "" if flags else "empty"))

    readme = root / row.get("Readme_file", "")
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    for column in ("Result_url", "HF_repo"):
        links = (row.get(column) or "").split()
        absent_links = [link for link in links if link not in text]
        if absent_links:
            findings.append(Finding("readme-links", subject, "fail", f"{column} {absent_links} not in the README"))
    if not (row.get("Result_url") or "").strip():
        reason = dict(PENDING)["Result_url"]
        stated = "Result_url" in text
        findings.append(
            Finding("readme-links", subject, "unmet" if stated else "fail", reason if stated else "not stated")
        )
    elif not any(f.rule == "readme-links" and f.subject == subject for f in findings):
        findings.append(Finding("readme-links", subject, "pass"))

    if script.is_file() and hparam.is_file():
        wanted = yaml_variables(hparam)
        source = script.read_text(encoding="utf-8")
        lines = source.splitlines()
        reads = hparam_reads(ast.parse(source))
        unread, hidden = [], []
        for key in wanted:
            mine = [r for r in reads if r.key == key]
            if not mine:
                unread.append(key)
            elif not any(upstream_visible(r, lines[r.lineno - 1]) for r in mine):
                hidden.append(f"{key} (line {mine[0].lineno})")
        detail = "; ".join(
            ([f"not read in {row['Script_file']}: {unread}"] if unread else [])
            + [
                f"{key}: its !ref stands above its definition, which upstream's line reader does not count"
                for key in unread
                if key in referenced_only_above(hparam.read_text(encoding="utf-8"))
            ]
            + ([f"read only in spellings a line-based reader misses: {hidden}"] if hidden else [])
        )
        findings.append(Finding("yaml-variables-read", subject, "fail" if detail else "pass", detail))
        wild = wildcard_lines(source)
        findings.append(Finding("yaml-check-wildcards", subject, "fail" if wild else "pass", "; ".join(wild[:5])))

    if not run:
        return
    if not samples_ready[0]:
        make_samples(root, strict=samples_ready[1])
        (root / "tests" / "samples" / MARKER).write_text("written by modules.upstream.samples\n", encoding="utf-8")
        samples_ready[0] = True
    out = Path(tempfile.mkdtemp(prefix="debug_run_", dir=keep_outputs or samples_ready[2]))
    extra = _small_flags(hparam) if small else []
    try:
        proc = _debug_run(root, row, out, extra, timeout)
    except subprocess.TimeoutExpired:
        findings.append(Finding("debug-run", subject, "fail", f"no exit within {timeout} s"))
        return
    if proc.returncode != 0:
        findings.append(Finding("debug-run", subject, "fail", f"exit {proc.returncode}: {_failure(proc, out)}"))
        return
    findings.append(Finding("debug-run", subject, "pass", str(out)))
    wanted = _file_exists_list(row.get("test_debug_checks"))
    absent = [f for f in wanted if not (out / f).exists()]
    script_name = Path(row["Script_file"]).name
    copies = [f for f in wanted if Path(f).name == script_name]  # a multi-stage run: one copy per stage folder
    if not copies:
        absent.append(f"(the check list does not name {script_name})")
    findings.append(Finding("debug-checks", subject, "fail" if absent else "pass", ", ".join(absent)))


def _folder_rules(root, folder, findings):
    subject = str(folder.relative_to(root))
    bad = []
    for path in sorted(folder.rglob("*.py")):
        bad += [f"{path.name} {item}" for item in _our_imports(path)]
    for path in sorted(folder.rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            code, _ = _code_part(line)
            bad += [f"{path.name}: !{m.group(1)}:{m.group(2)}" for m in YAML_TAG.finditer(code) if is_ours(m.group(2))]
    findings.append(Finding("self-contained", subject, "fail" if bad else "pass", "; ".join(bad[:10])))

    problems = []
    for path in sorted(folder.rglob("*.py")):
        problems += [f"{path.name}: {p}" for p in docstring_problems(path)]
    findings.append(Finding("docstrings", subject, "fail" if problems else "pass", "; ".join(problems[:20])))

    ruff = find_ruff()
    if ruff is None:
        findings.append(Finding("ruff", subject, "fail", "ruff is not installed"))
    else:
        files = [str(p) for p in sorted(folder.rglob("*.py"))]
        fmt = subprocess.run(
            [*ruff, "format", "--check", "--config", str(RUFF_CONFIG), *files], check=False, **_CAPTURE
        )
        lint = subprocess.run([*ruff, "check", "--config", str(RUFF_CONFIG), "--output-format", "concise", *files],
                              check=False, **_CAPTURE)  # fmt: skip
        detail = []
        if fmt.returncode:
            detail.append("format: " + " | ".join(fmt.stdout.strip().splitlines()[-5:]))
        if lint.returncode:
            detail.append("check: " + " | ".join(lint.stdout.strip().splitlines()[:10]))
        findings.append(Finding("ruff", subject, "fail" if detail else "pass", "; ".join(detail)))

    texts = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in (".py", ".yaml", ".md", ".txt")]
    try:
        spelled = codespell_problems([p.relative_to(root) for p in texts], cwd=root)
        findings.append(Finding("codespell", subject, "fail" if spelled else "pass", " | ".join(spelled[:10])))
    except RuntimeError as error:
        findings.append(Finding("codespell", subject, "fail", str(error)))

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(YAMLLINT_CONFIG)
    yamls = [str(p) for p in sorted(folder.rglob("*.yaml"))]
    lint = subprocess.run(
        [sys.executable, "-m", "yamllint", "--no-warnings", "-c", cfg.name, *yamls], check=False, **_CAPTURE
    )
    os.unlink(cfg.name)
    findings.append(
        Finding("yamllint", subject, "fail" if lint.returncode else "pass", " | ".join(lint.stdout.splitlines()[:8]))
    )

    want = extra_requirements(folder, [Path(y).read_text(encoding="utf-8") for y in yamls])
    listed_file = folder / "extra_requirements.txt"
    listed = listed_file.read_text(encoding="utf-8").splitlines() if listed_file.exists() else []
    listed = [line.strip() for line in listed]
    listed = [line for line in listed if line and not line.startswith("#")]
    same = sorted(listed, key=str.lower) == want
    findings.append(
        Finding("extra-requirements", subject, "pass" if same else "fail", "" if same else f"want {want}, has {listed}")
    )


_CAPTURE = {"capture_output": True, "text": True}
LOADTEST = Path(__file__).with_name("loadtest.py")


def _load_rule(root, rows, findings, timeout):
    """Upstream's yaml load test over ``rows`` (in registry order, one process): one finding per yaml."""
    todo = []
    for row in rows:
        hparam = root / row["Hparam_file"]
        blocker = load_blocker(hparam.read_text(encoding="utf-8")) if hparam.is_file() else None
        if blocker:
            findings.append(Finding("load-yaml", row["Hparam_file"], "unmet", blocker))
        else:
            todo.append((row["Script_file"], row["Hparam_file"]))
    if not todo:
        return
    job = json.dumps({"root": str(root), "rows": todo, "packages": list(OUR_PACKAGES)})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        proc = subprocess.run(
            [sys.executable, str(LOADTEST), job], cwd=root, env=env, timeout=timeout, check=False, **_CAPTURE
        )
    except subprocess.TimeoutExpired:
        findings += [Finding("load-yaml", h, "fail", f"the load test did not end within {timeout} s") for _, h in todo]
        return
    marked = [line for line in proc.stdout.splitlines() if line.startswith("LOADTEST ")]
    if not marked:
        detail = f"the load test crashed (exit {proc.returncode}): " + " | ".join(proc.stderr.splitlines()[-3:])
        findings += [Finding("load-yaml", h, "fail", detail[:600]) for _, h in todo]
        return
    results = json.loads(marked[-1][len("LOADTEST ") :])
    for _, hparam in todo:
        error = results.get(hparam, "not loaded")
        findings.append(Finding("load-yaml", hparam, "fail" if error else "pass", error))


#: Marks a tests/samples folder as generated by us (one without it, e.g. SpeechBrain's own, is never touched).
MARKER = ".generated_by_modules_upstream"


def check_tree(root, run=True, strict_samples=True, small=False, timeout=900, keep_outputs=None, only=None, load=True):
    """Runs every rule on an export root.

    Arguments
    ---------
    root : str or Path
        A folder laid out as SpeechBrain's repository (``recipes/``, ``tests/recipes/``).
    run : bool
        Also run each row's debug run (slow) on generated ``tests/samples`` data.
    strict_samples : bool
        Generate the samples with upstream's properties (see :mod:`modules.upstream.samples`).
    small : bool
        Pass small backbone sizes to the debug runs (``hparams/tiny.yaml``'s), for a quick CPU run.
    timeout : float
        Seconds per debug run.
    keep_outputs : str, optional
        Folder for the debug runs' output folders (default: temporary).
    only : collection of str, optional
        Hparam files (as in the registry) to check; default every row.
    load : bool
        Run upstream's yaml load test (:mod:`modules.upstream.loadtest`) over the checked rows.

    Returns
    -------
    list of Finding
    """
    root = Path(root).resolve()
    findings = []
    scratch = tempfile.TemporaryDirectory(prefix="upstream_check_")
    samples = root / "tests" / "samples"
    theirs = samples.exists() and not (samples / MARKER).exists()  # e.g. a checkout of SpeechBrain: used as it is
    if not theirs:
        shutil.rmtree(samples, ignore_errors=True)  # ours: written afresh, strict or not
    samples_ready = [theirs, strict_samples, scratch.name]
    registry_dir = root / "tests" / "recipes"
    folders, checked = set(), []
    for csv_path in sorted(registry_dir.glob("*.csv")):
        header, rows = read_registry(csv_path)
        missing = [c for c in COLUMNS if c not in header]
        findings.append(Finding("registry-columns", csv_path.name, "fail" if missing else "pass", ", ".join(missing)))
        dataset = csv_path.stem
        listed = {r.get("Hparam_file") for r in rows}
        on_disk = {
            str(p.relative_to(root)) for p in (root / "recipes" / dataset).rglob("*.yaml") if "hparams" in p.parts
        }
        unlisted = sorted(on_disk - listed)
        findings.append(
            Finding("registry-lists-every-yaml", csv_path.name, "fail" if unlisted else "pass", ", ".join(unlisted))
        )
        for row in rows:
            if only and row.get("Hparam_file") not in only:
                continue
            _row_rules(root, csv_path.name, row, findings, run, samples_ready, small, timeout, keep_outputs)
            if row.get("Script_file") and row.get("Hparam_file"):
                checked.append(row)
            if row.get("Script_file"):
                folders.add((root / row["Script_file"]).parent)
            if not (row.get("performance") or "").strip():
                reason = dict(PENDING)["performance"]
                findings.append(Finding("performance", row.get("Hparam_file", ""), "unmet", reason))
    for folder in sorted(folders):
        if folder.is_dir():
            _folder_rules(root, folder, findings)
    if load and checked:
        _load_rule(root, checked, findings, timeout)
    scratch.cleanup()
    return findings


def report(findings):
    """A plain-text table of the findings; failures first."""
    order = {"fail": 0, "unmet": 1, "pass": 2}
    lines = []
    for f in sorted(findings, key=lambda f: (order[f.status], f.rule, f.subject)):
        line = f"{f.status.upper():5}  {f.rule:26}  {f.subject}"
        if f.detail and f.status != "pass":
            line += f"\n       {f.detail}"
        lines.append(line)
    n_fail = sum(f.status == "fail" for f in findings)
    n_unmet = sum(f.status == "unmet" for f in findings)
    lines.append(f"{len(findings)} checks: {n_fail} failed, {n_unmet} not met yet (stated), "
                 f"{len(findings) - n_fail - n_unmet} passed")  # fmt: skip
    return "\n".join(lines)
