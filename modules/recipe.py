"""What every recipe's ``train.py`` does, written once.

A recipe is ``run_recipe(BrainClass, __file__)``: parse the command line, load
the hyperparameters, prepare the data on the main process, build the datasets,
optionally initialise modules from an earlier run, train, test and write the
results. Command lines are SpeechBrain's, with these additions:

* the hparams file is looked up in the current directory first and then in the
  recipe folder, so both ``python recipes/WHAM/baseline/train.py
  hparams/sepformer.yaml`` (from the repository root) and ``cd
  recipes/WHAM/baseline && python train.py hparams/sepformer.yaml`` work;
* ``--overrides_file=FILE`` (repeatable) applies a yaml file of overrides before
  the ``--key=value`` ones. ``hparams/tiny.yaml`` shrinks any recipe to a model
  and a run that fit a CPU in seconds; its ``backbone_sizes`` section holds one
  entry per model file (``hparams/backbones/``, ``hparams/frontends/``) and the
  entry of each file the recipe includes is applied to the key that includes
  it (``backbone``, ``frontend``). A key of an overrides file that the recipe
  does not have is left out (such a file serves recipes of every kind); a
  ``--key=value`` override must name a key the recipe has;
* overrides of an included block (``--backbone="{H: 256}"``,
  ``--training="{lr_patience: 5}"``) must name keys of the included file: a
  misspelt key is an error, not a silently full-size model;
* ``--separate FILE [FILE ...]`` does not train: it loads the best checkpoint of
  the run in ``output_folder`` and separates the given mixtures into
  ``<output_folder>/separated/`` (no references needed; ``--data_folder`` may be
  left out).

A method with several stages (SADDEL's first step -> unrolled recursion, DIP's
pretraining -> separator, the context-aware group -> segregate) declares them once,
in its system yaml's ``stages`` list (:func:`declared_stages`), and the same
``run_recipe`` runs them in order (:func:`run_stages`): each stage is an ordinary
run in ``<output_folder>/<stage>``, with the command line's run options and the
overrides whose key its yaml has (but the keys its entry ``fixed``), started from
the previous stage's folder;
``--stages=a,b`` runs some; a finished stage is skipped when the command is run
again, a half-finished one resumes.

Hyperparameters the runner reads: ``prepare_data``; ``train_data``,
``valid_data``, ``test_data``, ``data_folder`` (through
:func:`modules.data.build_datasets`, or the builder the recipe's ``train.py``
passes, e.g. SADDEL's scenarios; a yaml may still name one as ``dataset_builder``);
``brain_class`` (the method's Brain, e.g. ``!name:modules.saddel.CascadeBrain``: a
yaml names it when one ``train.py`` runs several systems; it wins over the class the
``train.py`` passes);
``extra_test_sets`` (``{name: {manifest or manifests, data_folder[, prepare]}}``, each
tested after the main test set, results in ``test_results_<name>.csv``);
``modules``, ``optimizer``, ``checkpointer``, ``epoch_counter``,
``dataloader_opts``, ``test_dataloader_opts``; ``best_key`` and
``best_key_mode``; ``init_from``, ``init_modules``, ``init_key``,
``init_key_mode`` (stage hand-off, :func:`modules.training.initialise_from`).
The keys of the shared ``training`` block (``hparams/training.yaml``) are also
available at the top level; a key the recipe sets at its top level wins.
"""

import io
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import ruamel.yaml
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from hyperpyyaml.core import recursive_update
from speechbrain.utils.distributed import ddp_barrier, ddp_init_group, if_main_process, infer_device, run_on_main
from speechbrain.utils.run_opts import RunOptions

from modules.checkpoints import CheckpointSaveError
from modules.data import build_datasets, collate, load_manifest
from modules.files import FolderInUse, PrepError, lock_folder, write_text_atomic
from modules.training import initialise_from

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES_FLAG = "--overrides_file"
SEPARATE_FLAG = "--separate"
STAGES_FLAG = "--stages"
#: Written in a stage's folder when it has finished: a rerun of the system skips the stage.
STAGE_DONE = "stage_done.json"
#: Section of an overrides file keyed by backbone file name (``hparams/backbones/<name>.yaml``).
BACKBONE_SIZES = "backbone_sizes"


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


