"""Procedural speech-like signals and noises for miniature corpora.

Nothing here is recorded speech: utterances come from a small source-filter
synthesiser and are meant to be *learnable* stand-ins for the real corpora, so
that data preparation and recipes can be run end to end without any dataset.

* :func:`sample_speaker` draws a :class:`Speaker` (pitch range, vocal-tract
  length, speaking rate, voice quality), male-like (f0 90-150 Hz) or
  female-like (f0 170-260 Hz).
* :func:`synth_utterance` renders an utterance: syllables (3-6 per second)
  with vowel-like formant trajectories (4 formants plus a fixed fifth),
  fricative-like noise bursts, pauses, declining and accented intonation,
  jitter and breathiness. The glottal source is a Rosenberg pulse train; the
  vocal tract is a cascade of resonators applied frame by frame in the STFT
  domain (vectorised NumPy, a few milliseconds per utterance).
* :func:`coloured_noise` and :func:`ambient_noise` make stationary coloured
  noise and WHAM!-like ambient noise (far babble, brown-ish bed, slow level
  modulation, clatter).
* :func:`active_level` and :func:`rms` are small helpers (resampling is
  :func:`modules.audio.resample`).

All functions take a :class:`numpy.random.Generator`, so a seed fixes every
sample.
"""

from dataclasses import dataclass

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

#: Formant frequencies (F1-F4, Hz) of ten vowels of an adult male voice
#: (approximate textbook values for American English monophthongs).
VOWEL_FORMANTS = np.array(
    [
        [270, 2290, 3010, 3500],  # i
        [390, 1990, 2550, 3600],  # I
        [530, 1840, 2480, 3500],  # E
        [660, 1720, 2410, 3500],  # ae
        [730, 1090, 2440, 3400],  # a
        [570, 840, 2410, 3300],  # O
        [440, 1020, 2240, 3300],  # U
        [300, 870, 2240, 3300],  # u
        [640, 1190, 2390, 3400],  # V
        [490, 1350, 1690, 3300],  # 3r
    ],
    dtype=float,
)
#: Base formant bandwidths (Hz) of F1-F5.
FORMANT_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 170.0, 250.0])
#: Fifth formant (Hz, before vocal-tract scaling), fixed.
F5 = 4500.0


@dataclass(frozen=True)
class Speaker:
    """Parameters of one procedural speaker.

    Attributes
    ----------
    name : str
        Identifier used by the corpus writer.
    gender : str
        ``"m"`` (f0 90-150 Hz) or ``"f"`` (f0 170-260 Hz).
    f0 : float
        Median fundamental frequency (Hz).
    f0_range : float
        Intonation range in semitones.
    formant_scale : float
        Vocal-tract scaling of all formants (about 1 male, 1.17 female).
    formant_offsets : tuple of float
        Per-formant multipliers (F1-F5), the speaker's "accent".
    bandwidth_scale : float
        Multiplier of the formant bandwidths.
    rate : float
        Syllables per second (3-6).
    jitter : float
        Relative random perturbation of f0.
    breathiness : float
        Level of aspiration noise relative to the voiced part (linear).
    tilt : float
        Extra spectral slope of the voice (dB per octave).
    open_quotient : float
        Open fraction of the glottal cycle.
    tonal : bool
        Lexical tones (Mandarin-like): each syllable carries one of five pitch
        contours instead of phrase accents (see :func:`sample_tonal_speaker`).
    """

    name: str
    gender: str
    f0: float
    f0_range: float
    formant_scale: float
    formant_offsets: tuple
    bandwidth_scale: float
    rate: float
    jitter: float
    breathiness: float
    tilt: float
    open_quotient: float
    tonal: bool = False


def sample_speaker(rng, name="spk", gender=None):
    """Draw a random speaker.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    name : str
        Identifier stored in the speaker.
    gender : str, optional
        ``"m"`` or ``"f"``; random (equal odds) when omitted.

    Returns
    -------
    Speaker

    Example
    -------
    >>> spk = sample_speaker(np.random.default_rng(0), "011", gender="f")
    >>> spk.name, spk.gender, 170 <= spk.f0 <= 260, 3 <= spk.rate <= 6
    ('011', 'f', True, True)
    """
    return _draw_speaker(rng, name, gender, NON_TONAL)


