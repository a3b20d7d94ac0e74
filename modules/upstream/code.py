"""The code of an exported recipe: ``train.py`` and the local modules beside it.

Upstream's recipe tests put only the recipe folder on ``PYTHONPATH`` and check
that every yaml variable is read in the recipe's script. So the export splits
our code in two, by what the code does, not by a list:

* every top-level function or class of the recipe's modules that reads a
  hyperparameter by name (:mod:`modules.upstream.reads`) goes into
  ``train.py`` (the Brain classes, the steps of a run, the dataset builders),
  together with whatever refers to them (the closure is taken so that no local
  module ever imports ``train``);
* everything else (models, losses, metrics, the typed batch, dynamic mixing,
  file helpers, data preparation) becomes a local module beside ``train.py``,
  named after its file (``modules/losses/si_snr.py`` -> ``si_snr.py``; the
  module of the yaml's ``prepare_data`` -> ``<dataset>_<method>_prepare.py``; other
  ``data_prep`` modules -> ``prep_<name>.py``; a name taken twice, or taken by
  the standard library or an installed package, gets its package path:
  ``losses_dip.py``).

Imports of our packages are rewritten to the local modules, in code and in
doctest lines. Code moved into ``train.py`` keeps its text and comments, with
two spellings normalised so that a line-based reader sees the read: a chassis
accessor ``self._hp("key", default)`` becomes ``getattr(self.hparams, "key",
default)`` (the same value),
and a local alias ``hp = self.hparams; hp.key`` becomes ``self.hparams.key``
(the Brains of a recipe always have hyperparameters; ``_hp`` itself reads
``self.hparams`` too).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field

from modules.upstream.graph import (
    ExportError,
    ModuleGraph,
    free_globals,
    is_ours,
    is_stdlib,
    nested_globals,
    third_party_imports,
    top_level_bindings,
)
from modules.upstream.reads import ACCESSORS, hparam_reads, reads_hparams

__all__ = [
    "ExportPlan",
    "apply_edits",
    "build_local_module",
    "build_train",
    "plan_export",
    "reachable_moved",
    "rewrite_doctest_imports",
]

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_LOGGER = re.compile(r"^\s*logger\s*=\s*(logging\.getLogger|get_logger)\(__name__\)\s*$")
#: Names a local module may not take (the recipe's own files and common script names).
RESERVED = frozenset({"train", "hparams", "setup", "conftest", "test"})


# ----------------------------------------------------------------- editing
def char_offset(lines, lineno, col_byte):
    """Absolute character offset of an AST position (1-based line, UTF-8 byte column)."""
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode("utf-8")[:col_byte].decode("utf-8", errors="ignore"))


def node_span(lines, node):
    """``(start, end)`` character offsets of a node."""
    return char_offset(lines, node.lineno, node.col_offset), char_offset(lines, node.end_lineno, node.end_col_offset)


def apply_edits(text, edits):
    """Applies non-overlapping ``(start, end, replacement)`` edits to ``text``.

    Example
    -------
    >>> apply_edits("abcdef", [(4, 6, "X"), (0, 1, "")])
    'bcdX'
    """
    out, last = [], len(text)
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        if end > last:
            raise ExportError(f"overlapping edits at offset {start}")
        out.append(text[end:last])
        out.append(new)
        last = start
    out.append(text[:last])
    return "".join(reversed(out))


def definition_span(lines, node):
    """Whole lines of a top-level definition, decorators included: ``(start, end)`` offsets."""
    first = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
    start = sum(len(line) for line in lines[: first - 1])
    end = sum(len(line) for line in lines[: node.end_lineno])
    return start, end


# ------------------------------------------------------------------ naming
def flat_names(modules, prep_module=None, taken=(), prep_name="prepare_data"):
    """Local module name of each of our modules (see the module docstring).

    Example
    -------
    >>> flat_names(["modules.brain", "modules.losses.dip", "modules.models.dip", "data_prep.common"])
    {'modules.brain': 'brain', 'modules.losses.dip': 'losses_dip', 'modules.models.dip': 'models_dip', \
'data_prep.common': 'prep_common'}
    """

    def candidates(name):
        parts = name.split(".")
        if name == prep_module:
            return [prep_name]
        tail = parts[1:] or parts
        prefix = "prep_" if parts[0] == "data_prep" else ""
        return [prefix + tail[-1], prefix + "_".join(tail), "_".join(parts)]

    blocked = set(RESERVED) | set(taken)
    names, level = {}, dict.fromkeys(modules, 0)
    while True:
        names = {m: candidates(m)[min(level[m], len(candidates(m)) - 1)] for m in modules}
        clash = False
        for m, n in names.items():
            dup = [o for o, on in names.items() if on == n and o != m]
            if (dup or n in blocked or _importable(n)) and level[m] < len(candidates(m)) - 1:
                level[m] += 1
                clash = True
        if not clash:
            return names


def _importable(name):
    if is_stdlib(name):
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# -------------------------------------------------------------------- plan
@dataclass
class ExportPlan:
    """What goes where.

    Attributes
    ----------
    closure : list of str
        Our modules the recipe reaches (dependencies first).
    moved : dict
        ``{module: [names]}``: top-level definitions that go into ``train.py``.
    names : dict
        ``{module: local module name}``.
    pinned : set
        ``(module, name)`` named by yaml tags: they stay in their local module.
    notes : list of str
        Things the exporter could not move (reported by the checks).
    statements : dict
        ``{module: [ast.Expr]}``: module-level calls that register a moved
        definition (``FAMILIES.append((..., f))``); they run in ``train.py``
        after the definitions, in source order.
    """

    closure: list
    moved: dict
    names: dict
    pinned: set = field(default_factory=set)
    notes: list = field(default_factory=list)
    statements: dict = field(default_factory=dict)

    def is_moved(self, module, name):
        """Whether ``module.name`` goes into ``train.py``."""
        return name in self.moved.get(module, ())


def _topological(graph, modules):
    """Modules ordered so that a module comes after the modules it imports."""
    order, state = [], {}

    def visit(m):
        if state.get(m) == 2:
            return
        if state.get(m) == 1:
            return  # an import cycle: keep discovery order
        state[m] = 1
        for _node, targets in graph.our_imports(m):
            for _alias, (target, _attr) in targets:
                if target in modules:
                    visit(target)
        state[m] = 2
        order.append(m)

    for m in modules:
        visit(m)
    return order


def _top_defs(module):
    return [n for n in module.tree.body if isinstance(n, _DEFS)]


def _binding_target(graph, module, name):
    """Where a global name of ``module`` comes from: ``(module, name)`` of ours, or None."""
    binding = top_level_bindings(module.tree).get(name)
    if binding is None:
        return None
    if isinstance(binding, _DEFS) or isinstance(binding, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return module.name, name
    if isinstance(binding, ast.ImportFrom) and is_ours(graph.absolute(module, binding)):
        return graph.resolve(module.name, name)
    if isinstance(binding, ast.Import):
        for alias in binding.names:
            if (alias.asname or alias.name.split(".")[0]) == name and is_ours(alias.name):
                return alias.name, None
    return None


def plan_export(graph: ModuleGraph, roots, pinned=(), prep_module=None, prep_name="prepare_data"):
    """Decides which definitions go into ``train.py`` and names the local modules.

    A top-level definition that reads hyperparameters moves, and so does
    whatever refers to a moved definition, except what must stay importable
    from a local module: what the yaml names by tag, what those use, and what
    a module uses at import time. Those stay (with :attr:`ExportPlan.notes`
    saying so); their reads are then not in ``train.py`` and the check of the
    export reports the variables concerned.

    Arguments
    ---------
    graph : ModuleGraph
    roots : list of str
        Modules the recipe's scripts and yamls import.
    pinned : iterable of (module, name)
        Definitions the yaml names by tag.
    prep_module : str, optional
        The module of the yaml's ``prepare_data``.
    prep_name : str
        Its local name (:func:`modules.upstream.exporter.prep_module_name`).

    Returns
    -------
    ExportPlan
    """
    closure = _topological(graph, graph.closure(roots))
    pinned = set(pinned)
    defs = {(m, n.name): n for m in closure for n in _top_defs(graph.module(m))}
    refs = {(m, name): _references(graph, graph.module(m), node) for (m, name), node in defs.items()}
    stays = set()
    todo = [d for d in defs if d in pinned]
    todo += [t for m in closure for t in _import_time_uses(graph, graph.module(m))]
    notes = []
    while todo:  # what the yaml names, what modules use at import time, and all they use, stay
        item = todo.pop()
        if item in stays or item not in defs:
            continue
        stays.add(item)
        if reads_hparams(defs[item]):
            notes.append(f"{item[0]}.{item[1]} reads hyperparameters but must stay importable: it stays in a module")
        todo += list(refs[item])
    moved = {d for d, node in defs.items() if d not in stays and reads_hparams(node)}
    changed = True
    while changed:  # whatever refers to a moved definition moves too
        changed = False
        for item in defs:
            if item not in moved and item not in stays and refs[item] & moved:
                moved.add(item)
                changed = True
    by_module = {}
    for m in closure:  # source order
        names = [n.name for n in _top_defs(graph.module(m)) if (m, n.name) in moved]
        if names:
            by_module[m] = names
    taken = set()
    for m in closure:
        taken |= third_party_imports(graph.module(m).tree)
    names = flat_names(closure, prep_module, taken, prep_name)
    statements = {}
    for m in closure:
        module = graph.module(m)
        found = [st for st in module.tree.body if _is_registration(st) and _stmt_targets(graph, module, st) & moved]
        if found:
            statements[m] = found
    return ExportPlan(closure, by_module, names, pinned, sorted(set(notes)), statements)


def _is_registration(stmt):
    """A module-level call statement (``register(...)``, ``TABLE.append(...)``)."""
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)


def _stmt_targets(graph, module, stmt):
    """Definitions of ours a module-level statement names."""
    found = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            target = _binding_target(graph, module, node.id)
            if target and target[1]:
                found.add(target)
    return found


def _import_time_uses(graph, module):
    """Definitions of ours a module's import-time statements use (``__all__`` and docstrings left out)."""
    used = []
    for stmt in module.tree.body:
        if isinstance(stmt, _DEFS) or isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        if _is_registration(stmt):
            continue  # a registration of a moved definition moves with it (ExportPlan.statements)
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                target = _binding_target(graph, module, node.id)
                if target and target[1]:
                    used.append(target)
    return used


