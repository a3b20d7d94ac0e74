"""Command line of :mod:`modules.upstream`.

::

    python -m modules.upstream export <recipe folder | yaml ...> --out DIR [--no-validate]
    python -m modules.upstream check DIR [--no-run] [--small] [--lenient-samples] [--keep-outputs D]
    python -m modules.upstream readme <recipe folder> [--write]
    python -m modules.upstream samples DIR [--lenient]
    python -m modules.upstream patches --sdist speechbrain-1.1.2.tar.gz --out DIR
    python -m modules.upstream rules

``export`` writes the upstream-shaped folder of a recipe (every yaml of the
folder, or the yamls given); ``check`` runs our checks of SpeechBrain's recipe
rules on an export root and exits 1 when one fails (rules that cannot be met
yet are listed as ``UNMET`` with their reason and do not fail it); ``rules``
lists the rules and the upstream files they come from.
"""

import argparse
import sys
from pathlib import Path

from modules.upstream.graph import ExportError


def _export(args):
    from modules.upstream.exporter import export_recipe

    target = args.target[0] if len(args.target) == 1 else args.target
    result = export_recipe(target, args.out, validate=not args.no_validate)
    print(f"wrote {result.folder} ({len(result.files)} files) and {len(result.rows)} row(s) of {result.registry}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _check(args):
    from modules.upstream.rules import check_tree, report

    findings = check_tree(
        args.root,
        run=not args.no_run,
        strict_samples=not args.lenient_samples,
        small=args.small,
        keep_outputs=args.keep_outputs,
    )
    print(report(findings))
    return 1 if any(f.status == "fail" for f in findings) else 0


def _readme(args):
    from modules.upstream.readme import recipe_readme

    text = recipe_readme(args.recipe)
    if args.write:
        path = Path(args.recipe) / "README.md"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    else:
        print(text)
    return 0


def _samples(args):
    from modules.upstream.samples import make_samples

    paths = make_samples(args.root, strict=not args.lenient)
    print(f"wrote {Path(args.root) / 'tests' / 'samples'}: {paths}")
    return 0


def _patches(args):
    from modules.upstream.patches import build_patches

    for path in build_patches(args.sdist, args.out):
        print(path)
    return 0


def _rules(_args):
    from modules.upstream.rules import RULES

    for name, (what, source) in RULES.items():
        print(f"{name}\n    {what}\n    from: {source}")
    return 0


def build_parser():
    """The argument parser of ``python -m modules.upstream``."""
    parser = argparse.ArgumentParser(prog="python -m modules.upstream", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the upstream-shaped folder of a recipe")
    p.add_argument("target", nargs="+", help="a recipe folder (recipes/<DATASET>/<method>) or yamls of one recipe")
    p.add_argument("--out", required=True, help="export root (laid out as SpeechBrain's repository)")
    p.add_argument("--no-validate", action="store_true", help="skip loading and comparing the resolved yamls")
    p.set_defaults(func=_export)
    p = sub.add_parser("check", help="run our checks of SpeechBrain's recipe rules on an export root")
    p.add_argument("root")
    p.add_argument("--no-run", action="store_true", help="skip the --debug runs")
    p.add_argument("--small", action="store_true", help="small backbone sizes in the debug runs (CPU)")
    p.add_argument(
        "--lenient-samples",
        action="store_true",
        help="samples as our manifests are (s1, s2, noise inside the mixture) instead of upstream's",
    )
    p.add_argument("--keep-outputs", help="keep the debug runs' output folders under this folder")
    p.set_defaults(func=_check)
    p = sub.add_parser("readme", help="the README of one of our recipe folders")
    p.add_argument("recipe")
    p.add_argument("--write", action="store_true", help="write <recipe>/README.md instead of printing it")
    p.set_defaults(func=_readme)
    p = sub.add_parser("samples", help="write tests/samples-style data under a folder")
    p.add_argument("root")
    p.add_argument("--lenient", action="store_true")
    p.set_defaults(func=_samples)
    p = sub.add_parser("patches", help="write the core improvements as patches against SpeechBrain 1.1.2")
    p.add_argument("--sdist", required=True, help="speechbrain-1.1.2.tar.gz (pip download speechbrain==1.1.2 "
                   "--no-deps --no-binary :all:) or its unpacked folder")  # fmt: skip
    p.add_argument("--out", required=True)
    p.set_defaults(func=_patches)
    p = sub.add_parser("rules", help="list the rules and the upstream files they come from")
    p.set_defaults(func=_rules)
    return parser


def main(argv=None):
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
