"""A SpeechBrain checkpointer that survives being killed at any instruction.

SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` writes a
checkpoint's ``CKPT.yaml`` *before* the parameter files and marks a folder as a
checkpoint by that file alone; it deletes old checkpoints with ``rmtree``. A
``SIGKILL`` during either leaves a folder that looks complete but holds a
truncated or missing ``.ckpt`` file, and the next run's ``recover_if_possible``
crashes on it. This subclass

* writes the meta file under a temporary name, adds the list of parameter files
  it covers, and renames it into place (atomically) only after every
  recoverable has been saved and flushed to disk, and
* lists a checkpoint only when every file its meta names is present, so a
  checkpoint whose deletion was interrupted is never loaded;
* when a save fails (``OSError``: no space left on the device, a quota, an
  I/O error), removes the partial folder at once and raises
  :class:`CheckpointSaveError` with a one-line message saying how much space
  to free; the previous complete checkpoint is untouched (old checkpoints are
  only deleted after a successful save), so the same command resumes from it.

Leftovers of interrupted saves and deletions are removed on the next recovery.
"""

import logging
import os
import pathlib
import shutil

import yaml
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)

PENDING_SUFFIX = ".pending"
FILES_KEY = "paramfiles"


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the previous one is intact (one-line message)."""


class CrashSafeCheckpointer(Checkpointer):
    """Checkpointer whose saves and deletions are atomic with respect to crashes.

    Drop-in replacement for ``speechbrain.utils.checkpoints.Checkpointer``
    (same constructor and methods).

    Example
    -------
    >>> import tempfile, torch
    >>> tmp = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpt = CrashSafeCheckpointer(tmp, recoverables={"model": model})
    >>> _ = ckpt.save_checkpoint(meta={"loss": 1.0})
    >>> len(ckpt.list_checkpoints())
    1
    >>> ckpt.recover_if_possible().meta["loss"]
    1.0
    """

    def _save_checkpoint_metafile(self, fpath, meta_to_include=None, end_of_epoch=True):
        # Written under a temporary name; published by save_checkpoint at the end.
        self._saving = pathlib.Path(fpath).parent
        pending = str(fpath) + PENDING_SUFFIX
        return super()._save_checkpoint_metafile(pending, meta_to_include or {}, end_of_epoch)

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Saves a checkpoint; it becomes visible only once complete.

        Same arguments and return value as
        ``speechbrain.utils.checkpoints.Checkpointer.save_checkpoint``.
        """
        self._saving = None
        try:
            ckpt = super().save_checkpoint(meta=meta or {}, end_of_epoch=end_of_epoch, name=name, verbosity=verbosity)
        except OSError as err:
            raise self._failed_save(err) from err
        # Every process has finished writing its files before the checkpoint is published.
        ddp_barrier()
        if if_main_process() and ckpt is not None:
            for fname in os.listdir(ckpt.path):
                if fname.endswith(".ckpt"):
                    _fsync_file(os.path.join(ckpt.path, fname))
            pending = os.path.join(ckpt.path, METAFNAME + PENDING_SUFFIX)
            meta = _read_meta(pending)
            meta[FILES_KEY] = sorted(p.name for p in map(pathlib.Path, ckpt.paramfiles.values()))
            with open(pending, "w", encoding="utf-8") as fo:
                fo.write("# yamllint disable\n")
                fo.write(yaml.dump(meta))
            _fsync_file(pending)
            os.replace(pending, os.path.join(ckpt.path, METAFNAME))
            _fsync_dir(ckpt.path)
        ddp_barrier()
        return ckpt

    def _failed_save(self, err):
        """Removes the partial checkpoint and explains what to free."""
        partial = self._saving
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        previous = self.list_checkpoints()
        last = max(previous, key=lambda c: c.meta.get("unixtime", 0)) if previous else None
        needed = _folder_size(last.path) if last is not None else 0
        free = shutil.disk_usage(self.checkpoints_dir).free if self.checkpoints_dir.exists() else 0
        keep = f"the previous checkpoint {last.path} is intact" if last else "no earlier checkpoint exists"
        return CheckpointSaveError(
            f"could not write a checkpoint in {self.checkpoints_dir} ({err.strerror or err}); {keep}. Free at least "
            f"{needed / 2**20:.0f} MB there ({free / 2**20:.0f} MB free now) and run the same command again to resume"
        )

    def list_checkpoints(self):
        """Lists the complete checkpoints (all files named in their meta exist)."""
        return [c for c in super().list_checkpoints() if _is_complete(c)]

    def remove_incomplete(self):
        """Deletes leftovers of interrupted saves and deletions.

        Returns
        -------
        list of str
            The folders that were removed.
        """
        removed = []
        if not if_main_process() or not self.checkpoints_dir.exists():
            return removed
        for entry in self.checkpoints_dir.iterdir():
            if not entry.is_dir():
                continue
            if not entry.name.startswith(CKPT_PREFIX):
                continue
            meta_file = entry / METAFNAME
            if not meta_file.exists() or not _is_complete(Checkpoint(entry, _read_meta(meta_file), {})):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
        if removed:
            logger.warning("Removed %d incomplete checkpoint folder(s): %s", len(removed), removed)
        return removed

    def recover_if_possible(self, *args, **kwargs):
        """Cleans up interrupted saves, then recovers as SpeechBrain does."""
        self.remove_incomplete()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)


def _folder_size(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).iterdir() if f.is_file())


def _fsync_file(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_meta(path):
    with open(path, encoding="utf-8") as fi:
        return yaml.load(fi, Loader=yaml.SafeLoader) or {}


def _is_complete(ckpt):
    files = ckpt.meta.get(FILES_KEY)
    if files is None:  # written by plain SpeechBrain: trust it as SpeechBrain does
        return True
    return all((pathlib.Path(ckpt.path) / f).exists() for f in files)