def reachable_moved(graph, plan, start):
    """Moved definitions reachable from ``start`` (``(module, name)`` pairs) through references.

    A script of the export holds these (a recipe with two scripts, e.g.
    ``pretrain.py`` and ``train.py``, gives each what it runs).
    """
    seen, todo = set(), [s for s in start if s[1] and plan.is_moved(*s)]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        module = graph.module(item[0])
        node = next(n for n in _top_defs(module) if n.name == item[1])
        todo += [t for t in _references(graph, module, node) if plan.is_moved(*t)]
    return seen


def _references(graph, module, node):
    """Definitions of ours a top-level definition uses: ``{(module, name)}``.

    Its global names, and what it imports itself (``from modules.x import f``
    inside a function body).
    """
    found = {t for t in (_binding_target(graph, module, r) for r in free_globals(module, node)) if t and t[1]}
    for inner in ast.walk(node):
        if isinstance(inner, ast.ImportFrom) and is_ours(graph.absolute(module, inner) or ""):
            source = graph.absolute(module, inner)
            for alias in inner.names:
                target = graph.resolve(source, alias.name)
                if target[1]:
                    found.add(target)
    return found


# ----------------------------------------------------------- doctest lines
_DOCTEST_IMPORT_AS = re.compile(r"^(?P<lead>\s*(?:>>>|\.\.\.)\s+)import\s+(?P<mod>[\w.]+)\s+as\s+(?P<alias>\w+)\s*$")
_DOCTEST_IMPORT = re.compile(
    r"^(?P<lead>\s*(?:>>>|\.\.\.)\s+)from\s+(?P<mod>[\w.]+)\s+import\s+(?P<names>[\w ,]+?)\s*$"
)


