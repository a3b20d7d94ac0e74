"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 scores through the ``speechmos`` package (ONNX models inside it).

DNSMOS (Reddy et al., ICASSP 2021; the models of Microsoft's DNS Challenge)
takes 16 kHz audio in 9.01 s windows (shorter signals are repeated to fill
one, longer ones scored per 1 s hop and averaged, as ``speechmos`` and the
challenge's script do). What this module adds, and why:

* resampling to 16 kHz (:func:`modules.audio.resample`): REAL-M is 8 kHz, so
  its band stays 0-4 kHz and the scores are those of narrowband speech, lower
  than for wideband speech of the same quality; compare runs with one another,
  not with 16 kHz results;
* level: separated signals come out at an arbitrary scale (the SI-SNR loss
  ignores it), and DNSMOS depends on the level, so every signal, the mixture
  included, is scaled to -25 dBFS RMS (the DNS Challenge's normalisation level)
  and, where a peak would then exceed full scale, down to a peak of 0.99
  (``speechmos`` refuses samples outside [-1, 1]). ``normalise=False`` scores
  the signal as it is (a peak above 1 is still scaled down).
"""

from __future__ import annotations

import numpy as np

from modules.audio import resample

__all__ = ["DNSMOS_RATE", "TARGET_DBFS", "dnsmos", "level_normalise"]

DNSMOS_RATE = 16000
TARGET_DBFS = -25.0


def level_normalise(signal, target_dbfs=TARGET_DBFS, max_peak=0.99):
    """The signal scaled to ``target_dbfs`` RMS, then down to ``max_peak`` if it would clip.

    Example
    -------
    >>> x = level_normalise(np.sin(np.linspace(0, 100, 16000)))
    >>> round(float(20 * np.log10(np.sqrt(np.mean(x**2)))), 2)
    -25.0
    """
    signal = np.asarray(signal, dtype=np.float64)
    rms = np.sqrt(np.mean(signal**2)) if signal.size else 0.0
    if rms > 0:
        signal = signal * (10 ** (target_dbfs / 20) / rms)
    peak = np.abs(signal).max() if signal.size else 0.0
    return signal * (max_peak / peak) if peak > max_peak else signal


def dnsmos(signal, sample_rate, normalise=True):
    """DNSMOS scores of one mono signal: ``{"sig", "bak", "ovrl", "p808"}``.

    Arguments
    ---------
    signal : array_like
        ``[T]``.
    sample_rate : int
        Resampled to 16 kHz.
    normalise : bool
        Scale to -25 dBFS first (see the module docstring).

    Returns
    -------
    dict of str -> float
    """
    from speechmos import dnsmos as speechmos_dnsmos

    audio = resample(np.asarray(signal, dtype=np.float64), sample_rate, DNSMOS_RATE)
    if normalise:
        audio = level_normalise(audio)
    else:
        peak = np.abs(audio).max() if audio.size else 0.0
        if peak > 1:
            audio = audio * (0.99 / peak)
    if audio.size == 0 or not np.any(audio):
        raise ValueError("DNSMOS of an empty or silent signal")
    scores = speechmos_dnsmos.run(audio.astype(np.float32), DNSMOS_RATE)
    return {key: float(scores[f"{key}_mos"]) for key in ("sig", "bak", "ovrl", "p808")}
