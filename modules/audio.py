"""Audio helpers shared by ``modules/`` and ``data_prep/``."""

from math import gcd

import numpy as np
from scipy.signal import resample_poly

__all__ = ["resample"]


def resample(x, orig_sr, target_sr):
    """Polyphase resampling (``scipy.signal.resample_poly``) of a 1-D signal, as float64.

    Arguments
    ---------
    x : array_like
        Signal (last axis is time).
    orig_sr, target_sr : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray
        ``ceil(len(x) * target_sr / orig_sr)`` samples (a copy when the rates agree).

    Example
    -------
    >>> resample(np.ones(1600), 16000, 8000).shape
    (800,)
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return np.asarray(x, dtype=float).copy()
    g = gcd(orig_sr, target_sr)
    return resample_poly(np.asarray(x, dtype=float), target_sr // g, orig_sr // g, axis=-1)