def _foreign(match, graph, plan):
    """Whether a doctest import names one of our modules that is not part of the export."""
    module = match["mod"]
    if not graph.exists(module):
        return True
    for part in match["names"].split(","):
        bits = part.split()
        if bits:
            target, _attr = graph.resolve(module, bits[0])
            if target not in plan.names:
                return True
    return False


def drop_foreign_examples(text, graph, plan):
    """Removes the examples of docstrings that import our modules the export does not carry.

    The example section (from its ``Example``/``Examples`` heading, or from
    its first ``>>>`` line, to the end of the docstring) goes; the rest of the
    docstring stays.
    """
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    cuts = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not (isinstance(body, list) and body and isinstance(body[0], ast.Expr)):
            continue
        doc = body[0].value
        if not (isinstance(doc, ast.Constant) and isinstance(doc.value, str)):
            continue
        first, last = doc.lineno, doc.end_lineno  # 1-based, last holds the closing quotes
        span = range(first, last)
        bad = [i for i in span if (m := _DOCTEST_IMPORT.match(lines[i - 1].rstrip("\n"))) and is_ours(m["mod"])
               and _foreign(m, graph, plan)]  # fmt: skip
        bad += [i for i in span if (m := _DOCTEST_IMPORT_AS.match(lines[i - 1].rstrip("\n"))) and is_ours(m["mod"])
                and m["mod"] not in plan.names]  # fmt: skip
        if not bad:
            continue
        start = next((i for i in span if lines[i - 1].strip().startswith(">>>")), bad[0])
        for i in span:
            heading = lines[i - 1].strip()
            if heading in ("Example", "Examples") and i + 1 < last and set(lines[i].strip()) == {"-"} and i < start:
                start = i
        while start - 1 > first and not lines[start - 2].strip():
            start -= 1
        cuts.append((start, last))
    for start, last in sorted(cuts, reverse=True):
        del lines[start - 1 : last - 1]
    return "".join(lines)


