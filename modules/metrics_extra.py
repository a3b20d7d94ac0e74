"""Perceptual metrics through well-kept packages: PESQ (``pesq``, ITU-T P.862) and STOI (``pystoi``).

Both run on the CPU in numpy, one item at a time (they are test-stage
metrics, never in a training loop). PESQ is defined at 8 kHz (narrow band)
and 16 kHz (wide band, P.862.2, what the DIP paper reports at 16 kHz); STOI
at any rate (``pystoi`` resamples to 10 kHz). The packages are imported when
first used, so the rest of the collection does not need them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["perceptual_scores", "pesq_score", "stoi_score"]


def _numpy(signal):
    return signal.detach().double().cpu().numpy() if torch.is_tensor(signal) else np.asarray(signal, dtype=float)


def pesq_score(estimate, reference, sample_rate):
    """PESQ (MOS-LQO) of one estimate against its reference; ``nan`` when PESQ finds no speech.

    Arguments
    ---------
    estimate, reference : array_like or torch.Tensor
        1-D signals of the same length.
    sample_rate : int
        8000 (narrow band) or 16000 (wide band).

    Returns
    -------
    float

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> speech = np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    >>> pesq_score(speech, speech, 16000) > 4.0
    True
    """
    from pesq import NoUtterancesError, pesq

    if sample_rate not in (8000, 16000):
        raise ValueError(f"PESQ is defined at 8 or 16 kHz, not {sample_rate} Hz")
    mode = "wb" if sample_rate == 16000 else "nb"
    try:
        return float(pesq(sample_rate, _numpy(reference), _numpy(estimate), mode))
    except NoUtterancesError:
        return math.nan


def stoi_score(estimate, reference, sample_rate, extended=False):
    """STOI (or extended STOI) of one estimate against its reference, in [0, 1].

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.standard_normal(16000) * np.repeat(rng.random(40) > 0.5, 400)
    >>> stoi_score(clean, clean, 16000) > 0.99
    True
    """
    from pystoi import stoi

    return float(stoi(_numpy(reference), _numpy(estimate), sample_rate, extended=extended))


def perceptual_scores(estimates, references, sample_rate):
    """Mean PESQ and STOI over the sources of one item.

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``[T, C]``, aligned (estimate ``j`` against reference ``j``).
    sample_rate : int

    Returns
    -------
    dict
        ``{"pesq": float, "stoi": float}``; ``pesq`` is left out when PESQ
        finds no speech in a reference (the test means then skip the item).
    """
    pesq_values, stoi_values = [], []
    for j in range(references.shape[-1]):
        pesq_values.append(pesq_score(estimates[:, j], references[:, j], sample_rate))
        stoi_values.append(stoi_score(estimates[:, j], references[:, j], sample_rate))
    scores = {"stoi": float(np.mean(stoi_values))}
    if not any(math.isnan(v) for v in pesq_values):
        scores["pesq"] = float(np.mean(pesq_values))
    return scores
