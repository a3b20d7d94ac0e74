"""Contributing upstream: our recipes as SpeechBrain recipe folders, checked by SpeechBrain's rules.

* :func:`export_recipe` (:mod:`modules.upstream.exporter`): one recipe folder
  (all its yamls) -> ``recipes/<UpstreamDataset>/separation/<method>/`` with a
  self-contained ``train.py``, local modules, resolved yamls, README,
  ``extra_requirements.txt`` and the ``tests/recipes/<UpstreamDataset>.csv`` rows;
* :func:`check_tree` (:mod:`modules.upstream.rules`): our checks of upstream's
  documented recipe rules on an export, including a ``--debug`` run with only the
  recipe folder on ``PYTHONPATH`` on ``tests/samples``-style data
  (:mod:`modules.upstream.samples`);
* :func:`recipe_readme` (:mod:`modules.upstream.readme`): the README of one of
  our recipe folders;
* :mod:`modules.upstream.patches`: the core improvements (vectorised PIT loss,
  batched SDR, crash-safe checkpointer) as patches against SpeechBrain 1.1.2.

Command line: ``python -m modules.upstream {export,check,readme,samples,patches} ...``
(``python -m modules.upstream --help``).
"""

from modules.upstream.exporter import ExportResult, export_recipe
from modules.upstream.readme import recipe_readme
from modules.upstream.rules import Finding, check_tree, report

__all__ = ["ExportResult", "Finding", "check_tree", "export_recipe", "recipe_readme", "report"]