def rewrite_doctest_imports(text, graph, plan):
    """Rewrites ``>>> from modules.x import y`` lines of docstrings to the local modules.

    A name that went into ``train.py`` is imported from ``train`` (importing
    it runs no recipe: its main block is guarded). Examples that need one of
    our modules the export does not carry are removed
    (:func:`drop_foreign_examples`).
    """
    text = drop_foreign_examples(text, graph, plan)
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        plain = _DOCTEST_IMPORT_AS.match(body)
        if plain and is_ours(plain["mod"]) and plain["mod"] in plan.names:
            out.append(f"{plain['lead']}import {plan.names[plain['mod']]} as {plain['alias']}\n")
            continue
        match = _DOCTEST_IMPORT.match(body)
        if not match or not is_ours(match["mod"]):
            out.append(line)
            continue
        groups = {}
        for part in match["names"].split(","):
            bits = part.split()
            if not bits:
                continue
            name, alias = bits[0], (bits[2] if len(bits) == 3 and bits[1] == "as" else None)
            module, attr = graph.resolve(match["mod"], name) if graph.exists(match["mod"]) else (match["mod"], name)
            target = "train" if attr and plan.is_moved(module, attr) else plan.names.get(module, module)
            if attr is None:
                out.append(f"{match['lead']}import {plan.names.get(module, module)} as {alias or name}\n")
                continue
            groups.setdefault(target, []).append(attr + (f" as {alias}" if alias and alias != attr else ""))
        for target, names in groups.items():
            out.append(f"{match['lead']}from {target} import {', '.join(names)}\n")
    return "".join(out)


