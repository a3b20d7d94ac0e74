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
  and a run that fit a CPU in a few minutes;
* ``--separate FILE [FILE ...]`` does not train: it loads the best checkpoint of
  the run in ``output_folder`` and separates the given mixtures into
  ``<output_folder>/separated/`` (no references needed; ``--data_folder`` may be
  left out).
"""

import logging
import os
import sys

import ruamel.yaml
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from speechbrain.utils.distributed import ddp_barrier, ddp_init_group, if_main_process, infer_device, run_on_main

from modules.data import build_datasets

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES_FLAG = "--overrides_file"
SEPARATE_FLAG = "--separate"


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


def split_separate_arguments(argv):
    """Takes ``--separate FILE [FILE ...]`` (or ``--separate=FILE``) out of ``argv``.

    Returns
    -------
    files : list of str
        Empty when the flag is absent.
    rest : list of str

    Example
    -------
    >>> split_separate_arguments(["h.yaml", "--separate", "a.wav", "b.wav", "--device=cpu"])
    (['a.wav', 'b.wav'], ['h.yaml', '--device=cpu'])
    """
    files, rest, taking = [], [], False
    for arg in argv:
        if arg == SEPARATE_FLAG:
            taking = True
        elif arg.startswith(SEPARATE_FLAG + "="):
            files.append(arg.split("=", 1)[1])
        elif taking and not arg.startswith("--"):
            files.append(arg)
        else:
            taking = False
            rest.append(arg)
    if SEPARATE_FLAG in argv and not files:
        raise SystemExit(f"error: {SEPARATE_FLAG} needs at least one audio file")
    return files, rest


def load_recipe(argv, recipe_file, experiment_directory=True):
    """Parses arguments, initialises DDP, loads hparams, creates the output folder.

    Arguments
    ---------
    argv : list of str
    recipe_file : str
    experiment_directory : bool
        Whether to create the output folder and its logs (not when separating
        files with an already trained run).

    Returns
    -------
    hparams : dict
    run_opts : speechbrain RunOptions
    """
    hparams_file, run_opts, overrides = parse_arguments(argv, os.path.dirname(os.path.abspath(recipe_file)))
    ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    if experiment_directory:
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
    to_separate, argv = split_separate_arguments(sys.argv[1:] if argv is None else argv)
    if to_separate:
        return separate_files(brain_class, recipe_file, argv, to_separate)
    hparams, run_opts = load_recipe(argv, recipe_file)
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
    finish_distributed()
    return brain


def finish_distributed():
    """Waits for every process, then closes the process group (DDP runs only).

    Without it a rank that finishes first can exit while gloo's threads still
    run, and abort ("terminate called without an active exception").
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        ddp_barrier()
        torch.distributed.destroy_process_group()


def separate_files(brain_class, recipe_file, argv, paths):
    """Separates audio files with the best checkpoint of a trained run.

    Arguments
    ---------
    brain_class : type
        The recipe's brain (its ``separate_speakers`` decides, e.g., which
        output is the noise).
    recipe_file : str
    argv : list of str
        The recipe's arguments (hparams file, ``--output_folder`` of the trained run, ...).
    paths : list of str
        Mixtures to separate, at the recipe's sample rate.

    Returns
    -------
    Brain
    """
    if not any(a.startswith("--data_folder") for a in argv):
        argv = [*argv, "--data_folder=."]  # the data is not read when separating
    hparams, run_opts = load_recipe(argv, recipe_file, experiment_directory=False)
    checkpointer = hparams["checkpointer"]
    if checkpointer.find_checkpoint(max_key="si-snr") is None:
        sys.exit(f"error: no trained checkpoint in {checkpointer.checkpoints_dir}: train first, or pass the "
                 "--output_folder of a trained run")  # fmt: skip
    brain = brain_class(modules=hparams["modules"], hparams=hparams, run_opts=run_opts, checkpointer=checkpointer)
    brain.on_evaluate_start(max_key="si-snr")
    out = os.path.join(hparams["output_folder"], "separated")
    for path in paths:
        try:
            written = brain.separate_file(path, out)
        except (OSError, RuntimeError, ValueError) as err:
            sys.exit(f"error: {path}: {err}")
        print(f"{path} -> {', '.join(written)}")
    return brain
