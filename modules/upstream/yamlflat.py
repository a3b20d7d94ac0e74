"""A recipe yaml with its ``!include``d blocks written into it, comments kept.

Our recipe yamls include shared files (``training: !include:.../training.yaml``,
``backbone: !include:.../backbones/sepformer.yaml``) with overrides under the
include. An upstream recipe is one self-contained yaml, so the export writes
the included text into the file:

* the shared training block (the key our runner lifts to the top level,
  :data:`LIFTED`) becomes top-level entries, in place of the include, with
  the recipe's overrides applied; a key the recipe also sets at its top level
  keeps the recipe's entry, as the runner does (an error if the block itself
  refers to its own value of that key, which would then change);
* every other include becomes a nested mapping under its key (``backbone:``),
  its internal references rewritten (``<N_encoder_out>`` ->
  ``<backbone[N_encoder_out]>``), so references from the recipe
  (``<backbone[separator]>``) stay as they are and two includes of the same
  file (a backbone and a denoiser) cannot collide.

The work is done on the text, entry by entry, so every comment stays where it
was. :func:`check_equivalent` loads the original (through our runner's
loading) and the flattened text and compares every value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from modules.upstream.graph import ExportError

__all__ = [
    "LIFTED",
    "Entry",
    "check_equivalent",
    "drop_entries",
    "flatten_yaml",
    "split_entries",
    "variables_to_read",
]

#: The included block whose keys our runner lifts to the top level (modules.recipe.lift_training_block).
LIFTED = "training"
_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w.\-]*)\s*:(?=\s|$)(?P<rest>.*)$", re.DOTALL)
_INCLUDE = re.compile(r"^\s*!include:(?P<path>\S+)\s*(?:#.*)?$")
_REF = re.compile(r"<(?P<name>[A-Za-z_]\w*)(?P<index>(?:\[[^\]<>]+\])*)>")


@dataclass
class Entry:
    """One top-level entry of a yaml text.

    Attributes
    ----------
    key : str or None
        ``None`` for trailing comments.
    lead : list of str
        Comment and blank lines above the entry.
    head : str
        The line of the key (with its newline).
    body : list of str
        The indented lines of its value.
    """

    key: str | None
    lead: list = field(default_factory=list)
    head: str = ""
    body: list = field(default_factory=list)

    @property
    def value(self):
        """The text after ``key:`` on the head line (tag, scalar and comment)."""
        return _KEY.match(self.head.rstrip("\n"))["rest"] if self.key else ""

    def text(self):
        """The entry as yaml text."""
        return "".join([*self.lead, self.head, *self.body])


def split_entries(text):
    """Splits a yaml text into its top-level entries.

    Example
    -------
    >>> entries = split_entries("# head\\n\\na: 1  # one\\nb: !new:x.Y\\n    k: 2\\n\\n# tail\\n")
    >>> [(e.key, len(e.lead), e.body) for e in entries]
    [('a', 2, []), ('b', 0, ['    k: 2\\n']), (None, 2, [])]
    """
    entries, pending, current = [], [], None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if not stripped or (line.startswith("#")):
            pending.append(line)
            continue
        if line[0] in " \t":
            if current is None:
                raise ExportError(f"indented line before any key: {line!r}")
            current.body.extend(pending)
            pending = []
            current.body.append(line)
            continue
        match = _KEY.match(line.rstrip("\n"))
        if match is None:
            raise ExportError(f"cannot read top-level yaml line {line!r}")
        current = Entry(match["key"], pending, line if line.endswith("\n") else line + "\n", [])
        pending = []
        entries.append(current)
    if pending:
        entries.append(Entry(None, pending))
    return entries


def _dedent(lines):
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    cut = min(indents) if indents else 0
    return [line[cut:] if line[:cut].strip() == "" else line.lstrip() for line in lines]


def _code_part(line):
    """``(code, comment)`` of a yaml line (a ``#`` after whitespace, outside quotes, starts a comment)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i], line[i:]
    return line, ""


def rewrite_refs(lines, names, prefix):
    """Rewrites ``<name...>`` references to ``names`` inside ``!ref``/``!copy`` values as ``<prefix[name]...>``.

    Example
    -------
    >>> rewrite_refs(["a: !ref <x> + <y>  # <x> in a comment\\n"], {"x"}, "bb")
    ['a: !ref <bb[x]> + <y>  # <x> in a comment\\n']
    """
    out = []
    for line in lines:
        code, comment = _code_part(line.rstrip("\n"))
        if "!ref" in code or "!copy" in code:
            code = _REF.sub(
                lambda m: f"<{prefix}[{m['name']}]{m['index']}>" if m["name"] in names else m.group(0), code
            )
        out.append(code + comment + ("\n" if line.endswith("\n") else ""))
    return out


def _refs(entries):
    found = set()
    for entry in entries:
        for line in [entry.head, *entry.body]:
            code, _ = _code_part(line)
            if "!ref" in code or "!copy" in code:
                found.update(m["name"] for m in _REF.finditer(code))
    return found


def _override(entry, override):
    """``entry`` with its value replaced by ``override``'s (a partial nested override is refused)."""
    if entry.body and not override.value.strip().startswith("!") and override.body:
        raise ExportError(f"override of the mapping `{entry.key}` with another mapping: write the whole value")
    return Entry(entry.key, entry.lead, f"{entry.key}:{override.value}\n", list(override.body))


def drop_entries(text, keys):
    """The text without the top-level entries ``keys`` (their leading comments go too, section headers stay)."""
    kept = []
    for entry in split_entries(text):
        if entry.key in keys:
            heading = [line for line in entry.lead if line.strip().startswith("# (written in")]
            if heading:  # the origin note of a block moves to the next entry
                kept.append(Entry(None, heading))
            continue
        kept.append(entry)
    merged = []
    for entry in kept:
        if merged and merged[-1].key is None:
            merged.append(Entry(entry.key, [*merged.pop().lead, *entry.lead], entry.head, entry.body))
        else:
            merged.append(entry)
    return "".join(e.text() for e in merged)


def variables_to_read(text):
    """Top-level keys of a yaml text that its script must read (upstream's rule, see modules.upstream.rules).

    Left out: keys the yaml refers to, ``!apply`` entries, pretrainers and
    SpeechBrain's run options.

    Example
    -------
    >>> variables_to_read("a: 1\\nb: !ref <a>\\nprecision: fp16\\n__x: !apply:f [1]\\n")
    ['b']
    """
    from speechbrain.utils.run_opts import RunOptions

    options = set(RunOptions().as_dict())
    referenced = set()
    for line in text.splitlines():
        code, _ = _code_part(line)
        if "!ref" in code or "!copy" in code:
            referenced.update(m["name"] for m in _REF.finditer(code))
    wanted = []
    for entry in split_entries(text):
        if entry.key is None:
            continue
        tag = _code_part(entry.value)[0].strip()
        if tag.startswith("!apply") or "parameter_transfer.Pretrainer" in tag:
            continue
        if entry.key not in referenced and entry.key not in options:
            wanted.append(entry.key)
    return wanted


def flatten_yaml(path, root_level=True, _stack=()):
    """The text of a yaml file with every ``!include`` written into it.

    Arguments
    ---------
    path : str or Path
    root_level : bool
        Whether ``path`` is the recipe file (only there is the :data:`LIFTED`
        block lifted).

    Returns
    -------
    text : str
    included : list of Path
        The files written into it.
    lifted : set of str
        Keys that came from the lifted block as they are (neither set at the
        recipe's top level nor overridden under the include).
    """
    path = Path(path).resolve()
    if path in _stack:
        raise ExportError(f"{path} includes itself")
    entries = split_entries(path.read_text(encoding="utf-8"))
    own_keys = {e.key for e in entries if e.key}
    out, included, lifted = [], [], set()
    for entry in entries:
        match = _INCLUDE.match(entry.value) if entry.key else None
        if not match:
            out.append(entry)
            continue
        target = (path.parent / match["path"]).resolve()
        text, sub_included, _ = flatten_yaml(target, root_level=False, _stack=(*_stack, path))
        included += [target, *sub_included]
        sub = split_entries(text)
        first = next((e for e in sub if e.key), None)
        if first is not None:  # the included file's notes on how to include it mean nothing here
            first.lead = _without_include_notes(first.lead)
        overrides = {o.key: o for o in split_entries("".join(_dedent(entry.body))) if o.key}
        sub_keys = {e.key for e in sub if e.key}
        unknown = sorted(set(overrides) - sub_keys)
        if unknown:
            raise ExportError(f"{path.name}: override of `{entry.key}` names {unknown}, which {target.name} lacks")
        origin = f"# (written in from {target.parent.name}/{target.name} by the export)\n"
        if root_level and entry.key == LIFTED:
            block = _lift(entry, sub, overrides, own_keys - {entry.key}, origin)
            lifted |= {e.key for e in block if e.key not in overrides}
            out.extend(block)
        else:
            out.append(_nest(entry, sub, overrides, sub_keys, origin))
    return "".join(e.text() for e in out), included, lifted


def _without_include_notes(lines):
    """Comment lines without the paragraphs that explain how to include the file, nor bare ``# ###`` rules.

    Example
    -------
    >>> _without_include_notes(["# A backbone.\\n", "# Included with\\n", "#   x: !include:f\\n", "\\n", "# Sizes.\\n"])
    ['# A backbone.\\n', '\\n', '# Sizes.\\n']
    """
    kept, skipping = [], False
    for line in lines:
        if not line.strip():
            skipping = False
        elif "includ" in line.lower():
            skipping = True
        if not skipping and not re.fullmatch(r"#\s*#+\s*", line.strip()):
            kept.append(line)
    return kept


def _lift(entry, sub, overrides, recipe_keys, origin):
    lifted = []
    referenced = _refs(sub)
    for item in sub:
        if item.key is None:
            continue
        if item.key in recipe_keys:
            override = overrides.get(item.key)
            same = override is not None and override.value.strip().split("#")[0].strip() == f"!ref <{item.key}>"
            if item.key in referenced and not same:
                raise ExportError(
                    f"`{item.key}` is set at the recipe's top level and inside the `{entry.key}` block, which refers "
                    f"to its own value: pass `{item.key}: !ref <{item.key}>` under `{entry.key}:`"
                )
            continue
        lifted.append(_override(item, overrides[item.key]) if item.key in overrides else item)
    if lifted:
        lead = [*entry.lead, origin]
        first = lifted[0]
        lifted[0] = Entry(first.key, [*lead, *[c for c in first.lead if c.strip()]], first.head, first.body)
    return lifted


def _nest(entry, sub, overrides, sub_keys, origin):
    body = []
    for item in sub:
        if item.key is None:
            continue
        nested = Entry(item.key, item.lead, rewrite_refs([item.head], sub_keys, entry.key)[0])
        nested.body = rewrite_refs(item.body, sub_keys, entry.key)
        if nested.key in overrides:
            nested = _override(nested, overrides[nested.key])
        lead = [line for line in nested.lead if line.strip()]
        body += ["    " + line if line.strip() else line for line in [*lead, nested.head, *nested.body]]
    _code, comment = _code_part(entry.value)
    head = f"{entry.key}:{'  ' + comment.strip() if comment.strip() else ''}\n"
    return Entry(entry.key, [*entry.lead, origin], head, body)


# ------------------------------------------------------------- validation
def _same(a, b, where, problems, seen=None):
    import functools

    import torch

    seen = seen if seen is not None else set()
    if id(a) in seen:
        return
    seen.add(id(a))
    name_a, name_b = type(a).__qualname__, type(b).__qualname__
    if name_a != name_b:
        problems.append(f"{where}: {name_a} != {name_b}")
    elif isinstance(a, dict):
        if set(a) != set(b):
            problems.append(f"{where}: keys {sorted(set(a) ^ set(b))} differ")
        for k in set(a) & set(b):
            _same(a[k], b[k], f"{where}[{k}]", problems, seen)
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            problems.append(f"{where}: lengths {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]", problems, seen)
    elif isinstance(a, torch.nn.Module):
        shapes_a = [(n, tuple(p.shape)) for n, p in a.named_parameters()]
        shapes_b = [(n, tuple(p.shape)) for n, p in b.named_parameters()]
        if shapes_a != shapes_b:
            problems.append(f"{where}: parameters differ")
    elif isinstance(a, functools.partial):
        if getattr(a.func, "__qualname__", a.func) != getattr(b.func, "__qualname__", b.func):
            problems.append(f"{where}: {a.func} != {b.func}")
        _same(list(a.args), list(b.args), f"{where}.args", problems, seen)
        _same(dict(a.keywords), dict(b.keywords), f"{where}.keywords", problems, seen)
    elif isinstance(a, (int, float, str, bool, type(None))):
        if a != b and not (isinstance(a, float) and a != a and b != b):
            problems.append(f"{where}: {a!r} != {b!r}")
    elif callable(a) and not hasattr(a, "__dict__"):
        if getattr(a, "__qualname__", None) != getattr(b, "__qualname__", None):
            problems.append(f"{where}: {a!r} != {b!r}")
    elif hasattr(a, "__dict__"):
        plain = (int, float, str, bool, type(None), list, tuple, dict)
        va = {k: v for k, v in vars(a).items() if isinstance(v, plain) and not k.startswith("_")}
        vb = {k: v for k, v in vars(b).items() if isinstance(v, plain) and not k.startswith("_")}
        _same(va, vb, where, problems, seen)


def check_equivalent(original, flat_text, overrides=None, dropped=()):
    """Loads a recipe yaml as our runner does and its flattened text; returns the differences.

    Arguments
    ---------
    original : str or Path
        The recipe yaml (with includes).
    flat_text : str
        :func:`flatten_yaml`'s text (tags still naming our packages).
    overrides : dict, optional
        Applied to both (``data_folder`` and ``output_folder`` are needed;
        nested overrides of an included block, e.g. small backbone sizes,
        apply to the nested block of the flattened text alike).

    dropped : collection of str
        Keys of the lifted block left out of the flattened text (unused).

    Returns
    -------
    list of str
        Empty when every top-level value (and every value of the lifted
        block) is the same: equal plain values, same classes, same parameter
        shapes.
    """
    import io

    from hyperpyyaml import load_hyperpyyaml

    from modules.recipe import lift_training_block

    with open(original, encoding="utf-8") as f:
        want = lift_training_block(load_hyperpyyaml(f, overrides or {}))
    got = load_hyperpyyaml(io.StringIO(flat_text), overrides or {})
    problems = []
    want_keys = set(want) - {LIFTED} - set(dropped)
    if want_keys != set(got):
        problems.append(f"top-level keys differ: {sorted(want_keys ^ set(got))}")
    for key in sorted(want_keys & set(got)):
        _same(want[key], got[key], key, problems)
    return problems