# ----------------------------------------------------- rewriting of imports
def _import_lines(graph, plan, module, node, targets):
    """Replacement statements for one import of our packages (possibly none)."""
    lines = []
    grouped = {}
    for alias, (target, attr) in targets:
        bound = alias.asname or (alias.name if isinstance(node, ast.ImportFrom) else None)
        if attr is not None and plan.is_moved(target, attr):
            continue  # lives in train.py; only moved code may use it (see plan_export)
        local = plan.names[target]
        if attr is None:
            if isinstance(node, ast.Import) and alias.asname is None:
                raise ExportError(f"{module.name} line {node.lineno}: use `import {alias.name} as <name>`")
            lines.append(f"import {local}" if bound == local else f"import {local} as {bound}")
        else:
            grouped.setdefault(local, []).append(attr if bound in (None, attr) else f"{attr} as {bound}")
    for local, names in grouped.items():
        lines.append(f"from {local} import {', '.join(names)}")
    return lines


def _all_edit(module, stmt, removed):
    """Edit of a module's ``__all__`` list without the moved names (or None)."""
    value = stmt.value
    if not isinstance(value, (ast.List, ast.Tuple)):
        return None
    kept = [e.value for e in value.elts if isinstance(e, ast.Constant) and e.value not in removed]
    if len(kept) == len(value.elts):
        return None
    start, end = node_span(module.lines, value)
    return start, end, "[" + ", ".join(repr(k).replace("'", '"') for k in kept) + "]"


def build_local_module(graph, plan, name):
    """Source of the local module for ``name``: moved definitions removed, imports rewritten."""
    module = graph.module(name)
    edits = []
    moved = set(plan.moved.get(name, ()))
    for node in _top_defs(module):
        if node.name in moved:
            edits.append(definition_span(module.lines, node))
            edits[-1] = (*edits[-1], "")
    for stmt in plan.statements.get(name, []):
        edits.append((*definition_span(module.lines, stmt), ""))
    deleted = [(s, e) for s, e, _ in edits]
    for node, targets in graph.our_imports(name):
        start, end = node_span(module.lines, node)
        if any(s <= start < e for s, e in deleted):
            continue  # inside a definition that goes into train.py
        indent = module.lines[node.lineno - 1][: node.col_offset]
        new = _import_lines(graph, plan, module, node, targets)
        if not new and node.col_offset:
            new = ["pass"]
        if not new:  # a whole-line statement: drop the line
            start = sum(len(line) for line in module.lines[: node.lineno - 1])
            end = sum(len(line) for line in module.lines[: node.end_lineno])
            edits.append((start, end, ""))
        else:
            edits.append((start, end, ("\n" + indent).join(new)))
    for stmt in module.tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            edit = _all_edit(module, stmt, moved)
            if edit:
                edits.append(edit)
    if moved:
        note = _moved_note(module, sorted(moved, key=[n.name for n in _top_defs(module)].index))
        if note:
            edits.append(note)
    text = apply_edits(module.source, edits)
    return rewrite_doctest_imports(text, graph, plan)


def _moved_note(module, names):
    """An edit appending to the module docstring which of its definitions are in ``train.py``."""
    first = module.tree.body[0] if module.tree.body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if not (is_doc and isinstance(first.value.value, str)):
        return None
    line = module.lines[first.end_lineno - 1]
    quote = line.rfind('"""')
    if quote < 0:
        return None
    offset = sum(len(x) for x in module.lines[: first.end_lineno - 1]) + quote
    listed = ", ".join(f"``{n}``" for n in names)
    text = f"In the exported recipe, {listed} {'is' if len(names) == 1 else 'are'} in ``train.py``."
    lead = "\n\n" if line[:quote].strip() else "\n"
    return offset, offset, f"{lead}{text}\n"


# ----------------------------------------------------- code for train.py
def _rewrite_inner_imports(graph, plan, module, node, start, end):
    """Text of a top-level definition with its own imports of our packages rewritten."""
    edits = []
    for imp, targets in graph.our_imports(module.name):
        i_start, i_end = node_span(module.lines, imp)
        if not (start <= i_start < end):
            continue
        indent = module.lines[imp.lineno - 1][: imp.col_offset]
        new = _import_lines(graph, plan, module, imp, targets) or ["pass"]
        edits.append((i_start - start, i_end - start, ("\n" + indent).join(new)))
    return apply_edits(module.source[start:end], edits)


