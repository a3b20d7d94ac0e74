"""Files written safely, shared by ``modules/`` and ``data_prep/``.

* :class:`PrepError`, the one exception type for bad input data (a one-line
  message); recipes turn it into ``error: ...`` and exit code 2;
* writers that go through a temporary file in the destination folder and
  ``os.replace``, so a file at its final name is always complete
  (:func:`atomic_path`, :func:`write_text_atomic`, :func:`write_csv_atomic`,
  :func:`write_wav_atomic`).

``data_prep`` re-exports these names; ``modules`` never imports ``data_prep``.
"""

import contextlib
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["PrepError", "atomic_path", "write_csv_atomic", "write_text_atomic", "write_wav_atomic"]


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
