"""The import graph of a recipe: which of our modules it runs, found by reading the code.

A recipe's dependencies are discovered, never listed by hand: the roots are the
imports of its ``train.py`` and the ``!new:`` / ``!name:`` / ``!apply:`` /
``!module:`` tags of its yaml that name our packages; every import statement
of a reached module (module level or inside a function) is followed. A name
imported from a package (``from modules.losses import pit_si_snr_loss``) is
followed through the package's re-exports to the module that defines it, so a
recipe carries the modules it uses and not everything a package
``__init__`` happens to import.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "OUR_PACKAGES",
    "YAML_TAG",
    "ExportError",
    "ModuleGraph",
    "ParsedModule",
    "free_globals",
    "nested_globals",
    "top_level_bindings",
]

#: Our top-level packages: an exported recipe imports none of them.
OUR_PACKAGES = ("modules", "data_prep")

#: A yaml tag naming a Python object: ``!new:a.b.C``, ``!name:a.b.f``, ``!apply:...``, ``!module:a.b``.
YAML_TAG = re.compile(r"!(new|name|apply|module):([A-Za-z_][\w.]*)")

_BUILTINS = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__", "__package__"}


class ExportError(Exception):
    """A recipe cannot be exported as it is; the message says what to change."""


@dataclass
class ParsedModule:
    """One of our modules: dotted name, file, source text and syntax tree."""

    name: str
    path: Path
    source: str
    tree: ast.Module
    is_package: bool = False
    lines: list = field(default_factory=list)

    def __post_init__(self):
        self.lines = self.source.splitlines(keepends=True)

    @property
    def package(self):
        """The package a relative import of this module starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def is_ours(dotted):
    """Whether a dotted module name belongs to one of :data:`OUR_PACKAGES`.

    Example
    -------
    >>> is_ours("modules.losses.si_snr"), is_ours("speechbrain.nnet"), is_ours("modules_x")
    (True, False, False)
    """
    return dotted.split(".")[0] in OUR_PACKAGES


