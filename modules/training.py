"""Training-loop pieces every recipe shares: early stopping, LR schedules, stage hand-off.

* :class:`EpochCounter`: SpeechBrain's epoch counter with early stopping on the
  best-checkpoint key (patience in epochs, as the DIP and context-aware papers
  train), or none.
* :func:`scheduler_interval`: whether an LR scheduler acts once per epoch on the
  validation loss (``ReduceLROnPlateau``, ``NewBobScheduler``) or after every
  optimiser step (warmup + decay schedules such as ``LinearWarmupScheduler``,
  which is wav2vec2's linear warmup then linear decay).
* :func:`initialise_from`: stage hand-off. Loads chosen modules from an
  earlier run's best checkpoint (pretrain -> fine-tune, group -> segregate)
  through SpeechBrain's ``Pretrainer``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from speechbrain.nnet.schedulers import NewBobScheduler, ReduceLROnPlateau
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.epoch_loop import EpochCounterWithStopper
from speechbrain.utils.parameter_transfer import Pretrainer

from modules.checkpoints import CrashSafeCheckpointer as Checkpointer

__all__ = ["EpochCounter", "find_best_checkpoint", "initialise_from", "scheduler_interval"]

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class EpochCounter(EpochCounterWithStopper):
    """Recoverable epoch counter that can stop early.

    SpeechBrain 1.1.2's ``EpochCounterWithStopper`` is not registered for
    checkpointing itself, so a checkpoint keeps only its parent's epoch number
    and a resumed run forgets the best score and the epochs without
    improvement; this class registers the stopper's own save and load.

    Arguments
    ---------
    limit : int
        Maximum number of epochs.
    patience : int or None
        Stop after this many consecutive epochs without improvement of the
        tracked metric (``None`` or 0: never stop early).
    direction : str
        ``"max"`` or ``"min"``: which way the tracked metric improves.
    warmup : int
        Epochs before early stopping starts watching.

    Example
    -------
    >>> counter = EpochCounter(limit=10, patience=2, direction="max")
    >>> seen = []
    >>> for epoch in counter:
    ...     seen.append(epoch)
    ...     counter.update_metric(5.0 if epoch == 1 else 4.0)
    >>> seen
    [1, 2, 3]
    """

    def __init__(self, limit, patience=None, direction="max", warmup=0):
        self.early_stopping = bool(patience)
        super().__init__(limit, limit_to_stop=patience or 0, limit_warmup=warmup, direction=direction)

    def update_metric(self, current_metric):
        """Records the epoch's metric; decides whether to stop (when early stopping is on)."""
        if self.early_stopping:
            super().update_metric(current_metric)

    @mark_as_saver
    def _save_state(self, path):
        EpochCounterWithStopper._save(self, path)

    @mark_as_loader
    def _load_state(self, path, end_of_epoch=True):
        EpochCounterWithStopper._recover(self, path, end_of_epoch)


def scheduler_interval(scheduler):
    """``"epoch"`` for schedulers driven by the validation loss, ``"step"`` for the others, ``None`` without one.

    Example
    -------
    >>> from speechbrain.nnet.schedulers import LinearWarmupScheduler
    >>> scheduler_interval(ReduceLROnPlateau()), scheduler_interval(LinearWarmupScheduler(1e-3, 10, 100))
    ('epoch', 'step')
    """
    if scheduler is None:
        return None
    if isinstance(scheduler, (ReduceLROnPlateau, NewBobScheduler)):
        return "epoch"
    if callable(scheduler):
        return "step"
    raise TypeError(f"lr_scheduler must be a SpeechBrain scheduler, got {type(scheduler).__name__}")