def sample_tonal_speaker(rng, name="spk", gender=None):
    """Draw a speaker of a tonal language (a Mandarin-like stand-in).

    Compared with :func:`sample_speaker`: lexical tones on every syllable
    (``tonal=True``), higher and wider pitch (male f0 110-170 Hz, female
    200-300 Hz, 6-10 semitone range), a faster syllable rate (4.5-7 per
    second), brighter voices and a different spread of formant "accents".
    Used by the mini Aishell2Mix so that it differs in domain from the mini
    LibriMix.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    name : str
        Identifier stored in the speaker.
    gender : str, optional
        ``"m"`` or ``"f"``; random (equal odds) when omitted.

    Returns
    -------
    Speaker

    Example
    -------
    >>> spk = sample_tonal_speaker(np.random.default_rng(0), "S0002", gender="m")
    >>> spk.tonal, 110 <= spk.f0 <= 170, 4.5 <= spk.rate <= 7
    (True, True, True)
    """
    return _draw_speaker(rng, name, gender, TONAL, tonal=True)


# Ranges of the speaker parameters: (low, high) of a uniform draw.
NON_TONAL = {
    "f0": {"m": (90.0, 150.0), "f": (170.0, 260.0)},
    "formant_scale": {"m": (0.94, 1.05), "f": (1.12, 1.24)},
    "f0_range": (2.0, 6.0),
    "formant_offsets": (0.94, 1.06),
    "bandwidth_scale": (0.8, 1.3),
    "rate": (3.0, 6.0),
    "jitter": (0.004, 0.02),
    "breathiness": (0.02, 0.12),
    "tilt": (-3.0, 1.0),
    "open_quotient": (0.5, 0.75),
}
TONAL = {
    "f0": {"m": (110.0, 170.0), "f": (200.0, 300.0)},
    "formant_scale": {"m": (0.97, 1.08), "f": (1.15, 1.28)},
    "f0_range": (6.0, 10.0),
    "formant_offsets": (0.9, 1.1),
    "bandwidth_scale": (0.7, 1.1),
    "rate": (4.5, 7.0),
    "jitter": (0.003, 0.012),
    "breathiness": (0.01, 0.06),
    "tilt": (-1.0, 2.0),
    "open_quotient": (0.45, 0.65),
}


def _draw_speaker(rng, name, gender, ranges, tonal=False):
    """A :class:`Speaker` with every parameter drawn uniformly from ``ranges``."""
    if gender is None:
        gender = "m" if rng.random() < 0.5 else "f"
    if gender not in ("m", "f"):
        raise ValueError(f"gender must be 'm' or 'f', got {gender!r}")
    f0 = rng.uniform(*ranges["f0"][gender])
    scale = rng.uniform(*ranges["formant_scale"][gender])
    draw = {k: float(rng.uniform(*ranges[k])) for k in ("f0_range",)}
    offsets = tuple(float(v) for v in rng.uniform(*ranges["formant_offsets"], 5))
    for key in ("bandwidth_scale", "rate", "jitter", "breathiness", "tilt", "open_quotient"):
        draw[key] = float(rng.uniform(*ranges[key]))
    return Speaker(
        name=name, gender=gender, f0=float(f0), formant_scale=float(scale), formant_offsets=offsets, tonal=tonal, **draw
    )