def included_files(hparams_file):
    """``{top-level key: included file}`` for the ``!include:`` nodes of a yaml.

    Example
    -------
    >>> f = os.path.join(REPO_ROOT, "recipes", "WHAM", "baseline", "hparams", "convtasnet.yaml")
    >>> sorted((k, os.path.basename(v)) for k, v in included_files(f).items())
    [('backbone', 'convtasnet.yaml'), ('training', 'training.yaml')]
    """
    with open(hparams_file, encoding="utf-8") as f:
        doc = ruamel.yaml.YAML().load(f) or {}
    folder = os.path.dirname(os.path.abspath(hparams_file))
    found = {}
    for key, node in doc.items():
        tag = getattr(getattr(node, "tag", None), "value", None) or ""
        if tag.startswith("!include:"):
            found[key] = os.path.normpath(os.path.join(folder, tag[len("!include:") :]))
    return found


def top_level_keys(path):
    """The top-level keys of a yaml file, in order (nothing instantiated)."""
    with open(path, encoding="utf-8") as f:
        return list(ruamel.yaml.YAML().load(f) or {})


def check_include_overrides(hparams_file, overrides):
    """Raises ``SystemExit`` for an override of an included block naming a key the included file lacks.

    hyperpyyaml passes such keys to the included file without complaint, so
    ``--backbone="{n_layer_intra: 1}"`` (for ``n_layers_intra``) would train
    the full-size model silently.
    """
    for key, path in included_files(hparams_file).items():
        value = overrides.get(key)
        if not isinstance(value, dict):
            continue
        known = top_level_keys(path)
        unknown = [k for k in value if k not in known]
        if unknown:
            rel = os.path.relpath(path, REPO_ROOT)
            raise SystemExit(
                f"error: override of `{key}` names key(s) {unknown} that {rel} does not have "
                f"(it has: {', '.join(known)})"
            )


#: Folders of the included model files that ``backbone_sizes`` must cover.
MODEL_FOLDERS = ("backbones", "frontends")


def _apply_model_sizes(sizes, hparams_file, overrides):
    """Merges the ``backbone_sizes`` entry of each included model file into the override of its key.

    An entry is keyed by the included file's name (``convtasnet`` for
    ``hparams/backbones/convtasnet.yaml``, ``dip_base`` for
    ``hparams/frontends/dip_base.yaml``) and applies to the top-level key that
    includes it (``backbone``, ``frontend``, ...).
    """
    for key, path in included_files(hparams_file).items():
        name = Path(path).stem
        if name in sizes:
            recursive_update(overrides.setdefault(key, {}), dict(sizes[name]))
        elif Path(path).parent.name in MODEL_FOLDERS:
            raise SystemExit(f"error: the overrides file has {BACKBONE_SIZES} for {sorted(sizes)} but not for {name}")