def find_best_checkpoint(source, key="si-snr", mode="max"):
    """The checkpoint of an earlier run to initialise from.

    Arguments
    ---------
    source : str or Path
        A run's output folder (holding ``save/``), its ``save/`` folder, or
        one ``CKPT+...`` folder.
    key : str
        Meta key that ranks the run's checkpoints (its best-checkpoint key).
    mode : str
        ``"max"`` or ``"min"``.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
    """
    source = Path(source)
    if (source / "CKPT.yaml").is_file():
        checkpointer = Checkpointer(source.parent)
        found = [c for c in checkpointer.list_checkpoints() if Path(c.path).resolve() == source.resolve()]
    else:
        save = source / "save" if (source / "save").is_dir() else source
        if not save.is_dir():
            raise FileNotFoundError(f"init_from: no such run, save folder or checkpoint: {source}")
        checkpointer = Checkpointer(save)
        ranked = {"max_key": key} if mode == "max" else {"min_key": key}
        with_key = [c for c in checkpointer.list_checkpoints() if key in c.meta]
        found = [checkpointer.find_checkpoint(**ranked)] if with_key else []
        if not found:  # a run without the key (e.g. pretraining): its newest checkpoint
            found = [checkpointer.find_checkpoint()] if checkpointer.list_checkpoints() else []
    if not found or found[0] is None:
        raise FileNotFoundError(f"init_from: no checkpoint found in {source}")
    return found[0]


def initialise_from(source, modules, mapping=None, key="si-snr", mode="max", collect_in=None):
    """Loads chosen modules from an earlier run's best checkpoint (stage hand-off).

    Arguments
    ---------
    source : str or Path
        See :func:`find_best_checkpoint`.
    modules : dict of str -> torch.nn.Module
        This run's modules that may be initialised.
    mapping : dict of str -> str, optional
        ``{module of this run: recoverable name in the checkpoint}``; by
        default every module of ``modules`` whose name the checkpoint holds.
    key, mode : str
        How the source run's checkpoints are ranked.
    collect_in : str, optional
        Where SpeechBrain's ``Pretrainer`` links the files (default: beside the
        checkpoint, in a temporary folder of the caller's choosing).

    Returns
    -------
    dict
        ``{module: path of the file loaded}``.

    Example
    -------
    >>> import tempfile, torch
    >>> tmp = tempfile.mkdtemp()
    >>> old = torch.nn.Linear(2, 2)
    >>> _ = Checkpointer(os.path.join(tmp, "save"), {"separator": old}).save_checkpoint(meta={"si-snr": 3.0})
    >>> new = torch.nn.Linear(2, 2)
    >>> loaded = initialise_from(tmp, {"separator": new}, collect_in=os.path.join(tmp, "init"))
    >>> sorted(loaded), torch.equal(new.weight, old.weight)
    (['separator'], True)
    """
    ckpt = find_best_checkpoint(source, key=key, mode=mode)
    files = {name: Path(path) for name, path in ckpt.paramfiles.items()}
    if mapping:
        missing = sorted(src for src in mapping.values() if src not in files)
        unknown = sorted(dst for dst in mapping if dst not in modules)
        if unknown:
            raise KeyError(f"init_modules names modules this recipe does not have: {unknown} (has {sorted(modules)})")
        if missing:
            raise KeyError(f"{ckpt.path} has no {missing} (it holds {sorted(files)})")
        pairs = dict(mapping)
    else:
        pairs = {name: name for name in modules if name in files}
        if not pairs:
            raise KeyError(
                f"{ckpt.path} holds none of this recipe's modules {sorted(modules)} (it holds {sorted(files)})"
            )
    collect_in = collect_in or os.path.join(ckpt.path, "..", ".init_links")
    os.makedirs(collect_in, exist_ok=True)
    pretrainer = Pretrainer(
        collect_in=collect_in,
        loadables={dst: modules[dst] for dst in pairs},
        paths={dst: str(files[src].resolve()) for dst, src in pairs.items()},
    )
    pretrainer.collect_files()
    pretrainer.load_collected()
    loaded = {dst: str(files[src]) for dst, src in pairs.items()}
    logger.info("Initialised %s from %s", ", ".join(f"{d} <- {s}" for d, s in pairs.items()), ckpt.path)
    return loaded