def rms(x):
    """Root mean square of a signal.

    Example
    -------
    >>> float(rms(np.array([3.0, -3.0])))
    3.0
    """
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def active_level(x, sample_rate, threshold_db=-35.0, frame_s=0.02):
    """RMS over the active frames of a signal (a simple speech level meter).

    Frames whose power is within ``threshold_db`` of the loudest frame count
    as active, so that pauses and zero padding do not lower the level (in the
    spirit of ITU-T P.56 / ``activlev``, as used by wsj0-2mix).

    Arguments
    ---------
    x : array_like
        Signal.
    sample_rate : int
        Sample rate (Hz).
    threshold_db : float
        Activity threshold relative to the loudest frame.
    frame_s : float
        Frame length in seconds.

    Returns
    -------
    float

    Example
    -------
    >>> t = np.arange(8000) / 8000
    >>> tone = np.concatenate([np.sin(2 * np.pi * 200 * t), np.zeros(8000)])
    >>> round(active_level(tone, 8000), 3), round(rms(tone), 3)
    (0.707, 0.5)
    """
    x = np.asarray(x, dtype=float)
    hop = max(1, round(frame_s * sample_rate))
    n_frames = len(x) // hop
    if n_frames == 0:
        return rms(x)
    power = np.mean(x[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1)
    peak = power.max()
    if peak <= 0:
        return 0.0
    active = power[power >= peak * 10 ** (threshold_db / 10)]
    return float(np.sqrt(active.mean()))


# --------------------------------------------------------------------------
# STFT helpers (Hann window, 75 % overlap; exact overlap-add inversion)


def _stft_params(sample_rate):
    nperseg = int(2 ** round(np.log2(0.032 * sample_rate)))
    return nperseg, nperseg // 4


def _stft(x, nperseg, hop):
    """Frames (centred every ``hop`` samples, first centre at sample 0)."""
    pad = nperseg // 2
    n_frames = int(np.ceil(len(x) / hop)) + 1
    total = (n_frames - 1) * hop + nperseg
    xp = np.zeros(total)
    xp[pad : pad + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(xp, nperseg)[::hop][:n_frames]
    window = np.hanning(nperseg + 1)[:-1]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec, n, nperseg, hop):
    """Weighted overlap-add inverse of :func:`_stft` (length ``n``)."""
    window = np.hanning(nperseg + 1)[:-1]
    frames = np.fft.irfft(spec, n=nperseg, axis=1) * window
    n_frames = frames.shape[0]
    ratio = nperseg // hop
    chunks = frames.reshape(n_frames, ratio, hop)
    out = np.zeros((n_frames + ratio - 1, hop))
    wsum = np.zeros((n_frames + ratio - 1, hop))
    w2 = (window**2).reshape(ratio, hop)
    for k in range(ratio):
        out[k : k + n_frames] += chunks[:, k, :]
        wsum[k : k + n_frames] += w2[k]
    out, wsum = out.reshape(-1), wsum.reshape(-1)
    pad = nperseg // 2
    return out[pad : pad + n] / np.maximum(wsum[pad : pad + n], 1e-8)


# --------------------------------------------------------------------------
# Utterance synthesis


def _plan_syllables(speaker, duration, rng):
    """Syllable list: (start, vowel onset, end, vowel index, accent, fricative)."""
    t = rng.uniform(0.05, 0.2)
    stop = duration - rng.uniform(0.05, 0.15)
    plan = []
    while t < stop - 0.1:
        for _ in range(int(rng.integers(1, 5))):
            length = min(rng.uniform(0.7, 1.3) / speaker.rate, stop - t)
            if length < 0.1:
                break
            cons = rng.uniform(0.03, 0.09) if rng.random() < 0.5 else 0.0
            cons = min(cons, 0.4 * length)
            # fricative centre frequency: sh-like, s-like or f/h-like
            kind = rng.integers(3)
            fc = (
                rng.uniform(2500, 3500),
                rng.uniform(4500, 6500),
                rng.uniform(1500, 4000),
            )[kind]
            bw = (0.5, 0.4, 1.2)[kind]
            plan.append(
                (
                    t,
                    t + cons,
                    t + length,
                    int(rng.integers(len(VOWEL_FORMANTS))),
                    float(rng.normal()),
                    fc,
                    bw,
                )
            )
            t += length
        if rng.random() < 0.55:
            t += rng.uniform(0.08, 0.35)
    if not plan:  # very short utterance: one syllable
        plan.append((0.02, 0.02, max(duration - 0.02, 0.03), 0, 0.0, 3000.0, 1.0))
    return plan


def _controls(speaker, plan, times, duration, rng):
    """Frame-rate controls: voiced gain, fricative gain/centre/width, formants, f0."""
    n = len(times)
    voiced = np.zeros(n)
    fric = np.zeros(n)
    fc = np.full(n, 4000.0)
    bw = np.ones(n)
    centres, vowels, accents = [], [], []
    for start, onset, end, vowel, accent, f_c, f_bw in plan:
        i0, i1, i2 = np.searchsorted(times, (start, onset, end))
        if i2 > i1:
            u = (times[i1:i2] - onset) / max(end - onset, 1e-3)
            voiced[i1:i2] = np.sin(np.pi * np.clip(u, 0, 1)) ** 0.6
        if i1 > i0:
            u = (times[i0:i1] - start) / max(onset - start, 1e-3)
            fric[i0:i1] = np.sin(np.pi * np.clip(u, 0, 1))
            fc[i0:i1] = f_c
            bw[i0:i1] = f_bw
        centres.append(0.5 * (onset + end))
        vowels.append(vowel)
        accents.append(accent)
    centres = np.array(centres)
    targets = VOWEL_FORMANTS[vowels]  # (n_syl, 4)
    formants = np.stack([np.interp(times, centres, targets[:, i]) for i in range(4)], axis=1)
    formants = np.concatenate([formants, np.full((n, 1), F5)], axis=1)
    formants = formants * speaker.formant_scale * np.array(speaker.formant_offsets)
    # intonation: declination + per-syllable accents + slow drift (semitones)
    decl = speaker.f0_range * 0.4 * (0.5 - times / max(duration, 1e-3))
    if speaker.tonal:
        decl = 0.3 * decl
        acc = _tone_contours(speaker, plan, times, rng)
    else:
        acc = np.interp(times, centres, 0.35 * speaker.f0_range * np.array(accents))
    drift = np.cumsum(rng.normal(0.0, 1.0, n))
    drift = 0.3 * (drift - drift.mean()) / (np.std(drift) + 1e-9)
    f0 = speaker.f0 * 2.0 ** ((decl + acc + drift) / 12.0)
    return voiced, fric, fc, bw, formants, f0


#: Pitch contours (semitones, in units of the speaker's range, over the
#: voiced part u in [0, 1] of a syllable) of the four Mandarin tones and the
#: neutral tone: high level, rising, dipping, falling, neutral.
TONES = (
    lambda u: 0.5 + 0.0 * u,
    lambda u: -0.2 + 0.7 * u,
    lambda u: -0.3 - 0.45 * np.sin(np.pi * np.minimum(u / 0.7, 1.0)) + 0.35 * np.maximum(u - 0.7, 0.0) / 0.3,
    lambda u: 0.6 - 1.1 * u,
    lambda u: -0.1 - 0.1 * u,
)
#: Relative frequency of the tones (the neutral tone is rarer).
TONE_WEIGHTS = np.array([0.22, 0.24, 0.18, 0.3, 0.06])


def _tone_contours(speaker, plan, times, rng):
    """Per-frame pitch offsets (semitones) from one lexical tone per syllable."""
    offset = np.full(len(times), np.nan)
    tones = rng.choice(len(TONES), size=len(plan), p=TONE_WEIGHTS)
    for (start, onset, end, *_), tone in zip(plan, tones):
        i0, i2 = np.searchsorted(times, (start, end))
        if i2 <= i0:
            continue
        u = np.clip((times[i0:i2] - onset) / max(end - onset, 1e-3), 0.0, 1.0)
        offset[i0:i2] = speaker.f0_range * TONES[tone](u)
    known = np.flatnonzero(~np.isnan(offset))
    if known.size == 0:
        return np.zeros(len(times))
    return np.interp(np.arange(len(times)), known, offset[known])


def _tract_power(freqs, formants, bandwidths):
    """Power response of a cascade of 2nd-order resonators (DC gain 1).

    ``formants`` is (frames, n_formants); returns (frames, bins).
    """
    f2 = (freqs**2)[None, :]
    out = np.ones((formants.shape[0], len(freqs)))
    for i, bw in enumerate(bandwidths):
        fm2 = (formants[:, i] ** 2)[:, None]
        out *= fm2**2 / ((fm2 - f2) ** 2 + (bw**2) * f2)
    return out


def synth_utterance(speaker, duration, sample_rate, rng, floor_db=-60.0):
    """Render a speech-like utterance of a speaker.

    Arguments
    ---------
    speaker : Speaker
        Voice parameters (see :func:`sample_speaker`).
    duration : float
        Length in seconds.
    sample_rate : int
        Sample rate (Hz); 16 kHz is what the corpora generate, lower rates are
        obtained with :func:`modules.audio.resample` for content consistent across rates.
    rng : numpy.random.Generator
        Random source (syllables, intonation, noise excitation).
    floor_db : float
        Level of a white background floor relative to the speech (dB), so that
        no sample is exactly zero.

    Returns
    -------
    numpy.ndarray
        float64 signal of ``round(duration * sample_rate)`` samples, scaled to
        an :func:`active_level` of 1.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> spk = sample_speaker(rng, "a")
    >>> x = synth_utterance(spk, 1.5, 16000, rng)
    >>> x.shape, round(active_level(x, 16000), 3)
    ((24000,), 1.0)
    """
    n = max(round(duration * sample_rate), 1)
    nperseg, hop = _stft_params(sample_rate)
    n_frames = int(np.ceil(n / hop)) + 1
    times = np.arange(n_frames) * hop / sample_rate
    plan = _plan_syllables(speaker, n / sample_rate, rng)
    voiced, fric, fc, fbw, formants, f0_frames = _controls(speaker, plan, times, n / sample_rate, rng)

    # Glottal source: Rosenberg pulses with jittered f0, differentiated (lip radiation).
    t = np.arange(n) / sample_rate
    f0 = np.interp(t, times, f0_frames)
    k = max(1, sample_rate // 400)
    jit = np.convolve(rng.standard_normal(n), np.ones(k) / np.sqrt(k), mode="same")
    f0 = f0 * (1.0 + speaker.jitter * jit)
    phase = (np.cumsum(f0) / sample_rate + rng.random()) % 1.0
    tp, tn = 0.6 * speaker.open_quotient, 0.4 * speaker.open_quotient
    pulse = np.where(
        phase < tp,
        0.5 * (1 - np.cos(np.pi * phase / tp)),
        np.where(phase < tp + tn, np.cos(np.pi * (phase - tp) / (2 * tn)), 0.0),
    )
    source = np.diff(pulse, prepend=pulse[0])
    noise = rng.standard_normal(n)

    # Vocal tract and fricative shaping, on the frames where something sounds.
    freqs = np.fft.rfftfreq(nperseg, 1.0 / sample_rate)
    spec = np.zeros((n_frames, len(freqs)), dtype=complex)
    on_v = np.flatnonzero(voiced > 0)
    on_f = np.flatnonzero(fric > 0)
    spec_source = _stft(source, nperseg, hop)
    spec_noise = _stft(noise, nperseg, hop)
    e_voiced = 0.0
    if on_v.size:
        bands = FORMANT_BANDWIDTHS * speaker.bandwidth_scale
        power = _tract_power(freqs, formants[on_v], bands)
        power *= (np.maximum(freqs, 100.0) / 500.0) ** (speaker.tilt / 3.01)
        tract = np.sqrt(power / power.max(axis=1, keepdims=True)) * voiced[on_v, None]
        y_voiced = spec_source[on_v] * tract
        e_voiced = float(np.sum(y_voiced.real**2 + y_voiced.imag**2))
        # aspiration: noise through the same tract; E|noise STFT|^2 is flat
        e_breath = float(np.sum(tract**2)) * float(np.mean(np.abs(spec_noise) ** 2))
        spec[on_v] = y_voiced + spec_noise[on_v] * tract * (
            speaker.breathiness * np.sqrt(e_voiced / max(e_breath, 1e-12))
        )
    if on_f.size:
        lf = np.log2(np.maximum(freqs, 1.0)[None, :] / fc[on_f, None])
        shape = np.exp(-0.5 * (lf / fbw[on_f, None]) ** 2) * fric[on_f, None]
        y_fric = spec_noise[on_f] * shape
        e_fric = float(np.sum(y_fric.real**2 + y_fric.imag**2))
        gain = 1.0
        if e_voiced > 0 and e_fric > 0:
            duty = on_f.size / max(on_v.size, 1)
            gain = np.sqrt(e_voiced * 10 ** (-12 / 10) * duty / e_fric)
        spec[on_f] += y_fric * gain
    y = _istft(spec, n, nperseg, hop)
    level = active_level(y, sample_rate)
    if level > 0:
        y = y / level
    y = y + 10 ** (floor_db / 20) * rng.standard_normal(n)
    return y / active_level(y, sample_rate)


# --------------------------------------------------------------------------
# Noises


def _spectral_shape(n, sample_rate, exponent, f_min):
    """Amplitude spectrum ~ f^(-exponent/2) above f_min, rolled off below."""
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = np.maximum(f, f_min) ** (-exponent / 2.0)
    shape *= np.minimum(f / f_min, 1.0) ** 2
    return shape


def coloured_noise(n, sample_rate, rng, exponent=1.0, f_min=20.0):
    """Gaussian noise with a power spectrum ~ 1/f^exponent (unit RMS).

    ``exponent`` 0 is white, 1 pink, 2 brown; frequencies below ``f_min`` are
    rolled off so that brown noise does not drift.

    Arguments
    ---------
    n : int
        Number of samples.
    sample_rate : int
        Sample rate (Hz).
    rng : numpy.random.Generator
        Random source.
    exponent : float
        Spectral exponent.
    f_min : float
        Low-frequency roll-off (Hz).

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> x = coloured_noise(16000, 16000, np.random.default_rng(0), exponent=2.0)
    >>> x.shape, round(rms(x), 6)
    ((16000,), 1.0)
    """
    n = int(n)
    m = next_fast_len(n, real=True)  # prime lengths make the FFT slow
    white = np.fft.rfft(rng.standard_normal(m))
    x = np.fft.irfft(white * _spectral_shape(m, sample_rate, exponent, f_min), n=m)[:n]
    return x / max(rms(x), 1e-12)


def slow_modulation(n, sample_rate, rng, depth=0.5):
    """Positive gain curve with slow (0.05-0.5 Hz) random level changes.

    Example
    -------
    >>> g = slow_modulation(8000, 8000, np.random.default_rng(0))
    >>> bool(g.min() > 0), g.shape
    (True, (8000,))
    """
    t = np.arange(int(n)) / sample_rate
    rates = rng.uniform(0.05, 0.5, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    s = np.sum(np.sin(2 * np.pi * rates[:, None] * t[None, :] + phases[:, None]), axis=0) / 3
    return 1.0 + depth * s / max(np.max(np.abs(s)), 1e-9) * 0.95


def ambient_noise(n, sample_rate, rng):
    """WHAM!-like ambient noise: far babble, noise bed, clatter, slow changes.

    A sum of 3-6 distant procedural talkers (low-passed), a pink-to-brown
    noise bed, sparse decaying clatter transients, all under a slow level
    modulation; unit RMS.

    Arguments
    ---------
    n : int
        Number of samples.
    sample_rate : int
        Sample rate (Hz).
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> x = ambient_noise(8000, 16000, np.random.default_rng(1))
    >>> x.shape, round(rms(x), 6)
    ((8000,), 1.0)
    """
    n = int(n)
    duration = n / sample_rate
    babble = np.zeros(n)
    for i in range(int(rng.integers(3, 7))):
        talker = sample_speaker(rng, f"far{i}")
        babble += synth_utterance(talker, duration, sample_rate, rng) * rng.uniform(0.5, 1.0)
    m = next_fast_len(n, real=True)
    spec = np.fft.rfft(babble, n=m)
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    spec /= np.sqrt(1.0 + (f / rng.uniform(1000.0, 2500.0)) ** 4)
    babble = np.fft.irfft(spec, n=m)[:n]
    babble /= max(rms(babble), 1e-12)
    bed = coloured_noise(n, sample_rate, rng, exponent=rng.uniform(1.0, 2.0), f_min=30.0)
    # clatter: sparse impulses convolved with a short decaying noise burst
    impulses = np.zeros(n)
    n_hits = rng.poisson(0.7 * duration)
    impulses[rng.integers(0, n, n_hits)] = rng.uniform(0.3, 1.0, n_hits)
    k = max(int(0.08 * sample_rate), 1)
    kernel = rng.standard_normal(k) * np.exp(-np.arange(k) / (0.015 * sample_rate))
    clatter = fftconvolve(impulses, kernel)[:n] if n_hits else np.zeros(n)
    mix = babble * 10 ** (rng.uniform(-6.0, 0.0) / 20) + bed
    if n_hits:
        mix += clatter / max(rms(clatter), 1e-12) * 10 ** (rng.uniform(-15.0, -6.0) / 20)
    mix *= slow_modulation(n, sample_rate, rng, depth=rng.uniform(0.2, 0.6))
    return mix / max(rms(mix), 1e-12)


def room_response(sample_rate, rng, rt60=(0.2, 0.45), damping=(2000.0, 5000.0), length_s=None):
    """Synthetic room impulse response: direct path plus a decaying noise tail.

    The tail decays by 60 dB in ``rt60`` seconds and is low-passed (its
    cut-off falls from ``damping[1]`` to ``damping[0]`` Hz along the tail, as
    air and walls absorb high frequencies); the direct path has unit gain.

    Arguments
    ---------
    sample_rate : int
        Sample rate (Hz).
    rng : numpy.random.Generator
        Random source.
    rt60 : tuple of float
        Range of the reverberation time (seconds).
    damping : tuple of float
        Final and initial low-pass cut-off of the tail (Hz).
    length_s : float, optional
        Length of the response (default: the drawn RT60).

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> h = room_response(8000, np.random.default_rng(0), rt60=(0.3, 0.3))
    >>> h.shape, float(h[0])
    ((2400,), 1.0)
    """
    t60 = rng.uniform(*rt60)
    n = max(round((length_s or t60) * sample_rate), 2)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10 ** (-3.0 * t / t60)
    m = next_fast_len(2 * n, real=True)
    spec = np.fft.rfft(tail, n=m)
    f = np.fft.rfftfreq(m, 1.0 / sample_rate)
    spec /= np.sqrt(1.0 + (f / rng.uniform(*damping)) ** 4)
    tail = np.fft.irfft(spec, n=m)[:n]
    delay = int(rng.integers(int(0.003 * sample_rate), int(0.012 * sample_rate) + 1))
    tail[: delay + 1] = 0.0
    drr = 10 ** (rng.uniform(0.0, 8.0) / 20)  # direct-to-reverberant ratio
    tail *= 1.0 / (drr * max(np.sqrt(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(x, h):
    """Convolve with an impulse response, keeping the length of ``x``.

    Example
    -------
    >>> reverberate(np.ones(100), np.array([1.0, 0.5])).shape
    (100,)
    """
    return fftconvolve(np.asarray(x, dtype=float), h)[: len(x)]


def mains_hum(n, sample_rate, rng, base=50.0):
    """Mains hum: a 50 Hz (or ``base``) tone with decaying odd harmonics, unit RMS.

    Example
    -------
    >>> x = mains_hum(8000, 8000, np.random.default_rng(0))
    >>> x.shape, round(rms(x), 6)
    ((8000,), 1.0)
    """
    t = np.arange(int(n)) / sample_rate
    x = np.zeros(int(n))
    for k in (1, 3, 5, 7):
        if k * base < sample_rate / 2:
            x += np.sin(2 * np.pi * k * base * t + rng.uniform(0, 2 * np.pi)) / k
    return x / max(rms(x), 1e-12)


__all__ = [
    "TONES",
    "VOWEL_FORMANTS",
    "Speaker",
    "active_level",
    "ambient_noise",
    "coloured_noise",
    "mains_hum",
    "reverberate",
    "rms",
    "room_response",
    "sample_speaker",
    "sample_tonal_speaker",
    "slow_modulation",
    "synth_utterance",
]