def top_level_bindings(tree):
    """``{name: statement}`` for every name a module binds at import time.

    Definitions, assignments and imports at module level, including those
    inside module-level ``if`` / ``try`` / ``with`` blocks (not inside
    functions or classes).

    Example
    -------
    >>> tree = ast.parse("import os\\nfrom a import b as c\\nX = 1\\ndef f(): pass\\nclass K: pass")
    >>> sorted(top_level_bindings(tree))
    ['K', 'X', 'c', 'f', 'os']
    """
    found = {}

    def visit(statements):
        for stmt in statements:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[stmt.name] = stmt
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if bound != "*":
                        found[bound] = stmt
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            found[node.id] = stmt
            elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, block, []) or [])
                for handler in getattr(stmt, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    return found


def free_globals(module, node):
    """Module-level names a top-level definition refers to (builtins left out).

    Uses :mod:`symtable`, so local variables, parameters and comprehension
    variables are told apart from globals exactly. Decorators, base classes,
    default values and annotations count.

    Arguments
    ---------
    module : ParsedModule
    node : ast.FunctionDef or ast.ClassDef
        A top-level definition of ``module``.

    Returns
    -------
    set of str
    """
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    text = "".join(module.lines[start - 1 : node.end_lineno])
    text = _dedent_first(text)
    table = symtable.symtable(text, str(module.path), "exec")
    names = set()
    for sym in table.get_symbols():  # decorators, bases, defaults evaluated at module level
        if sym.is_referenced() and sym.get_name() != node.name:
            names.add(sym.get_name())
    return {n for n in names | nested_globals(table) if n not in _BUILTINS}


def nested_globals(table):
    """Global names referenced in the nested scopes (functions, classes, comprehensions) of a symbol table."""
    names = set()

    def walk(tab):
        for sym in tab.get_symbols():
            if sym.is_referenced() and sym.is_global():
                names.add(sym.get_name())
        for child in tab.get_children():
            walk(child)

    for child in table.get_children():
        walk(child)
    return names


def _dedent_first(text):
    first = text.splitlines()[0] if text else ""
    indent = len(first) - len(first.lstrip())
    if not indent:
        return text
    return "".join(line[indent:] if line[:indent].strip() == "" else line for line in text.splitlines(True))


class ModuleGraph:
    """Parses our modules on demand and resolves names to the module defining them.

    Arguments
    ---------
    root : str or Path
        The repository root (the folder holding ``modules/`` and ``data_prep/``).

    Example
    -------
    >>> graph = ModuleGraph(Path(__file__).resolve().parents[2])
    >>> graph.resolve("modules.losses", "pit_si_snr_loss")
    ('modules.losses.si_snr', 'pit_si_snr_loss')
    """

    def __init__(self, root):
        self.root = Path(root)
        self._cache = {}

    # ----------------------------------------------------------- modules
    def exists(self, dotted):
        """Whether ``dotted`` is one of our modules or packages."""
        return is_ours(dotted) and self._file(dotted) is not None

    def _file(self, dotted):
        base = self.root.joinpath(*dotted.split("."))
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        return None

    def module(self, dotted):
        """The :class:`ParsedModule` named ``dotted`` (parsed once)."""
        if dotted not in self._cache:
            found = self._file(dotted)
            if found is None:
                raise ExportError(f"module {dotted} not found under {self.root}")
            path, is_package = found
            source = path.read_text(encoding="utf-8")
            self._cache[dotted] = ParsedModule(dotted, path, source, ast.parse(source, str(path)), is_package)
        return self._cache[dotted]

    def absolute(self, module, node):
        """The absolute module name an ``ImportFrom`` node imports from (relative imports resolved)."""
        if not node.level:
            return node.module
        base = module.package.split(".")
        if node.level > 1:
            base = base[: -(node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    # ------------------------------------------------------------- names
    def resolve(self, dotted, name, _seen=None):
        """``(defining module, name)`` of ``name`` as seen from module ``dotted``.

        A name a module re-exports (``from modules.x import name``) is
        followed to ``modules.x``; a submodule of a package resolves to
        ``(submodule, None)``.
        """
        seen = _seen or set()
        if (dotted, name) in seen:
            raise ExportError(f"circular re-export of {name} in {dotted}")
        seen.add((dotted, name))
        module = self.module(dotted)
        binding = top_level_bindings(module.tree).get(name)
        if binding is None:
            if module.is_package and self.exists(f"{dotted}.{name}"):
                return f"{dotted}.{name}", None
            raise ExportError(f"{dotted} has no name {name!r}")
        if isinstance(binding, ast.ImportFrom):
            source = self.absolute(module, binding)
            if is_ours(source):
                for alias in binding.names:
                    if (alias.asname or alias.name) == name:
                        if self.exists(f"{source}.{alias.name}") and not self._binds(source, alias.name):
                            return f"{source}.{alias.name}", None
                        return self.resolve(source, alias.name, seen)
        if isinstance(binding, ast.Import):
            for alias in binding.names:
                if (alias.asname or alias.name.split(".")[0]) == name and is_ours(alias.name):
                    return (alias.name if alias.asname else alias.name.split(".")[0]), None
        return dotted, name

    def _binds(self, dotted, name):
        return name in top_level_bindings(self.module(dotted).tree)

    def resolve_dotted(self, path):
        """Resolves a dotted path such as a yaml tag's (``modules.models.MaskingSeparator``).

        Returns
        -------
        (module, name or None)
            The longest prefix that is one of our modules, and the attribute
            (followed through re-exports), or ``None`` for a module.
        """
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if self.exists(head):
                rest = parts[cut:]
                if not rest:
                    return head, None
                if len(rest) > 1:
                    raise ExportError(f"{path}: nested attribute {'.'.join(rest)} of {head} is not supported")
                return self.resolve(head, rest[0])
        raise ExportError(f"{path} is not one of our modules")

    # ----------------------------------------------------------- imports
    def our_imports(self, dotted):
        """``[(node, [(alias, (module, name or None))])]`` for every import of our packages in a module.

        Imports inside functions count (they run when the function does).
        """
        module = self.module(dotted)
        found = []
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom):
                source = self.absolute(module, node)
                if not is_ours(source):
                    continue
                targets = []
                for alias in node.names:
                    if alias.name == "*":
                        raise ExportError(f"{dotted}: star import from {source} cannot be exported")
                    if self.exists(f"{source}.{alias.name}") and not self._binds(source, alias.name):
                        targets.append((alias, (f"{source}.{alias.name}", None)))
                    else:
                        targets.append((alias, self.resolve(source, alias.name)))
                found.append((node, targets))
            elif isinstance(node, ast.Import):
                targets = [(alias, (alias.name, None)) for alias in node.names if is_ours(alias.name)]
                if targets:
                    if len(targets) != len(node.names):
                        raise ExportError(f"{dotted} line {node.lineno}: split this import (ours and others mixed)")
                    found.append((node, targets))
        return found

    def closure(self, roots):
        """Every module of ours reached from ``roots`` (dotted module names), in discovery order."""
        order, todo = [], list(roots)
        while todo:
            name = todo.pop(0)
            if name in order:
                continue
            order.append(name)
            for _node, targets in self.our_imports(name):
                for _alias, (target, _attr) in targets:
                    if target not in order:
                        todo.append(target)
        return order


def third_party_imports(tree):
    """Top-level names of the modules an AST imports that are not ours (relative imports left out).

    Example
    -------
    >>> sorted(third_party_imports(ast.parse("import numpy as np\\nfrom torch import nn\\nfrom modules import x")))
    ['numpy', 'torch']
    """
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in OUR_PACKAGES}


def is_stdlib(name):
    """Whether a top-level module name is part of Python's standard library."""
    return name in sys.stdlib_module_names or name == "__future__"
