"""Where code reads hyperparameters by name, found in its syntax tree.

A read is an access with a literal key on an object that holds the recipe's
hyperparameters: a name or attribute called ``hparams`` (``hparams["lr"]``,
``self.hparams.lr``, ``hparams.get("lr")``, ``getattr(self.hparams, "lr", 1)``,
``hasattr(self.hparams, "lr")``), a local alias of one (``hp = self.hparams;
hp.lr``), or a call of one of the chassis accessors (``self._hp("lr", 1)``).
A key that appears only in a comment, a string or a list of names is not a
read. This is the notion behind our check of upstream's rule "every yaml
variable is used in the script"; upstream's own check matches these spellings
line by line, which :func:`upstream_visible` tests for.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

__all__ = ["ACCESSORS", "Read", "hparam_reads", "reads_hparams", "upstream_visible"]

#: Methods of the chassis that read a hyperparameter: ``self._hp("key", default)``.
ACCESSORS = ("_hp",)
_DICT_GETTERS = ("get", "setdefault", "pop")
_DICT_METHODS = ("get", "setdefault", "pop", "items", "keys", "values", "update", "copy", "__contains__")


@dataclass
class Read:
    """One read of hyperparameter ``key``.

    Attributes
    ----------
    key : str
    kind : str
        ``subscript``, ``attribute``, ``getter`` (``.get``, ``.setdefault``,
        ``.pop``), ``getattr`` (``getattr`` / ``hasattr``), ``accessor``
        (``self._hp``) or ``alias`` (an attribute of a local alias).
    node : ast.AST
        The access (for an alias read, the ``alias.key`` attribute).
    base : ast.AST or None
        The hyperparameter object (the alias name for an alias read).
    """

    key: str
    kind: str
    node: ast.AST
    base: ast.AST | None = None

    @property
    def lineno(self):
        """First line of the access."""
        return self.node.lineno


def _is_hparams(node, aliases=()):
    if isinstance(node, ast.Name):
        return node.id == "hparams" or node.id in aliases
    return isinstance(node, ast.Attribute) and node.attr == "hparams"


def _literal(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _aliases(function):
    """Local names bound only to a hyperparameter object in a function: ``{name: the bound expression}``."""
    bound, other = {}, set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    if len(node.targets) == 1 and _is_hparams(node.value) and target.id != "hparams":
                        bound.setdefault(target.id, node.value)
                    else:
                        other.add(target.id)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            other.add(node.target.id)
    return {name: value for name, value in bound.items() if name not in other}


def hparam_reads(tree):
    """Every hyperparameter read in a syntax tree (a module, a class or a function).

    Example
    -------
    >>> code = '''
    ... def f(self, hparams):
    ...     hp = self.hparams
    ...     return hparams["a"], hparams.get("b"), self.hparams.c, hp.d, self._hp("e", 1), getattr(self.hparams, "f")
    ... '''
    >>> [(r.key, r.kind) for r in hparam_reads(ast.parse(code))]
    [('a', 'subscript'), ('b', 'getter'), ('c', 'attribute'), ('d', 'alias'), ('e', 'accessor'), ('f', 'getattr')]
    """
    reads = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    scopes = [(f, _aliases(f)) for f in functions] or [(tree, {})]
    seen = set()
    for scope, aliases in scopes:
        for node in ast.walk(scope):
            if id(node) in seen:
                continue
            read = _read_of(node, aliases)
            if read is not None:
                seen.add(id(node))
                reads.append(read)
    # module- or class-level reads outside any function
    for node in ast.walk(tree):
        if id(node) not in seen:
            read = _read_of(node, {})
            if read is not None and not any(_inside(node, f) for f in functions):
                seen.add(id(node))
                reads.append(read)
    reads.sort(key=lambda r: (r.node.lineno, r.node.col_offset))
    return reads


def _inside(node, function):
    return function.lineno <= node.lineno <= function.end_lineno


def _read_of(node, aliases):
    if isinstance(node, ast.Subscript) and _is_hparams(node.value, aliases):
        key = _literal(node.slice)
        return Read(key, "subscript", node, node.value) if key else None
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _DICT_GETTERS and _is_hparams(func.value, aliases):
            key = _literal(node.args[0]) if node.args else None
            return Read(key, "getter", node, func.value) if key else None
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            if _is_hparams(node.args[0], aliases) and _literal(node.args[1]):
                return Read(_literal(node.args[1]), "getattr", node, node.args[0])
        if isinstance(func, ast.Attribute) and func.attr in ACCESSORS and node.args and _literal(node.args[0]):
            return Read(_literal(node.args[0]), "accessor", node, func.value)
        return None
    if isinstance(node, ast.Attribute) and _is_hparams(node.value, aliases):
        if isinstance(node.value, ast.Name) and node.value.id == "hparams" and node.attr in _DICT_METHODS:
            return None  # a method of the hparams dict (its call is a getter read)
        kind = "alias" if isinstance(node.value, ast.Name) and node.value.id in aliases else "attribute"
        return Read(node.attr, kind, node, node.value)
    return None


def reads_hparams(node):
    """Whether a definition reads any hyperparameter by name."""
    return bool(hparam_reads(node))


def upstream_visible(read, line):
    """Whether a read is spelt on one line in a form a line-based check recognises.

    Upstream's check looks, line by line, for ``hparams.<key>``,
    ``["<key>"]``, ``hparams.get("<key>"`` and ``attr(self.hparams, "<key>"``;
    a read split over several lines, or spelt through an alias or an accessor,
    is invisible to it.

    Arguments
    ---------
    read : Read
    line : str
        The source line where the read starts.

    Example
    -------
    >>> r = hparam_reads(ast.parse('x = self.hparams.lr'))[0]
    >>> upstream_visible(r, 'x = self.hparams.lr'), upstream_visible(r, 'x = self.hparams.\\\\\\n lr')
    (True, False)
    """
    key = read.key
    patterns = (f"hparams.{key}", f'["{key}"]', f'hparams.get("{key}"', f'attr(self.hparams, "{key}"')
    return any(p in line for p in patterns)
