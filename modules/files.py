"""Files written safely, shared by ``modules/`` and ``data_prep/``.

* :class:`PrepError`, the one exception type for bad input data (a one-line
  message); recipes turn it into ``error: ...`` and exit code 2;
* writers that go through a temporary file in the destination folder and
  ``os.replace``, so a file at its final name is always complete
  (:func:`atomic_path`, :func:`write_text_atomic`, :func:`write_csv_atomic`,
  :func:`write_wav_atomic`);
* :func:`lock_folder`: one writer per experiment folder.

``data_prep`` re-exports these names; ``modules`` never imports ``data_prep``.
"""

import contextlib
import csv
import fcntl
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "FolderInUse",
    "PrepError",
    "atomic_path",
    "lock_folder",
    "write_csv_atomic",
    "write_text_atomic",
    "write_wav_atomic",
]

logger = logging.getLogger(__name__)

#: Name of the lock file in an experiment folder.
LOCK_NAME = ".run.lock"
_held_locks = {}  # folder -> open file descriptor, kept for the life of the process


class PrepError(ValueError):
    """Bad input to a data preparation function (one-line message).

    Example
    -------
    >>> try:
    ...     raise PrepError("WHAM! folder not found: /x")
    ... except ValueError as err:
    ...     print(err)
    WHAM! folder not found: /x
    """


def _row_values(row, header):
    """Values of a row in header order (missing keys empty)."""
    return [row.get(col, "") for col in header]


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file beside ``path``, renamed onto ``path`` when the block succeeds.

    The temporary file is ``.<name>.<random>.tmp`` in the same folder (so the
    rename is atomic, and ``data_prep.common.remove_stale_temps`` recognises leftovers); on
    any exception it is removed and ``path`` is left as it was.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(path) as tmp:
    ...     _ = Path(tmp).write_text("done")
    >>> path.read_text(), [p.name for p in path.parent.iterdir()]
    ('done', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text):
    """Write a text file through a temporary file and ``os.replace``.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.json"
    >>> write_text_atomic(path, "{}\\n")
    >>> path.read_text()
    '{}\\n'
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_csv_atomic(path, header, rows):
    """Write a CSV through a temporary file and ``os.replace``.

    A crash midway leaves any previous file at ``path`` untouched and no
    partial file behind.

    Arguments
    ---------
    path : str or Path
        Destination.
    header : sequence of str
        Column names.
    rows : iterable of dict
        Rows, keyed by column name (missing keys are written empty).

    Returns
    -------
    int
        Number of rows written.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> write_csv_atomic(path, ["ID", "duration"], [{"ID": "a", "duration": 1.0}])
    1
    >>> print(path.read_text(), end="")
    ID,duration
    a,1.0
    """
    n_rows = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(_row_values(row, header))
            n_rows += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n_rows


def write_wav_atomic(path, data, sample_rate, subtype="PCM_16"):
    """Write a WAV file through a temporary file in the same folder and ``os.replace``.

    A file at ``path`` is therefore always complete: a crash leaves at most a
    temporary ``.<name>.<random>.tmp`` (``data_prep.common.remove_stale_temps``
    removes leftovers). Values are clipped to [-1, 1) before integer
    conversion.

    Arguments
    ---------
    path : str or Path
        Destination (``.wav``).
    data : numpy.ndarray
        Mono signal.
    sample_rate : int
        Sample rate (Hz).
    subtype : str
        libsndfile subtype, ``"PCM_16"`` by default.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "a.wav"
    >>> write_wav_atomic(path, np.full(160, 2.0), 16000)
    >>> info = sf.info(path)
    >>> info.frames, info.subtype, [p.name for p in path.parent.iterdir()]
    (160, 'PCM_16', ['a.wav'])
    """
    data = np.asarray(data, dtype=np.float64)
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0 - 1.0 / 32768)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, int(sample_rate), subtype=subtype, format="WAV")


class FolderInUse(RuntimeError):
    """Another live process writes to this experiment folder (one-line message)."""


def lock_folder(folder):
    """Takes the experiment folder's lock for the life of this process.

    The lock is an advisory ``flock`` on ``<folder>/.run.lock``, whose text
    names the holder (process id, host, start time, command). The kernel
    releases it when the holder exits or is killed, so the lock of a killed
    run is never stale: the next run takes it over (and says so). A second
    live run on the same folder fails at once, naming the first. Under
    ``torchrun`` only the main process takes it (the ranks of one run share
    the folder). ``flock`` on network file systems may be local to each host.

    Arguments
    ---------
    folder : str or Path

    Raises
    ------
    FolderInUse
        If a live process holds the lock.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock_folder(folder)
    >>> lock_folder(folder)  # the same process may ask again
    >>> open(os.path.join(folder, LOCK_NAME)).read().startswith(f"pid {os.getpid()}")
    True
    """
    folder = os.path.abspath(folder)
    if folder in _held_locks:
        return
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_fd(fd) or "another process"
        os.close(fd)
        raise FolderInUse(
            f"{folder} is in use by another run ({holder}): wait for it, stop it, or pick another --output_folder"
        ) from None
    previous = _read_fd(fd)
    if previous:
        logger.info("Taking over the lock of %s from a run that has ended (%s)", folder, previous)
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n".encode())
    _held_locks[folder] = fd


def _read_fd(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace").strip()