def normalise_reads(text):
    """Rewrites accessor calls and alias reads of a top-level definition's text (see the module docstring).

    Example
    -------
    >>> print(normalise_reads('''def f(self):
    ...     hp = self.hparams
    ...     return hp.lr, self._hp("n", 2), self._hp("m")
    ... '''))
    def f(self):
        return self.hparams.lr, getattr(self.hparams, "n", 2), getattr(self.hparams, "m", None)
    <BLANKLINE>
    """
    for _ in range(10):
        tree = ast.parse(text)
        lines = text.splitlines(keepends=True)
        edits, covered = [], []
        for read in hparam_reads(tree):
            start, end = node_span(lines, read.node)
            if any(s <= start and end <= e for s, e in covered):
                continue
            if read.kind == "accessor" and read.node.func.attr in ACCESSORS:
                base = ast.get_source_segment(text, read.node.func.value)
                default = ast.get_source_segment(text, read.node.args[1]) if len(read.node.args) > 1 else "None"
                if read.node.keywords or len(read.node.args) > 2:
                    raise ExportError(f"unexpected accessor call: {ast.get_source_segment(text, read.node)}")
                edits.append((start, end, f'getattr({base}.hparams, "{read.key}", {default})'))
                covered.append((start, end))
            elif read.kind == "alias":
                b_start, b_end = node_span(lines, read.base)
                edits.append((b_start, b_end, _alias_value(tree, read.base.id, text)))
                covered.append((b_start, b_end))
        if not edits:
            return _drop_unused_aliases(text)
        text = apply_edits(text, edits)
    raise ExportError("could not normalise the hyperparameter reads (nested accessors?)")


def _statement_globals(text):
    """Global names a module-level statement refers to (:mod:`symtable`; builtins left out)."""
    import builtins
    import symtable

    table = symtable.symtable(text, "<statement>", "exec")
    names = {sym.get_name() for sym in table.get_symbols() if sym.is_referenced()}
    return {n for n in names | nested_globals(table) if n not in dir(builtins)}


def _alias_value(tree, alias, text):
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == alias:
                return ast.get_source_segment(text, node.value)
    raise ExportError(f"alias {alias} not found")


def _drop_unused_aliases(text):
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if not (isinstance(value, ast.Attribute) and value.attr == "hparams"):
            continue
        name = node.targets[0].id
        used = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
        if not used and node.lineno == node.end_lineno:
            start = sum(len(line) for line in lines[: node.lineno - 1])
            edits.append((start, start + len(lines[node.lineno - 1]), ""))
    return apply_edits(text, edits) if edits else text


@dataclass
class _Imports:
    """The import block of ``train.py``."""

    plain: dict = field(default_factory=dict)  # statement text -> None (ordered set)
    bound: dict = field(default_factory=dict)  # bound name -> statement text

    def add(self, statement, bound=None):
        if bound is not None:
            previous = self.bound.get(bound)
            if previous is not None and previous != statement:
                raise ExportError(f"train.py would import two different `{bound}`: {previous!r} and {statement!r}")
            self.bound[bound] = statement
        self.plain[statement] = None


