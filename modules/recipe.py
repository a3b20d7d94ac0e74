"""What every recipe's ``train.py`` does, written once.

A recipe is ``run_recipe(BrainClass, __file__)``: parse the command line, load
the hyperparameters, prepare the data on the main process, build the datasets,
train, test and write the results. Command lines are SpeechBrain's, with two
additions:

* the hparams file is looked up in the current directory first and then in the
  recipe folder, so both ``python recipes/WHAM/baseline/train.py
  hparams/sepformer.yaml`` (from the repository root) and ``cd
  recipes/WHAM/baseline && python train.py hparams/sepformer.yaml`` work;
* ``--overrides_file=FILE`` (repeatable) applies a yaml file of overrides before
  the ``--key=value`` ones. ``hparams/tiny.yaml`` shrinks any recipe to a model
  and a run that fit a CPU in a few minutes.
"""

import logging
import os
import sys

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from speechbrain.utils.distributed import ddp_init_group, if_main_process, infer_device, run_on_main

from modules.data import build_datasets

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES_FLAG = "--overrides_file"


def find_file(path, search_dirs):
    """Returns ``path`` if it exists, else the first ``dir/path`` that exists.

    Arguments
    ---------
    path : str
        A file path, absolute or relative.
    search_dirs : sequence of str
        Folders to try, in order, when ``path`` is not found as given.

    Returns
    -------
    str

    Example
    -------
    >>> find_file("tiny.yaml", [os.path.join(REPO_ROOT, "hparams")]).endswith("hparams/tiny.yaml")
    True
    """
    if os.path.isfile(path):
        return path
    for folder in search_dirs:
        candidate = os.path.join(folder, path)
        if os.path.isfile(candidate):
            return candidate
    tried = ", ".join([path] + [os.path.join(d, path) for d in search_dirs])
    raise FileNotFoundError(f"File not found: {path} (tried {tried})")


def parse_arguments(argv, recipe_dir):
    """SpeechBrain's argument parsing plus ``--overrides_file`` and hparams lookup.

    Arguments
    ---------
    argv : list of str
        Command-line arguments (without the program name).
    recipe_dir : str
        Folder of the recipe's ``train.py``.

    Returns
    -------
    hparams_file : str
    run_opts : speechbrain RunOptions
    overrides : dict
        Overrides files merged in order, then the command-line overrides.

    Example
    -------
    >>> recipe = os.path.join(REPO_ROOT, "recipes", "WHAM", "baseline")
    >>> f, opts, over = parse_arguments(
    ...     ["hparams/convtasnet.yaml", "--overrides_file=hparams/tiny.yaml", "--N_epochs=3", "--device=cpu"], recipe)
    >>> f.endswith("recipes/WHAM/baseline/hparams/convtasnet.yaml"), over["N_epochs"], opts["device"]
    (True, 3, 'cpu')
    """
    files, rest = [], []
    args = iter(argv)
    for arg in args:
        if arg == OVERRIDES_FLAG:
            files.append(next(args, None))
            if files[-1] is None:
                raise SystemExit(f"error: {OVERRIDES_FLAG} needs a file")
        elif arg.startswith(OVERRIDES_FLAG + "="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    hparams_file, run_opts, cli_overrides = sb.parse_arguments(rest)
    hparams_file = find_file(hparams_file, [recipe_dir])
    yaml = ruamel.yaml.YAML()
    overrides = {}
    for path in files:
        with open(find_file(path, [recipe_dir, REPO_ROOT]), encoding="utf-8") as f:
            recursive_update(overrides, dict(yaml.load(f) or {}))
    if cli_overrides:
        recursive_update(overrides, dict(yaml.load(cli_overrides) or {}))
    return hparams_file, run_opts, overrides


def load_recipe(argv, recipe_file):
    """Parses arguments, initialises DDP, loads hparams, creates the output folder.

    Returns
    -------
    hparams : dict
    run_opts : speechbrain RunOptions
    """
    hparams_file, run_opts, overrides = parse_arguments(argv, os.path.dirname(os.path.abspath(recipe_file)))
    ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    _adapt_precision(hparams, run_opts)
    return hparams, run_opts


def _adapt_precision(hparams, run_opts):
    """fp16 (the papers' setting on GPU) is not available on CPU: use fp32 there."""
    device = run_opts["device"] or infer_device()
    if not str(device).startswith("cpu"):
        return
    if "precision" in run_opts.overridden_args:
        if run_opts["precision"] == "fp16":
            run_opts.precision = "fp32"
            logger.warning("fp16 is not supported on CPU: training in fp32")
    elif hparams.get("precision") == "fp16":
        hparams["precision"] = "fp32"
        logger.warning("fp16 is not supported on CPU: training in fp32")


def prepare_data(hparams):
    """Runs ``hparams["prepare_data"]`` on the main process; bad data exits cleanly."""
    from data_prep.common import PrepError

    try:
        run_on_main(hparams["prepare_data"])
    except PrepError as err:
        sys.exit(f"error: {err}")


def run_recipe(brain_class, recipe_file, argv=None):
    """Prepares data, trains, tests and writes the results of one recipe.

    Arguments
    ---------
    brain_class : type
        A ``SeparationBrain`` subclass.
    recipe_file : str
        The recipe's ``train.py`` (hparams are looked up beside it).
    argv : list of str, optional
        Defaults to ``sys.argv[1:]``.

    Returns
    -------
    Brain
        The trained brain (``brain.test_rows`` holds the per-item test metrics).
    """
    hparams, run_opts = load_recipe(sys.argv[1:] if argv is None else argv, recipe_file)
    prepare_data(hparams)
    train_data, valid_data, test_data = build_datasets(hparams)
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=hparams["dataloader_opts"],
        valid_loader_kwargs=hparams["test_dataloader_opts"],
    )
    brain.evaluate(test_data, max_key="si-snr", test_loader_kwargs=hparams["test_dataloader_opts"])
    if if_main_process():
        out = hparams["output_folder"]
        print(
            f"Test results: {os.path.join(out, 'test_results.csv')} (summary: {os.path.join(out, 'test_summary.md')})"
        )
    return brain