def parse_arguments(argv, recipe_dir):
    """SpeechBrain's argument parsing plus ``--overrides_file``, backbone sizes and hparams lookup.

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
    >>> over["backbone"]["H"]  # the tiny Conv-TasNet entry of backbone_sizes
    64
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
    recipe_keys = set(top_level_keys(hparams_file))
    for path in files:
        with open(find_file(path, [recipe_dir, REPO_ROOT]), encoding="utf-8") as f:
            data = dict(yaml.load(f) or {})
        sizes = data.pop(BACKBONE_SIZES, None)
        absent = [key for key in data if key not in recipe_keys]
        if absent:  # a shared overrides file serves recipes of every kind
            logger.info("%s: keys this recipe does not have, not applied: %s", path, absent)
        recursive_update(overrides, {k: v for k, v in data.items() if k in recipe_keys})
        if sizes:
            _apply_model_sizes(sizes, hparams_file, overrides)
    if cli_overrides:
        recursive_update(overrides, dict(yaml.load(cli_overrides) or {}))
    check_include_overrides(hparams_file, overrides)
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


#: Keys whose mappings from the recipe and from the ``training`` block are combined, not replaced.
MERGED_BLOCK_KEYS = ("extra_test_sets",)


def lift_training_block(hparams):
    """Makes the keys of the shared ``training`` block available at the top level (recipe keys win).

    The test sets of ``extra_test_sets`` are combined: a recipe's own (e.g. a cross-corpus set)
    first, then those given through ``--training="{extra_test_sets: {...}}"`` (a recipe set of
    the same name wins).

    Example
    -------
    >>> hp = {"lr": 1, "extra_test_sets": {"a": 1}, "training": {"lr": 2, "epochs": 3, "extra_test_sets": {"b": 2}}}
    >>> hp = lift_training_block(hp)
    >>> hp["lr"], hp["epochs"], hp["extra_test_sets"]
    (1, 3, {'a': 1, 'b': 2})
    """
    block = hparams.get("training")
    if isinstance(block, dict):
        for key, value in block.items():
            own = hparams.get(key)
            if key in MERGED_BLOCK_KEYS and isinstance(own, dict) and isinstance(value, dict):
                hparams[key] = {**own, **{k: v for k, v in value.items() if k not in own}}
            else:
                hparams.setdefault(key, value)
    return hparams


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
        hparams = lift_training_block(load_hyperpyyaml(fin, overrides))
    if experiment_directory:
        if if_main_process():  # one writer per experiment folder; a killed run's lock is released by the kernel
            try:
                lock_folder(hparams["output_folder"])
            except FolderInUse as err:
                sys.exit(f"error: {err}")
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
    """Runs ``hparams["prepare_data"]`` (and the extra test sets' ``prepare``) on the main process.

    Bad data exits with a one-line ``error: ...`` (exit code 2).
    """
    try:
        run_on_main(hparams["prepare_data"])
        for spec in (hparams.get("extra_test_sets") or {}).values():
            if spec.get("prepare") is not None:
                run_on_main(spec["prepare"])
    except PrepError as err:
        sys.exit(f"error: {err}")


def loader_options(options):
    """DataLoader options with the typed batch's ``collate_fn`` unless the yaml gives one."""
    return {"collate_fn": collate, **(options or {})}


def resolve_brain_class(hparams, default=None):
    """The yaml's ``brain_class`` if it names one, else ``default`` (the class the ``train.py`` passes).

    ``!name:`` gives the class itself or, with arguments, a ``functools.partial`` of it:
    a partial without arguments is unwrapped so that the run records the class. A
    plain name (what an upstream export writes, its Brains being in ``train.py``)
    is looked up in the module of ``default``.

    Example
    -------
    >>> from modules.brain import SeparationBrain
    >>> from modules.saddel import CascadeBrain
    >>> resolve_brain_class({"brain_class": CascadeBrain}, SeparationBrain).__name__
    'CascadeBrain'
    >>> resolve_brain_class({}, SeparationBrain).__name__
    'SeparationBrain'
    >>> resolve_brain_class({"brain_class": "A2PITBrain"}, CascadeBrain).__name__
    'A2PITBrain'
    """
    named = hparams.get("brain_class")
    if named is None or isinstance(named, str):
        if default is None:
            raise SystemExit("error: the yaml names no brain_class and the recipe passes none")
        if named is None:
            return default
        module = sys.modules[default.__module__]
        if not isinstance(getattr(module, named, None), type):
            raise SystemExit(f"error: brain_class {named!r} is not a class of {module.__name__}")
        return getattr(module, named)
    if getattr(named, "func", None) is not None and not named.args and not named.keywords:
        named = named.func
    return named


def valid_loader_options(hparams):
    """``valid_dataloader_opts`` if the yaml has it (DIP's pretraining: training-size batches), else the test ones."""
    return hparams.get("valid_dataloader_opts") or hparams["test_dataloader_opts"]


def make_brain(brain_class, hparams, run_opts, with_optimizer=True):
    """Instantiates the recipe's Brain from its hparams."""
    return brain_class(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"] if with_optimizer else None,
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )


def initialise_modules(brain, hparams):
    """Stage hand-off: ``init_from`` (a run folder, its ``save/`` or a checkpoint) initialises modules.

    ``init_modules`` maps this recipe's module names to the recoverable names
    in that checkpoint (default: every module found under the same name);
    ``init_key`` / ``init_key_mode`` rank that run's checkpoints (default: this
    recipe's best key). Runs before checkpoint recovery, so a resumed run keeps
    its own progress and a frozen module (not checkpointed) is loaded again.
    """
    source = hparams.get("init_from")
    if not source:
        return None
    key, mode = brain.best_key
    loaded = initialise_from(  # every rank loads; SpeechBrain's fetch links the files on the main process
        source,
        {name: brain.unwrapped(name) for name in brain.modules},
        mapping=hparams.get("init_modules") or None,
        key=hparams.get("init_key") or key,
        mode=hparams.get("init_key_mode") or mode,
        collect_in=os.path.join(hparams["output_folder"], "save", "init_from"),
    )
    if if_main_process():  # the run records where its initial weights came from
        with open(os.path.join(hparams["output_folder"], "init_from.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\t{path}\n" for name, path in loaded.items()))
    return loaded


def evaluation_sets(hparams, test_data):
    """``[(name or None, dataset)]``: the main test set, then ``extra_test_sets`` in yaml order.

    As for the main sets, a recipe with ``num_spks`` reads that many source columns.
    A set of several scenarios (SADDEL's test conditions) gives ``manifests:
    {scenario: path}`` instead of ``manifest``: its items carry their scenario.
    """
    sets = [(None, test_data)]
    max_sources = hparams.get("num_spks")
    for name, spec in (hparams.get("extra_test_sets") or {}).items():
        if spec.get("manifests"):
            parts = [load_manifest(path, spec["data_folder"], scenario=scenario, max_sources=max_sources)
                     for scenario, path in spec["manifests"].items()]  # fmt: skip
            sets.append((name, torch.utils.data.ConcatDataset(parts)))
        else:
            sets.append((name, load_manifest(spec["manifest"], spec["data_folder"], max_sources=max_sources)))
    return sets


def run_recipe(brain_class, recipe_file, argv=None, dataset_builder=None):
    """What every recipe's ``train.py`` does: one run, or the stages its yaml declares.

    The arguments are :func:`run_stage`'s (``argv`` defaults to ``sys.argv[1:]``).
    A yaml with a ``stages`` list is a system of several stages
    (:func:`declared_stages`): they run in order, each in
    ``<output_folder>/<stage>`` (:func:`run_stages`); ``--stages=a,b`` picks
    some. A yaml without one is one run (:func:`run_stage`).

    Returns
    -------
    Brain or None
        The brain of the last stage run (``brain.test_rows`` holds the per-item
        test metrics of the last test set; ``brain.stage_brains`` the brains of
        every stage run this time, by name); ``None`` when every stage was
        already finished.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, argv = take_flag(argv, STAGES_FLAG)
    hparams_file, _, overrides = parse_arguments(argv, os.path.dirname(os.path.abspath(recipe_file)))
    stages = declared_stages(hparams_file, overrides)
    if stages is None:
        if chosen is not None:
            raise SystemExit(f"error: {STAGES_FLAG}: {os.path.basename(hparams_file)} declares no stages")
        return run_stage(brain_class, recipe_file, argv, dataset_builder=dataset_builder)
    return run_stages(stages, brain_class, recipe_file, argv, chosen=chosen, dataset_builder=dataset_builder)


def run_stage(brain_class, recipe_file, argv=None, dataset_builder=None, test=True):
    """Prepares data, trains, tests and writes the results of one run (a recipe, or one stage of a system).

    Arguments
    ---------
    brain_class : type or None
        A ``SeparationBrain`` subclass (a yaml's ``brain_class`` wins; ``None``:
        the yaml must name one).
    recipe_file : str
        The recipe's ``train.py`` (hparams are looked up beside it).
    argv : list of str, optional
        Defaults to ``sys.argv[1:]``.
    dataset_builder : callable, optional
        ``hparams -> (train, valid, test)`` datasets, or ``(train, valid)`` for a
        run with no test stage (DIP's pretraining); default
        :func:`modules.data.build_datasets` (a yaml's ``dataset_builder`` wins, then
        the Brain class's ``dataset_builder``).
        A training set with ``set_epoch`` (one that draws anew each epoch) is
        given to the Brain as ``brain.train_set``.
    test : bool
        ``False``: prepare, initialise and train only (a stage whose model is
        the next stage's starting point).

    Returns
    -------
    Brain
        The trained brain (``brain.test_rows`` holds the per-item test metrics
        of the last test set).
    """
    to_separate, argv = split_separate_arguments(sys.argv[1:] if argv is None else argv)
    if to_separate:
        return separate_files(brain_class, recipe_file, argv, to_separate)
    hparams, run_opts = load_recipe(argv, recipe_file)
    prepare_data(hparams)
    brain_class = resolve_brain_class(hparams, brain_class)
    builder = hparams.get("dataset_builder") or brain_class.dataset_builder or dataset_builder or build_datasets
    train_data, valid_data, *rest = builder(hparams)
    test_data = rest[0] if rest else None
    brain = make_brain(brain_class, hparams, run_opts)
    brain.hparams_file = find_file(split_command_line(argv)[0], [os.path.dirname(os.path.abspath(recipe_file))])
    if hasattr(train_data, "set_epoch"):  # e.g. DIP's pairs of a synthetic and a real mixture, new each epoch
        brain.train_set = train_data
    write_run_info(brain, recipe_file, hparams)
    initialise_modules(brain, hparams)
    train_opts = loader_options(hparams["dataloader_opts"])
    if getattr(train_data, "sampler", None) is not None:  # on-the-fly mixing brings its own sampler
        train_opts.pop("shuffle", None)
        train_opts["sampler"] = brain.train_sampler = train_data.sampler  # Brain calls its set_epoch
    try:
        brain.fit(
            hparams["epoch_counter"],
            train_data,
            valid_data,
            train_loader_kwargs=train_opts,
            valid_loader_kwargs=loader_options(valid_loader_options(hparams)),
        )
    except CheckpointSaveError as err:  # e.g. a full disk: the last good checkpoint is kept
        sys.exit(f"error: {err}")
    if not test or test_data is None:
        if if_main_process() and test_data is None:
            out = hparams["output_folder"]
            print(f"Trained: {hparams['save_folder']} (a next stage starts from it with --init_from={out})")
        finish_distributed()  # a next stage initialises the process group again
        return brain
    key, mode = brain.best_key
    written = []
    for name, dataset in evaluation_sets(hparams, test_data):
        brain.test_set_name = name
        brain.evaluate(
            dataset, **{f"{mode}_key": key}, test_loader_kwargs=loader_options(hparams["test_dataloader_opts"])
        )
        written.append(f"test_results{'_' + name if name else ''}.csv")
    if if_main_process():
        out = hparams["output_folder"]
        print(
            f"Test results: {', '.join(os.path.join(out, w) for w in written)} "
            f"(summary: {os.path.join(out, 'test_summary.md')})"
        )
    brain.on_tested(written)
    finish_distributed()
    return brain


def write_run_info(brain, recipe_file, hparams):
    """``<output_folder>/run_info.json``: the run's Brain class and recipe (what ``separate`` and ``export`` load)."""
    if not if_main_process():
        return
    info = {
        "brain_class": f"{type(brain).__module__}.{type(brain).__qualname__}",
        "recipe": os.path.relpath(os.path.abspath(recipe_file), REPO_ROOT),
    }
    write_text_atomic(os.path.join(hparams["output_folder"], "run_info.json"), json.dumps(info, indent=2) + "\n")


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
        The recipe's brain (its ``split_outputs`` decides, e.g., which
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
    brain = make_brain(resolve_brain_class(hparams, brain_class), hparams, run_opts, with_optimizer=False)
    key, mode = brain.best_key
    if checkpointer.find_checkpoint(**{f"{mode}_key": key}) is None:
        sys.exit(f"error: no trained checkpoint in {checkpointer.checkpoints_dir}: train first, or pass the "
                 "--output_folder of a trained run")  # fmt: skip
    initialise_modules_for_inference(brain, hparams)
    brain.on_evaluate_start(**{f"{mode}_key": key})
    from modules.inference import BrainModel
    from modules.inference import separate_files as separate_inputs

    out = os.path.join(hparams["output_folder"], "separated")
    results = separate_inputs(BrainModel(brain), paths, out, progress=not run_opts["noprogressbar"])
    failed = False
    for path, result in results.items():
        if isinstance(result, str):
            print(f"error: {path}: {result}", file=sys.stderr)
            failed = True
        else:
            print(f"{path} -> {', '.join(result.files)}")
    if failed:
        sys.exit(1)
    return brain


def initialise_modules_for_inference(brain, hparams):
    """Frozen modules are not in the run's checkpoints: load them from ``init_from`` again."""
    if brain.frozen and hparams.get("init_from"):
        initialise_from(
            hparams["init_from"],
            {name: brain.unwrapped(name) for name in brain.frozen},
            mapping={k: v for k, v in (hparams.get("init_modules") or {}).items() if k in brain.frozen} or None,
            key=hparams.get("init_key") or brain.best_key[0],
            mode=hparams.get("init_key_mode") or brain.best_key[1],
            collect_in=os.path.join(hparams["output_folder"], "save", "init_from"),
        )


# ----------------------------------------------------------------------------- stages
def split_command_line(argv):
    """``(hparams file or None, run-option tokens)`` of a command line.

    Run options (SpeechBrain's ``RunOptions``: ``--device``, ``--precision``,
    ``--noprogressbar``, ...) are kept with their values; yaml overrides and
    ``--overrides_file`` are left out (:func:`parse_arguments`
    reads them). The hparams file is the first token that is neither an option
    nor an option's value.
    """
    fields = RunOptions.__dataclass_fields__
    hparams_file, kept, i = None, [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            if hparams_file is None:
                hparams_file = token
            i += 1
            continue
        name = token[2:].split("=", 1)[0]
        takes_value = "=" not in token and not (name in fields and fields[name].type in (bool, "bool"))
        group = argv[i : i + 2] if takes_value and i + 1 < len(argv) and not argv[i + 1].startswith("--") else [token]
        if name in fields:
            kept.extend(group)
        i += len(group)
    return hparams_file, kept


def _plain(value):
    """ruamel containers -> plain Python (for dumping)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dump_yaml(mapping):
    """A mapping of plain values as yaml text (a stage's overrides file)."""
    stream = io.StringIO()
    ruamel.yaml.YAML().dump(mapping, stream)
    return stream.getvalue()


def resolved_yaml(path, overrides):
    """A yaml's values with ``!ref`` resolved and its own keys of ``overrides`` applied; nothing instantiated.

    Example
    -------
    >>> path = os.path.join(REPO_ROOT, "recipes/LibriMix/saddel/hparams/saddel.yaml")
    >>> resolved_yaml(path, {"seed": 7, "not_a_key": 1})["output_folder"]
    'results/LibriMix/saddel/saddel/7'
    """
    keys = set(top_level_keys(path))
    with open(path, encoding="utf-8") as f:
        source = f.read()
    placeholders = re.findall(r"^(\w+):\s*!PLACEHOLDER", source, flags=re.M)
    given = {**dict.fromkeys(placeholders, "."), **overrides}  # stand-ins: not needed to read the other keys
    stream = io.StringIO(source)
    stream.name = path  # !include paths are relative to the yaml
    text = resolve_references(stream, {k: v for k, v in given.items() if k in keys}).getvalue()
    return ruamel.yaml.YAML().load(text)


def declared_stages(hparams_file, overrides):
    """The stages a system's yaml declares, or ``None`` for a yaml without ``stages`` (one run).

    A yaml's ``stages`` is a list, in order, of entries with ``name`` and, optionally:
    ``hparams`` (the stage's yaml, beside this one; default this yaml),
    ``overrides`` (values the stage sets, e.g. ``{train_steps: oracle}``; the command
    line's win), ``fixed`` (values the stage sets that the command line's do not
    replace, e.g. DIP's ``{train_set: !ref <pretrain_train_set>}``: the pretraining
    corpus is set through the system yaml's own key, while ``--train_set`` stays the
    separator's), ``handover`` (the key given the previous stage's folder; default
    ``init_from``), ``test`` (whether the stage is tested; default: the last stage
    only) and ``skip_if`` (``{key: value}`` of this yaml: the stage is not part of the
    system when every key has that value, e.g. a group stage with ``target: none``).

    Arguments
    ---------
    hparams_file : str
        The system's yaml (what the command line names).
    overrides : dict
        The command line's overrides (they decide ``output_folder`` and ``skip_if``).

    Returns
    -------
    list of dict or None
        Per stage: ``name``, ``hparams`` (path), ``overrides`` (with ``fixed``'s),
        ``fixed`` (its keys), ``handover``, ``test``, ``output_folder``
        (``<the system's output_folder>/<name>``).

    Example
    -------
    >>> path = os.path.join(REPO_ROOT, "recipes/LibriMix/saddel/hparams/saddel.yaml")
    >>> [(s["name"], s["overrides"]["train_steps"], s["test"]) for s in declared_stages(path, {})]
    [('step1', 'first', True), ('unrolled', 'oracle', True)]
    >>> declared_stages(path, {"seed": 7})[1]["output_folder"]
    'results/LibriMix/saddel/saddel/7/unrolled'
    """
    hparams = resolved_yaml(hparams_file, overrides)
    entries = hparams.get("stages")
    if not entries:
        return None
    here = os.path.dirname(os.path.abspath(hparams_file))
    root = str(overrides.get("output_folder") or hparams["output_folder"])
    names = [str(e.get("name", "")) for e in entries]
    if not all(names) or len(set(names)) != len(names):
        raise SystemExit(f"error: {hparams_file}: every entry of 'stages' needs its own name, got {names}")
    stages = []
    for entry in entries:
        skip = dict(entry.get("skip_if") or {})
        if skip and all(str(overrides.get(k, hparams.get(k))) == str(v) for k, v in skip.items()):
            continue
        fixed = _plain(dict(entry.get("fixed") or {}))
        stages.append({
            "name": str(entry["name"]),
            "hparams": find_file(str(entry["hparams"]), [here]) if entry.get("hparams") else hparams_file,
            "overrides": {**_plain(dict(entry.get("overrides") or {})), **fixed},
            "fixed": sorted(fixed),
            "handover": str(entry.get("handover", "init_from")),
            "test": entry.get("test"),
            "output_folder": os.path.join(root, str(entry["name"])),
        })  # fmt: skip
    for i, stage in enumerate(stages):
        if stage["test"] is None:
            stage["test"] = i == len(stages) - 1
    return stages


def stage_overrides(stages, recipe_file, argv):
    """Each stage's overrides from the command line: those whose key its yaml has, but its ``fixed`` keys.

    Arguments
    ---------
    stages : list of dict
        With ``hparams`` (the stage's yaml).
    recipe_file : str
    argv : list of str
        The command line (hparams file, run options, overrides, ``--overrides_file``).

    Returns
    -------
    list of dict
        One dict of overrides per stage. An override that no stage's yaml has is an error.

    Example
    -------
    >>> path = os.path.join(REPO_ROOT, "recipes/LibriMix/dip/hparams/convtasnet_dip.yaml")
    >>> argv = [path, "--train_set=train-360", "--pretrain_train_set=train-100"]
    >>> stages = declared_stages(path, {"train_set": "train-360", "pretrain_train_set": "train-100"})
    >>> pretrain, separate = stage_overrides(stages, path, argv)
    >>> "train_set" in pretrain, stages[0]["overrides"]["train_set"], separate["train_set"]
    (False, 'train-100', 'train-360')
    """
    recipe_dir = os.path.dirname(os.path.abspath(recipe_file))
    hparams_file, _ = split_command_line(argv)
    rest = [a for a in argv if a != hparams_file]
    per_stage, known, given = [], set(), set()
    for stage in stages:
        _, _, overrides = parse_arguments([stage["hparams"], *rest], recipe_dir)
        keys = set(top_level_keys(stage["hparams"]))
        mine = keys - set(stage.get("fixed", ()))  # a fixed key is the stage entry's, set through the system yaml
        per_stage.append({k: _plain(v) for k, v in overrides.items() if k in mine})
        known |= keys
        given |= set(overrides)
    unknown = sorted(given - known)
    if unknown:
        files = sorted({os.path.basename(s["hparams"]) for s in stages})
        raise SystemExit(f"error: override(s) {unknown} match no key of {files}")
    return per_stage


def _chosen_stages(stages, chosen, cli_overrides):
    """The stages to run: those ``--stages`` names, else from the last one whose hand-over the command line sets."""
    names = [s["name"] for s in stages]
    if chosen is not None:
        wanted = [n.strip() for n in chosen.split(",") if n.strip()]
        if not wanted or any(n not in names for n in wanted):
            raise SystemExit(f"error: {STAGES_FLAG} takes a comma-separated subset of {names}, got {chosen!r}")
        return [s for s in stages if s["name"] in wanted], set(wanted)
    start = 0
    for i, stage in enumerate(stages[1:], start=1):
        if stage["handover"] in cli_overrides:  # the command line gives its start: the stages before it are not run
            start = i
    return stages[start:], set()


def run_stages(stages, brain_class, recipe_file, argv, chosen=None, dataset_builder=None):
    """Runs a system's stages in order, each an ordinary run (:func:`run_stage`) in its own folder.

    Arguments
    ---------
    stages : list of dict
        From :func:`declared_stages`.
    brain_class : type or None
        The ``train.py``'s Brain (a stage's yaml may name its own, ``brain_class``).
    recipe_file : str
        The recipe's ``train.py``.
    argv : list of str
        The command line: the system's yaml, run options (given to every stage),
        ``--key=value`` overrides and ``--overrides_file`` (each key goes to the
        stages whose yaml has it, :func:`stage_overrides`), ``--separate``.
    chosen : str, optional
        ``--stages``' value: the comma-separated stages to run (each runs even if finished).
    dataset_builder : callable, optional
        The ``train.py``'s builder (a stage's yaml may name its own).

    A stage starts from the previous one: its ``handover`` key (``init_from``)
    is set to the previous stage's folder unless the command line sets it (then
    the stages before it are not run). A finished stage writes
    ``<its folder>/stage_done.json`` and is skipped when the command is run
    again (a half-finished one resumes from its checkpoints), unless
    ``--stages`` names it (a ``--debug`` run finishes no stage, and keeps its
    checkpoints for the next stage: ``--debug_persistently``). Each stage's overrides are written to
    ``<its folder>/stage_overrides.yaml``; the stage runs as ``train.py <its
    yaml> <run options> --overrides_file=<that file>``. ``--separate FILE ...``
    separates with the last stage's model.

    Returns
    -------
    Brain or None
        See :func:`run_recipe`.
    """
    to_separate, argv = split_separate_arguments(argv)
    _, run_options = split_command_line(argv)
    _, _, cli_overrides = parse_arguments(argv, os.path.dirname(os.path.abspath(recipe_file)))
    per_stage = stage_overrides(stages, recipe_file, argv)
    plans = []
    for i, (stage, overrides) in enumerate(zip(stages, per_stage)):
        mine = {**stage["overrides"], **overrides, "output_folder": stage["output_folder"]}
        if i > 0 and stage["handover"] not in overrides:
            mine[stage["handover"]] = stages[i - 1]["output_folder"]
        plans.append((stage, mine))
    if to_separate:
        stage, mine = plans[-1]
        path = _write_stage_overrides(stage, mine)
        return run_stage(brain_class, recipe_file, [stage["hparams"], *run_options, f"{OVERRIDES_FLAG}={path}",
                                                   SEPARATE_FLAG, *to_separate])  # fmt: skip
    to_run, named = _chosen_stages(stages, chosen, cli_overrides)
    debug = "--debug" in run_options
    if debug and "--debug_persistently" not in run_options:  # the next stage starts from this one's checkpoints
        run_options = [*run_options, "--debug_persistently"]
    brain, brains = None, {}
    for stage, mine in plans:
        if stage not in to_run:
            continue
        done = os.path.join(stage["output_folder"], STAGE_DONE)
        if os.path.exists(done) and stage["name"] not in named:
            logger.info("Stage %s: finished (%s); skipped (%s=%s runs it again)", stage["name"], done, STAGES_FLAG,
                        stage["name"])  # fmt: skip
            if if_main_process():
                print(f"Stage {stage['name']}: finished earlier ({done}), skipped")
            continue
        path = _write_stage_overrides(stage, mine)
        stage_argv = [stage["hparams"], *run_options, f"{OVERRIDES_FLAG}={path}"]
        logger.info("Stage %s: %s", stage["name"], " ".join(stage_argv))
        brain = run_stage(brain_class, recipe_file, stage_argv, dataset_builder=dataset_builder, test=stage["test"])
        brains[stage["name"]] = brain
        if if_main_process() and not debug:  # a --debug run (a few batches) does not finish a stage
            record = {"stage": stage["name"], "hparams": os.path.relpath(stage["hparams"], REPO_ROOT),
                      "overrides": mine, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
            write_text_atomic(done, json.dumps(record, indent=2, default=str) + "\n")
    if brain is not None:
        brain.stage_brains = brains
    return brain


def _write_stage_overrides(stage, overrides):
    """``<stage folder>/stage_overrides.yaml`` (every DDP rank writes the same file atomically: no wait needed)."""
    path = os.path.join(stage["output_folder"], "stage_overrides.yaml")
    write_text_atomic(path, dump_yaml(overrides))
    return path


def take_flag(argv, flag):
    """``(value or None, argv without --flag=value / --flag value)``."""
    value, rest, i = None, [], 0
    while i < len(argv):
        token = argv[i]
        if token == flag and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
            continue
        if token.startswith(flag + "="):
            value = token.split("=", 1)[1]
        else:
            rest.append(token)
        i += 1
    return value, rest