def _stmt_for_global(graph, plan, module, name, imports, needs):
    """Adds to ``imports`` what ``train.py`` needs for global ``name`` of ``module``."""
    binding = top_level_bindings(module.tree).get(name)
    if binding is None:
        return
    if isinstance(binding, _DEFS):
        if not plan.is_moved(module.name, name):
            imports.add(f"from {plan.names[module.name]} import {name}", name)
        return
    if isinstance(binding, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        segment = "".join(module.lines[binding.lineno - 1 : binding.end_lineno])
        if name == "logger" and _LOGGER.match(segment.strip()):
            needs.add("logger")
            return
        imports.add(f"from {plan.names[module.name]} import {name}", name)
        return
    if isinstance(binding, ast.ImportFrom):
        source = graph.absolute(module, binding)
        for alias in binding.names:
            if (alias.asname or alias.name) != name:
                continue
            if is_ours(source):
                target, attr = _binding_target(graph, module, name)
                if attr is None:
                    imports.add(f"import {plan.names[target]} as {name}", name)
                elif not plan.is_moved(target, attr):
                    local = plan.names[target]
                    imports.add(f"from {local} import {attr}" + (f" as {name}" if name != attr else ""), name)
            else:
                as_part = f" as {alias.asname}" if alias.asname else ""
                imports.add(f"from {'.' * binding.level}{binding.module or ''} import {alias.name}{as_part}", name)
        return
    if isinstance(binding, ast.Import):
        for alias in binding.names:
            if (alias.asname or alias.name.split(".")[0]) != name:
                continue
            if is_ours(alias.name):
                imports.add(f"import {plan.names[alias.name]} as {name}", name)
            elif alias.asname:
                imports.add(f"import {alias.name} as {alias.asname}", name)
            else:
                imports.add(f"import {alias.name}", None)


def build_train(graph, plan, recipe_source, docstring, include=None):
    """Source of the exported ``train.py``.

    Arguments
    ---------
    graph : ModuleGraph
    plan : ExportPlan
    recipe_source : str
        Our recipe's ``train.py``: its imports of our packages are resolved,
        everything else it holds (its main block, any class of its own) is kept.
    docstring : str
        The module docstring of the exported script.
    include : set of (module, name), optional
        The moved definitions this script holds (default: all).

    Returns
    -------
    str
    """
    imports, needs, bodies, future = _Imports(), set(), [], False
    defined = {}
    for m in plan.closure:
        names = plan.moved.get(m)
        if not names:
            continue
        module = graph.module(m)
        future |= any(isinstance(s, ast.ImportFrom) and s.module == "__future__" for s in module.tree.body)
        for node in _top_defs(module):
            if node.name not in names or (include is not None and (m, node.name) not in include):
                continue
            if node.name in defined:
                raise ExportError(f"{m}.{node.name} and {defined[node.name]}.{node.name} would both go into train.py")
            defined[node.name] = m
            start, end = definition_span(module.lines, node)
            text = normalise_reads(_rewrite_inner_imports(graph, plan, module, node, start, end))
            bodies.append(rewrite_doctest_imports(text, graph, plan))
            for ref in sorted(free_globals(module, node)):
                _stmt_for_global(graph, plan, module, ref, imports, needs)
        for stmt in plan.statements.get(m, []):
            targets = {t for t in _stmt_targets(graph, module, stmt) if plan.is_moved(*t)}
            if include is not None and not targets & include:
                continue
            bodies.append("".join(module.lines[stmt.lineno - 1 : stmt.end_lineno]))
            for ref in sorted(_statement_globals(bodies[-1])):
                _stmt_for_global(graph, plan, module, ref, imports, needs)
    recipe_tree = ast.parse(recipe_source)
    recipe_lines = recipe_source.splitlines(keepends=True)
    tail = []
    for stmt in recipe_tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt is recipe_tree.body[0]:
            continue  # the docstring: replaced
        segment = "".join(recipe_lines[stmt.lineno - 1 : stmt.end_lineno])
        if isinstance(stmt, ast.ImportFrom) and is_ours(stmt.module or ""):
            for alias in stmt.names:
                target, attr = graph.resolve(stmt.module, alias.name)
                if attr is None or not plan.is_moved(target, attr):
                    bound = alias.asname or alias.name
                    what = f"import {plan.names[target]} as {bound}" if attr is None else None
                    what = what or f"from {plan.names[target]} import {attr}" + (
                        f" as {bound}" if bound != attr else ""
                    )
                    imports.add(what, bound)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            imports.add(segment.strip(), None)
        else:
            tail.append(segment)
    if "logger" in needs:
        imports.add("import logging", "logging")
    header = ['#!/usr/bin/env python3\n"""' + docstring.strip("\n") + '\n"""\n\n']
    if future:
        header.append("from __future__ import annotations\n\n")
    header.append("\n".join(imports.plain) + "\n\n")
    if "logger" in needs:
        header.append("logger = logging.getLogger(__name__)\n\n")
    return "".join(header) + "\n\n".join(b.rstrip("\n") + "\n" for b in bodies) + "\n\n" + "".join(tail)
