"""Separating recordings of any length with a trained run or an exported model.

``separate`` (``python -m modules.inference``, or the console script of the same
name) and its Python API take a model and audio files or folders and write one
file per separated speaker (and the noise, for models that predict it)::

    python -m modules.inference <run or export folder> a.wav recordings/ --output_folder separated/

The model is a trained run's folder (``hyperparams.yaml`` and ``save/CKPT+*``,
as every recipe writes it; the best checkpoint by the run's ``best_key``) or a
folder written by :mod:`modules.export`. Inputs may be of any length, any sample
rate and any number of channels, in any format ``soundfile`` reads (WAV, FLAC,
OGG, ...):

* **Channels.** A multichannel file is mixed down to mono (the mean of its
  channels) before separation: the models are single-channel.
* **Sample rate.** The mixture is resampled to the model's rate with the
  polyphase resampler of :func:`modules.audio.resample` and the outputs back to
  the input's rate (``output_rate`` / ``--output_rate`` to choose another one),
  block by block (:class:`StreamingResampler`, exactly equal to resampling the
  whole file at once). Every output has exactly the duration of its input.
* **Length.** The file is read in blocks and separated in overlapping chunks of
  ``chunk_seconds`` (``overlap_seconds`` shared by consecutive chunks); the
  outputs are written as they are finished, so memory does not grow with the
  length of the file (``tests/benchmarks/bench_separate.py`` measures it). A
  file no longer than one chunk is separated in one piece, as a whole.
* **Stitching.** Before two consecutive chunks are joined, the speakers of the
  new chunk are matched to those of the previous one by the best permutation
  of their SI-SNR over the shared samples (:func:`modules.losses.pairwise_si_snr`
  and :func:`modules.losses.best_permutation`), so speaker 1 stays speaker 1
  over the whole file; the chunks are then cross-faded over the shared samples
  with complementary raised-cosine weights (they sum to one), which leaves no
  click at the seams. A model that finds a different number of speakers in
  different chunks (recursive separation, SADDEL) is handled the same way: a
  speaker matched to none of the earlier ones opens a new output, silent before.
* **Noise.** For NASS the Brain's ``split_outputs`` picks the noise output of
  every chunk; the noise is stitched with the same cross-fade and written as
  ``<name>_noise.wav``.
* **Enrollment.** A target-speaker model (sDPCCN, TD-SpeakerBeam: a yaml with
  ``conditioning: [enroll]``) needs an enrollment utterance per input:
  ``--enroll FILE`` (every input), ``--enroll_list LIST`` (``mixture<TAB or ,>enrollment``
  lines) or ``MIXTURE,ENROLLMENT`` on the command line.
* **Errors.** An unreadable, empty or non-finite file is reported with a
  one-line reason and the other files are still processed; the exit code is 1
  when any file failed.

Which outputs are speakers and which is the noise is decided by the recipe's
Brain (its ``split_outputs``), so a run is loaded with its Brain class: from
``run_info.json`` in the run folder (``{"brain_class": "modules.nass.NASSBrain"}``)
when the run wrote one, else from the recipe whose yaml the run's
``hyperparams.yaml`` names in its header (the ``run_recipe(<Brain>, ...)`` call of
that recipe's ``train.py``), or given with ``--brain modules.nass.NASSBrain``.

Python API::

    from modules.inference import load_model, separate_file, separate_signal
    model = load_model("results/WHAM/nass/convtasnet_nass_wham_sep_noisy/1234", device="cuda")
    separate_file(model, "meeting.flac", "separated/")          # -> the files written
    out = separate_signal(model, signal, 44100)                  # -> arrays at 44.1 kHz
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

from modules.audio import resample
from modules.losses import best_permutation, pairwise_si_snr

__all__ = [
    "AudioInputError",
    "BrainModel",
    "ChunkStitcher",
    "Model",
    "SeparationResult",
    "StreamingResampler",
    "align_streams",
    "audio_files",
    "crossfade_weights",
    "load_model",
    "load_run",
    "main",
    "resolve_brain_class",
    "separate_file",
    "separate_files",
    "separate_signal",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Written by a run (``run_recipe``) beside ``hyperparams.yaml``: ``{"brain_class": "module.Class"}``.
RUN_INFO = "run_info.json"
#: Written by :mod:`modules.export` in an exported model folder.
EXPORT_INFO = "export_info.json"
#: Default chunk and overlap (seconds).
CHUNK_SECONDS = 10.0
OVERLAP_SECONDS = 2.0
#: Input block read from a file at a time (frames at the input rate).
READ_BLOCK = 1 << 16
#: Below this mean square (about -100 dBFS) the overlap of two chunks is silence: no speaker matching there.
SILENCE_POWER = 1e-10


class AudioInputError(ValueError):
    """An input that cannot be separated (unreadable, empty, non-finite): a one-line reason."""


# --------------------------------------------------------------------------- resampling
class StreamingResampler:
    """Block-by-block polyphase resampling, equal to resampling the whole signal at once.

    Each block is resampled by :func:`modules.audio.resample` (``scipy.signal.resample_poly``)
    with enough input context on both sides for the filter (its half length
    ``10 * max(up, down)`` output-rate taps) and cut at input positions that are
    multiples of ``down``, where the output grid lines up with the input's, so
    the samples produced are those of the whole-signal call.

    Arguments
    ---------
    orig_sr, target_sr : int
        Sample rates in Hz.
    n_channels : int
        Columns of the ``[time, channels]`` blocks (more can be added, silent
        so far, with :meth:`add_channels`).
    min_block : int
        Input samples gathered before a block is resampled.

    Example
    -------
    >>> x = np.random.default_rng(0).standard_normal((10007, 2))
    >>> r = StreamingResampler(44100, 8000, n_channels=2)
    >>> y = np.concatenate([r.push(x[i : i + 999]) for i in range(0, len(x), 999)] + [r.finish()])
    >>> whole = resample(x.T, 44100, 8000).T
    >>> y.shape == whole.shape, bool(np.abs(y - whole).max() < 1e-12)
    (True, True)
    """

    def __init__(self, orig_sr, target_sr, n_channels=1, min_block=8192):
        self.orig_sr, self.target_sr = int(orig_sr), int(target_sr)
        g = math.gcd(self.orig_sr, self.target_sr)
        self.up, self.down = self.target_sr // g, self.orig_sr // g
        self.identity = self.up == self.down
        half_len = 10 * max(self.up, self.down)  # scipy's filter half length (output-rate taps of the upsampled grid)
        self.context = self.down * math.ceil((half_len / self.up + 2) / self.down)  # input samples, multiple of down
        self.min_block = max(int(min_block), self.down)
        self.buffer = np.zeros((0, n_channels))
        self.buffer_start = 0  # input index of buffer[0]
        self.position = 0  # input samples whose output has been produced (a multiple of down until finish)
        self.received = 0
        self.finished = False

    @property
    def n_channels(self):
        """Number of streams buffered."""
        return self.buffer.shape[1]

    def add_channels(self, k):
        """Adds ``k`` channels that have been silent so far."""
        self.buffer = np.concatenate([self.buffer, np.zeros((len(self.buffer), k))], axis=1)

    def _resample_range(self, start, stop, final):
        left = min(self.context, start)
        right_end = stop if final else stop + self.context
        segment = self.buffer[start - left - self.buffer_start : right_end - self.buffer_start]
        out = resample(segment.T, self.orig_sr, self.target_sr).T
        offset = left * self.up // self.down
        end = -(-stop * self.up // self.down) if final else stop * self.up // self.down
        n_out = end - start * self.up // self.down
        return out[offset : offset + n_out]

    def push(self, block):
        """Adds ``[n, channels]`` input samples; returns the output samples ready so far."""
        block = np.asarray(block, dtype=float).reshape(len(block), -1)
        if self.identity:
            self.received += len(block)
            return block
        self.buffer = np.concatenate([self.buffer, block])
        self.received += len(block)
        stop = (self.received - self.context) // self.down * self.down
        if stop - self.position < self.min_block:
            return np.zeros((0, self.n_channels))
        out = self._resample_range(self.position, stop, final=False)
        self.position = stop
        keep_from = max(self.buffer_start, self.position - self.context)
        self.buffer = self.buffer[keep_from - self.buffer_start :]
        self.buffer_start = keep_from
        return out

    def finish(self):
        """The remaining output samples (``ceil(total * target / orig)`` in all)."""
        self.finished = True
        if self.identity or self.received == self.position:
            return np.zeros((0, self.n_channels))
        out = self._resample_range(self.position, self.received, final=True)
        self.position = self.received
        return out


def output_length(n, orig_sr, target_sr):
    """Length of ``n`` samples resampled from ``orig_sr`` to ``target_sr`` (as :func:`modules.audio.resample`).

    Example
    -------
    >>> output_length(16001, 16000, 8000)
    8001
    """
    return n if orig_sr == target_sr else -(-n * int(target_sr) // int(orig_sr))


# --------------------------------------------------------------------------- stitching
def crossfade_weights(n, dtype=torch.float32):
    """Raised-cosine fade-in ``[n, 1]`` over ``n`` shared samples (the fade-out is ``1 - w``).

    Example
    -------
    >>> w = crossfade_weights(4)[:, 0]
    >>> [round(float(v), 3) for v in w]
    [0.038, 0.309, 0.691, 0.962]
    """
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / max(n, 1)
    return (0.5 - 0.5 * torch.cos(math.pi * t)).to(dtype)[:, None]


def align_streams(previous, current):
    """Orders the streams of ``current`` like those of ``previous`` over the samples they share.

    Arguments
    ---------
    previous : torch.Tensor
        ``[n, C_prev]``, the already ordered streams over the shared samples.
    current : torch.Tensor
        ``[m, C_cur]`` (``m >= n``), the new chunk's streams from the first
        shared sample on.

    Returns
    -------
    torch.Tensor
        ``[m, max(C_prev, C_cur)]``: column ``j`` continues stream ``j`` of
        ``previous``. The assignment maximises the summed SI-SNR of the matched
        pairs (:func:`modules.losses.pairwise_si_snr`,
        :func:`modules.losses.best_permutation`). New streams (``C_cur > C_prev``)
        come after the matched ones; streams of ``previous`` without a match
        (``C_cur < C_prev``) are silent. With no shared samples, or silence
        there, the order is kept.

    Example
    -------
    >>> t = torch.linspace(0, 1, 800)
    >>> a, b = torch.sin(40 * t), torch.sign(torch.sin(7 * t))
    >>> prev = torch.stack([a, b], -1)[:400]
    >>> cur = torch.stack([b, a], -1)  # the model swapped them in this chunk
    >>> torch.equal(align_streams(prev, cur), torch.stack([a, b], -1))
    True
    """
    n, c_prev = previous.shape
    c_cur = current.shape[1]
    if n == 0 or float(previous.double().square().mean()) < SILENCE_POWER:
        perm = None
    elif c_cur >= c_prev:
        perm = best_permutation(pairwise_si_snr(current[None, :n], previous[None]))[0].tolist()
    else:
        perm = best_permutation(pairwise_si_snr(previous[None], current[None, :n]))[0].tolist()
    if c_cur >= c_prev:
        order = perm if perm is not None else list(range(c_prev))
        order = order + [i for i in range(c_cur) if i not in order]
        return current[:, order]
    out = current.new_zeros(current.shape[0], c_prev)
    out[:, perm if perm is not None else list(range(c_cur))] = current
    return out


class ChunkStitcher:
    """Separates a stream of samples in overlapping chunks and joins the outputs (see the module docstring).

    Arguments
    ---------
    separate : callable
        ``separate(chunks [B, L]) -> (speakers [B, L, C], noise [B, L] or None[, speaker_mask [B, C]])``
        on CPU float32 tensors (a :class:`Model`'s :meth:`Model.separate_chunks`).
    chunk : int
        Samples per chunk.
    overlap : int
        Samples shared by consecutive chunks (at most ``chunk // 2``).
    sink : object
        Receives the finished samples in order: ``add_streams(k)``,
        ``write(speakers [n, C] ndarray, noise [n] ndarray or None)``.
    batch_size : int
        Chunks separated in one call of the model.

    Example
    -------
    >>> class Sink:
    ...     def __init__(self): self.blocks, self.streams = [], 0
    ...     def add_streams(self, k): self.streams += k
    ...     def write(self, speakers, noise): self.blocks.append(speakers)
    >>> sink = Sink()
    >>> stitch = ChunkStitcher(lambda x: (torch.stack([x, -x], -1), None), chunk=100, overlap=20, sink=sink)
    >>> x = torch.randn(1234)
    >>> stitch.push(x[:500]); stitch.push(x[500:]); stitch.finish()
    >>> out = np.concatenate(sink.blocks)
    >>> out.shape, bool(np.allclose(out[:, 0], x.numpy(), atol=1e-6)), stitch.n_chunks
    ((1234, 2), True, 16)
    """

    def __init__(self, separate, chunk, overlap, sink, batch_size=1):
        if chunk < 1 or not 0 <= overlap <= chunk // 2:
            raise ValueError(f"need 0 <= overlap <= chunk / 2, got chunk {chunk} and overlap {overlap} samples")
        self.separate, self.chunk, self.overlap, self.sink = separate, int(chunk), int(overlap), sink
        self.hop = self.chunk - self.overlap
        self.batch_size = max(1, int(batch_size))
        self.buffer = torch.zeros(0)
        self.buffer_start = 0
        self.received = 0
        self.next_start = 0
        self.last_end = 0
        self.queue = []
        self.tail = None  # (start, speakers [n, C], noise [n] or None): finished by no one yet
        self.n_streams = 0
        self.n_chunks = 0

    def push(self, samples):
        """Adds mixture samples ``[n]`` (model rate)."""
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self.buffer = torch.cat([self.buffer, samples])
        self.received += len(samples)
        while self.next_start + self.chunk <= self.received:
            self._queue(self.next_start)
            self.next_start += self.hop
        keep_from = min(self.next_start, max(0, self.received - self.chunk))
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[keep_from - self.buffer_start :]
            self.buffer_start = keep_from

    def _queue(self, start):
        length = min(self.chunk, self.received - start)
        piece = self.buffer[start - self.buffer_start : start - self.buffer_start + length]
        self.queue.append((start, piece))
        self.last_end = start + length
        if len(self.queue) >= self.batch_size:
            self._run()

    def finish(self):
        """Separates what is left and hands the last samples to the sink."""
        if self.received == 0:
            raise AudioInputError("no samples to separate")
        if self.last_end == 0:
            self._queue(0)  # shorter than one chunk: separated whole
        elif self.last_end < self.received:
            self._queue(self.received - self.chunk)  # the last chunk ends with the signal
        if self.queue:
            self._run()
        _, speakers, noise = self.tail
        self.sink.write(speakers.numpy(), None if noise is None else noise.numpy())
        self.tail = None

    def _run(self):
        chunks = torch.stack([piece for _, piece in self.queue])
        result = self.separate(chunks)
        speakers, noise = result[0], result[1]
        mask = result[2] if len(result) > 2 else None
        for b, (start, _) in enumerate(self.queue):
            spk = speakers[b]
            if mask is not None:
                spk = spk[:, mask[b].bool()]
            self._stitch(start, spk.float(), None if noise is None else noise[b].float())
            self.n_chunks += 1
        self.queue = []

    def _add_streams(self, k):
        if k > 0:
            self.sink.add_streams(k)
            self.n_streams += k

    def _stitch(self, start, speakers, noise):
        if self.tail is None:
            self._add_streams(speakers.shape[1])
            self.tail = (start, speakers, noise)
            return
        t0, prev, prev_noise = self.tail
        t1 = t0 + prev.shape[0]
        r0 = max(start, t0)
        shared = t1 - r0
        current = align_streams(prev[r0 - t0 :], speakers[r0 - start :])
        current_noise = None if noise is None else noise[r0 - start :]
        self._add_streams(current.shape[1] - self.n_streams)
        if current.shape[1] > prev.shape[1]:
            prev = torch.cat([prev, prev.new_zeros(prev.shape[0], current.shape[1] - prev.shape[1])], dim=1)
        w = crossfade_weights(shared)
        mixed = (1 - w) * prev[r0 - t0 :] + w * current[:shared]
        head = torch.cat([prev[: r0 - t0], mixed])
        head_noise = None
        if prev_noise is not None and current_noise is not None:
            fade = w[:, 0]
            head_noise = torch.cat(
                [prev_noise[: r0 - t0], (1 - fade) * prev_noise[r0 - t0 :] + fade * current_noise[:shared]]
            )
        self.sink.write(head.numpy(), None if head_noise is None else head_noise.numpy())
        self.tail = (t1, current[shared:], None if current_noise is None else current_noise[shared:])


# --------------------------------------------------------------------------- sinks
class ArraySink:
    """Collects the stitched outputs in memory: ``result()`` -> ``(speakers [T, C], noise [T] or None)``."""

    def __init__(self):
        self.columns, self.noise, self.length = [], [], 0

    def add_streams(self, k):
        """Opens ``k`` more output streams, silent before the current position."""
        for _ in range(k):
            self.columns.append([np.zeros(self.length)] if self.length else [])

    def write(self, speakers, noise):
        """Appends the next samples of the speakers (and the noise)."""
        for j, column in enumerate(self.columns):
            column.append(speakers[:, j])
        if noise is not None:
            self.noise.append(noise)
        self.length += len(speakers)

    def result(self):
        """``(speakers [T, C], noise [T] or None)`` of everything written."""
        speakers = np.stack([np.concatenate(c) if c else np.zeros(0) for c in self.columns], axis=-1)
        return speakers, (np.concatenate(self.noise) if self.noise else None)


class ResamplingSink:
    """Resamples the stitched outputs from the model's rate to ``target_sr`` and cuts them to ``length`` samples."""

    def __init__(self, inner, model_sr, target_sr, length):
        self.inner, self.model_sr, self.target_sr, self.length = inner, model_sr, target_sr, int(length)
        self.speakers = StreamingResampler(model_sr, target_sr, n_channels=0)
        self.noise = None
        self.written = 0

    def add_streams(self, k):
        """Opens ``k`` more output streams, silent before the current position."""
        self.speakers.add_channels(k)
        self.inner.add_streams(k)

    def _forward(self, speakers, noise):
        n = min(len(speakers), self.length - self.written)
        if noise is not None:
            n = min(n, len(noise))
        if n > 0:
            self.inner.write(speakers[:n], None if noise is None else noise[:n])
            self.written += n

    def write(self, speakers, noise):
        """Appends the next samples of the speakers (and the noise)."""
        out = self.speakers.push(speakers)
        out_noise = None
        if noise is not None:
            if self.noise is None:
                self.noise = StreamingResampler(self.model_sr, self.target_sr, n_channels=1)
            out_noise = self.noise.push(noise[:, None])[:, 0]
        # the speaker and noise resamplers get the same blocks, so they emit the same number of samples
        self._forward(out, out_noise)

    def close(self):
        """Flushes what is left and closes the outputs."""
        out = self.speakers.finish()
        out_noise = None if self.noise is None else self.noise.finish()[:, 0]
        self._forward(out, out_noise)
        if self.written < self.length:  # cannot happen with resample's ceil lengths; kept for safety
            pad = self.length - self.written
            self.inner.write(np.zeros((pad, self.speakers.n_channels)), None if self.noise is None else np.zeros(pad))
            self.written = self.length
        return self.inner.close() if hasattr(self.inner, "close") else None


class AudioFileSink:
    """Writes each stream to ``<folder>/<stem>_s<k>.<ext>`` (and ``<stem>_noise.<ext>``) as samples arrive."""

    def __init__(self, folder, stem, sample_rate, audio_format="wav", subtype=None):
        self.folder, self.stem, self.sample_rate = Path(folder), stem, int(sample_rate)
        self.format = audio_format.upper()
        self.subtype = subtype or ("FLOAT" if self.format == "WAV" else "PCM_24")
        self.ext = audio_format.lower()
        self.files, self.noise_file, self.length, self.peak = [], None, 0, 0.0
        self.folder.mkdir(parents=True, exist_ok=True)

    def _open(self, name):
        path = self.folder / f"{self.stem}_{name}.{self.ext}"
        return soundfile.SoundFile(
            path, "w", samplerate=self.sample_rate, channels=1, format=self.format, subtype=self.subtype
        )

    def add_streams(self, k):
        """Opens ``k`` more output streams, silent before the current position."""
        for _ in range(k):
            f = self._open(f"s{len(self.files) + 1}")
            for i in range(0, self.length, READ_BLOCK):  # a stream that starts late is silent before
                f.write(np.zeros(min(READ_BLOCK, self.length - i), dtype=np.float32))
            self.files.append(f)

    def write(self, speakers, noise):
        """Appends the next samples of the speakers (and the noise)."""
        for j, f in enumerate(self.files):
            f.write(speakers[:, j].astype(np.float32))
        if noise is not None:
            if self.noise_file is None:
                self.noise_file = self._open("noise")
            self.noise_file.write(noise.astype(np.float32))
        self.length += len(speakers)
        if len(speakers):
            self.peak = max(self.peak, float(np.abs(speakers).max()))

    @property
    def paths(self):
        """The files written, speakers first, then the noise."""
        return [f.name for f in self.files] + ([self.noise_file.name] if self.noise_file is not None else [])

    def close(self):
        """Flushes what is left and closes the outputs."""
        for f in [*self.files, *([self.noise_file] if self.noise_file is not None else [])]:
            f.close()
        if self.peak > 1 and not self.subtype.startswith("FLOAT") and not self.subtype.startswith("DOUBLE"):
            logger.warning("%s: outputs exceed full scale (peak %.2f) and were clipped by %s", self.stem, self.peak,
                           self.subtype)  # fmt: skip
        return self.paths


# --------------------------------------------------------------------------- models
class Model:
    """A separator ready for inference: what :func:`separate_file` and :func:`separate_signal` need.

    Subclasses set ``sample_rate`` (Hz), ``device``, ``conditioning`` (names of
    per-input signals such as ``("enroll",)``) and implement :meth:`separate_batch`.
    """

    sample_rate: int
    device: torch.device = torch.device("cpu")
    conditioning: tuple = ()

    def separate_batch(self, mix, **conditioning):
        """``mix [B, T]`` on the device -> ``(speakers [B, T, C], noise [B, T] or None[, speaker_mask [B, C]])``."""
        raise NotImplementedError

    @torch.no_grad()
    def separate_chunks(self, chunks, **conditioning):
        """:meth:`separate_batch` on CPU tensors in and out (float32), conditioning repeated over the batch."""
        batch = chunks.shape[0]
        cond = {k: v.to(self.device).expand(batch, *v.shape[1:]) for k, v in conditioning.items()}
        result = self.separate_batch(chunks.to(self.device, torch.float32), **cond)
        return tuple(None if r is None else r.detach().float().cpu() for r in result)


class BrainModel(Model):
    """A trained recipe's Brain as a :class:`Model` (its ``separate_speakers`` and ``split_outputs``).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from modules.brain import SeparationBrain
    >>> from modules.models import MaskingSeparator
    >>> sep = MaskingSeparator(Encoder(kernel_size=16, out_channels=8), MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=2),
    ...                        Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False))
    >>> brain = SeparationBrain({"separator": sep}, hparams={"sample_rate": 8000}, run_opts={"device": "cpu"})
    >>> model = BrainModel(brain)
    >>> out = separate_signal(model, np.random.randn(16000), 16000, chunk_seconds=0.5, overlap_seconds=0.1)
    >>> out.speakers.shape, out.noise is None, out.sample_rate
    ((16000, 2), True, 16000)
    """

    def __init__(self, brain):
        self.brain = brain
        self.sample_rate = int(brain.hparams.sample_rate)
        self.device = torch.device(brain.device)
        self.conditioning = tuple(getattr(brain.hparams, "conditioning", None) or ())
        brain.modules.eval()

    def separate_batch(self, mix, **conditioning):
        """``(speakers [B, T, C], noise or None)`` of a batch of mixtures, through the Brain."""
        return self.brain.separate_speakers(mix, **conditioning)


# --------------------------------------------------------------------------- loading a run
def import_object(dotted):
    """The object named by a dotted path, e.g. ``modules.nass.NASSBrain``."""
    module, _, name = dotted.rpartition(".")
    if not module:
        raise ValueError(f"expected a dotted name such as modules.nass.NASSBrain, got {dotted!r}")
    return getattr(importlib.import_module(module), name)


def run_hparams_source(run_folder):
    """The recipe yaml a run was made from, read from the header of its ``hyperparams.yaml``."""
    with open(Path(run_folder) / "hyperparams.yaml", encoding="utf-8") as f:
        for line in [f.readline() for _ in range(3)]:
            match = re.match(r"#\s*(/.*\.ya?ml)\s*$", line)
            if match:
                return match.group(1)
    return None


def recipe_brain_class(train_py):
    """``module.Name`` of the Brain given to ``run_recipe`` in a recipe's ``train.py`` (read, not run).

    Example
    -------
    >>> recipe_brain_class(REPO_ROOT / "recipes" / "WHAM" / "nass" / "train.py")
    'modules.nass.NASSBrain'
    """
    tree = ast.parse(Path(train_py).read_text(encoding="utf-8"))
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "run_recipe":
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "brain_class"), None)
            if isinstance(arg, ast.Name) and arg.id in imported:
                return imported[arg.id]
    raise ValueError(f"{train_py}: no run_recipe(<Brain>, ...) call with an imported Brain")


def resolve_brain_class(run_folder, brain_class=None):
    """The Brain class (or factory) of a run: given, from ``run_info.json``, or from its recipe's ``train.py``.

    Returns
    -------
    (callable, str)
        The class and where it was found.
    """
    if brain_class is not None:
        return (import_object(brain_class) if isinstance(brain_class, str) else brain_class), "given"
    info = Path(run_folder) / RUN_INFO
    if info.is_file():
        name = json.loads(info.read_text(encoding="utf-8")).get("brain_class")
        if name:
            return import_object(name), str(info)
    source = run_hparams_source(run_folder)
    if source:
        parts = Path(source).parts
        if "recipes" in parts and len(parts) >= parts.index("recipes") + 4:
            i = parts.index("recipes")
            candidates = [Path(*parts[: i + 3]) / "train.py", REPO_ROOT.joinpath(*parts[i : i + 3], "train.py")]
            for train_py in candidates:
                if train_py.is_file():
                    return import_object(recipe_brain_class(train_py)), str(train_py)
    raise ValueError(
        f"{run_folder}: cannot tell which Brain trained this run (no {RUN_INFO}, and the recipe named in "
        "hyperparams.yaml is not found): pass --brain, e.g. --brain modules.nass.NASSBrain"
    )


def _is_plain(node):
    """A yaml node without tags at any depth (numbers, strings, lists and maps of them)."""
    if getattr(getattr(node, "tag", None), "value", None):
        return False
    if isinstance(node, dict):
        return all(_is_plain(v) for v in node.values())
    if isinstance(node, list | tuple):
        return all(_is_plain(v) for v in node)
    return True


def inference_yaml(run_yaml_text, keep_modules=None):
    """The part of a run's ``hyperparams.yaml`` that inference needs, as yaml text.

    Every plain top-level key (numbers, strings, lists; the keys of the shared
    ``training`` block lifted to the top level, the recipe's own winning) and the
    ``modules`` map with the objects it builds; nothing else is instantiated
    (no data preparation, checkpointer, logger or seeding).

    Arguments
    ---------
    run_yaml_text : str
    keep_modules : list of str, optional
        Only these entries of ``modules``.

    Example
    -------
    >>> text = "sample_rate: 8000\\nlr: !name:torch.optim.Adam\\nmodules:\\n  lin: !new:torch.nn.Linear [2, 3]\\n"
    >>> print(inference_yaml(text).strip())
    sample_rate: 8000
    modules:
      lin: !new:torch.nn.Linear [2, 3]
    """
    import io

    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    doc = yaml.load(run_yaml_text)
    out = ruamel.yaml.comments.CommentedMap()
    for key, value in doc.items():
        if key != "modules" and not str(key).startswith("__") and _is_plain(value):
            out[key] = value
    training = doc.get("training")
    if isinstance(training, dict):
        for key, value in training.items():
            if key not in out and key not in doc and _is_plain(value):
                out[key] = value
    modules = doc.get("modules") or {}
    if keep_modules is not None:
        modules = {k: v for k, v in modules.items() if k in keep_modules}
    out["modules"] = ruamel.yaml.comments.CommentedMap(modules)
    stream = io.StringIO()
    yaml.dump(out, stream)
    return stream.getvalue()


def _load_module_files(modules, files):
    """Loads ``{name: ckpt path}`` into ``modules`` with SpeechBrain's default loading hooks."""
    from speechbrain.utils.checkpoints import DEFAULT_LOAD_HOOKS, get_default_hook

    for name, path in files.items():
        hook = get_default_hook(modules[name], DEFAULT_LOAD_HOOKS)
        if hook is None:
            raise TypeError(f"no checkpoint loading hook for module {name!r} ({type(modules[name]).__name__})")
        hook(modules[name], path, end_of_epoch=True)


def _resolve_init_from(path, run_folder):
    """``init_from`` as written in the run, tried as given, then against the repository root and the run's parents."""
    for candidate in [Path(path), REPO_ROOT / path, *[p / path for p in Path(run_folder).resolve().parents]]:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"frozen modules come from init_from={path}, which is not found")


def load_run(run_folder, device="cpu", brain_class=None, checkpoint=None):
    """A trained run as a :class:`BrainModel`: its modules, its best checkpoint, its Brain.

    Arguments
    ---------
    run_folder : str or Path
        A run's ``output_folder`` (``hyperparams.yaml`` and ``save/``).
    device : str
    brain_class : str or callable, optional
        Default: :func:`resolve_brain_class`.
    checkpoint : str, optional
        A ``CKPT+...`` folder to load instead of the best one (by ``best_key``).

    Returns
    -------
    BrainModel
        ``.checkpoint`` is the folder loaded.
    """
    from hyperpyyaml import load_hyperpyyaml

    from modules.training import find_best_checkpoint, initialise_from

    run_folder = Path(run_folder)
    if not (run_folder / "hyperparams.yaml").is_file():
        raise FileNotFoundError(f"{run_folder}: not a trained run (no hyperparams.yaml)")
    brain_cls, found_in = resolve_brain_class(run_folder, brain_class)
    hparams = load_hyperpyyaml(inference_yaml((run_folder / "hyperparams.yaml").read_text(encoding="utf-8")))
    key, mode = hparams.get("best_key", "si-snr"), hparams.get("best_key_mode", "max")
    ckpt = find_best_checkpoint(checkpoint or run_folder, key=key, mode=mode)
    brain = brain_cls(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": str(device), "precision": "fp32", "eval_precision": "fp32"},
    )
    frozen = set(getattr(brain, "frozen", []) or [])
    files = {name: path for name, path in ckpt.paramfiles.items() if name in brain.modules and name not in frozen}
    missing = [name for name in brain.modules if name not in files and name not in frozen]
    if missing:
        logger.warning("%s holds no weights for %s: they keep their initial values", ckpt.path, missing)
    _load_module_files({name: brain.unwrapped(name) for name in brain.modules}, files)
    if frozen:
        if not hparams.get("init_from"):
            raise ValueError(f"frozen modules {sorted(frozen)} are not in the checkpoints and the run has no init_from")
        source = _resolve_init_from(hparams["init_from"], run_folder)
        initialise_from(
            source,
            {name: brain.unwrapped(name) for name in frozen},
            mapping={k: v for k, v in (hparams.get("init_modules") or {}).items() if k in frozen} or None,
            key=hparams.get("init_key") or key,
            mode=hparams.get("init_key_mode") or mode,
            collect_in=os.path.join(run_folder, "save", "init_from"),
        )
    if hasattr(brain, "check_nass_hparams"):  # the Brain's own consistency checks, as at test time
        brain.check_nass_hparams()
    brain.modules.to(brain.device)
    model = BrainModel(brain)
    model.checkpoint, model.brain_class_source = str(ckpt.path), found_in
    logger.info("Loaded %s (%s, from %s) on %s", ckpt.path, getattr(brain_cls, "__name__", brain_cls), found_in, device)
    return model


def load_model(source, device="cpu", brain_class=None, checkpoint=None):
    """A :class:`Model` from a trained run folder or an exported model folder (:mod:`modules.export`)."""
    source = Path(source)
    if (source / EXPORT_INFO).is_file():
        from modules.export import load_exported

        return load_exported(source, device=device)
    if (source / "hyperparams.yaml").is_file():
        return load_run(source, device=device, brain_class=brain_class, checkpoint=checkpoint)
    raise FileNotFoundError(f"{source}: neither a trained run (hyperparams.yaml + save/) nor an exported model folder")


# --------------------------------------------------------------------------- separating
@dataclass
class SeparationResult:
    """What :func:`separate_signal` returns (arrays at ``sample_rate``)."""

    speakers: np.ndarray  # [T, C]
    noise: np.ndarray | None  # [T]
    sample_rate: int
    n_chunks: int = 0
    files: list = field(default_factory=list)

    @property
    def n_speakers(self):
        """Number of speaker streams."""
        return self.speakers.shape[1]


def _to_mono(block):
    block = np.asarray(block, dtype=np.float64)
    return block if block.ndim == 1 else block.mean(axis=1)


def _check_finite(block, name):
    if not np.isfinite(block).all():
        raise AudioInputError(f"{name}: the audio contains NaN or infinite samples")


def _read_conditioning(model, enroll):
    """The enrollment signal as model inputs (``enroll`` ``[1, T]`` and ``enroll_lengths``)."""
    if not model.conditioning:
        if enroll is not None:
            raise ValueError("this model takes no enrollment (its yaml has no `conditioning: [enroll]`)")
        return {}
    unknown = [c for c in model.conditioning if c != "enroll"]
    if unknown:
        raise NotImplementedError(f"separating files with conditioning {unknown} is not supported (only enroll)")
    if enroll is None:
        raise AudioInputError("this model extracts the speaker of an enrollment utterance: give one (--enroll)")
    if isinstance(enroll, str | os.PathLike):
        try:
            signal, rate = soundfile.read(enroll, always_2d=True, dtype="float64")
        except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioInputError(f"enrollment {enroll}: {err}") from err
        if len(signal) == 0:
            raise AudioInputError(f"enrollment {enroll}: empty audio file")
        _check_finite(signal, f"enrollment {enroll}")
        signal = resample(_to_mono(signal), rate, model.sample_rate)
    else:
        signal = np.asarray(enroll, dtype=np.float64)
    tensor = torch.as_tensor(signal, dtype=torch.float32)[None]
    return {"enroll": tensor, "enroll_lengths": torch.tensor([tensor.shape[1]])}


def _run_stream(
    model, blocks, input_rate, sink, chunk_seconds, overlap_seconds, batch_size, conditioning, progress=None
):
    """Feeds input blocks (mono, input rate) through resampling, chunked separation and the output sink."""
    chunk = max(1, round(chunk_seconds * model.sample_rate))
    overlap = round(overlap_seconds * model.sample_rate)
    stitcher = ChunkStitcher(
        lambda chunks: model.separate_chunks(chunks, **conditioning), chunk, overlap, sink, batch_size=batch_size
    )
    to_model = StreamingResampler(input_rate, model.sample_rate)
    for block in blocks:
        stitcher.push(torch.from_numpy(to_model.push(block[:, None])[:, 0]))
        if progress is not None:
            progress.update(len(block))
    stitcher.push(torch.from_numpy(to_model.finish()[:, 0]))
    stitcher.finish()
    return stitcher


def separate_signal(model, signal, sample_rate, output_rate=None, chunk_seconds=CHUNK_SECONDS,
                    overlap_seconds=OVERLAP_SECONDS, batch_size=1, enroll=None):  # fmt: skip
    """Separates an in-memory signal (``[T]`` or ``[T, channels]``, mixed down) of any length and rate.

    Returns
    -------
    SeparationResult
        Outputs at ``output_rate`` (default: ``sample_rate``), as long as the input.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.size == 0:
        raise AudioInputError("empty signal")
    _check_finite(signal, "signal")
    mono = _to_mono(signal)
    output_rate = int(output_rate or sample_rate)
    n_out = output_length(len(mono), sample_rate, output_rate)
    sink = ResamplingSink(ArraySink(), model.sample_rate, output_rate, n_out)
    blocks = (mono[i : i + READ_BLOCK] for i in range(0, len(mono), READ_BLOCK))
    cond = _read_conditioning(model, enroll)
    stitcher = _run_stream(model, blocks, sample_rate, sink, chunk_seconds, overlap_seconds, batch_size, cond)
    sink.close()
    speakers, noise = sink.inner.result()
    return SeparationResult(speakers, noise, output_rate, n_chunks=stitcher.n_chunks)


def separate_file(model, path, output_folder, output_rate=None, chunk_seconds=CHUNK_SECONDS,
                  overlap_seconds=OVERLAP_SECONDS, batch_size=1, enroll=None, audio_format="wav", subtype=None,
                  progress=False):  # fmt: skip
    """Separates one audio file into ``<output_folder>/<name>_s1.wav``, ... (``<name>_noise.wav`` for NASS).

    Reads and writes block by block (memory independent of the file's length).

    Arguments
    ---------
    model : Model
    path : str
        Any file ``soundfile`` reads; multichannel files are mixed down.
    output_folder : str
    output_rate : int, optional
        Default: the input's rate.
    chunk_seconds, overlap_seconds : float
        Chunk length and overlap of consecutive chunks.
    batch_size : int
        Chunks separated in one call of the model.
    enroll : str or array, optional
        Enrollment utterance (target-speaker models).
    audio_format, subtype : str
        Output format (``wav``, ``flac``, ...) and ``soundfile`` subtype (default
        ``FLOAT`` for WAV, ``PCM_24`` otherwise).
    progress : bool
        Show a progress bar.

    Returns
    -------
    SeparationResult
        ``files`` lists the files written; the arrays are empty.
    """
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioInputError(f"cannot read {path}: {err}") from err
    if info.frames == 0:
        raise AudioInputError(f"{path}: empty audio file (0 samples)")
    output_rate = int(output_rate or info.samplerate)
    cond = _read_conditioning(model, enroll)
    stem = Path(path).stem
    files = AudioFileSink(output_folder, stem, output_rate, audio_format=audio_format, subtype=subtype)
    n_out = output_length(info.frames, info.samplerate, output_rate)
    sink = ResamplingSink(files, model.sample_rate, output_rate, n_out)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=info.frames, desc=Path(path).name, unit="sample", unit_scale=True, leave=False)
    try:
        with soundfile.SoundFile(path) as f:
            blocks = (_checked(b, path) for b in f.blocks(READ_BLOCK, dtype="float64", always_2d=True))
            stitcher = _run_stream(
                model, blocks, info.samplerate, sink, chunk_seconds, overlap_seconds, batch_size, cond, progress=bar
            )
        written = sink.close()
    except Exception:
        for f in files.files + ([files.noise_file] if files.noise_file is not None else []):
            f.close()
            Path(f.name).unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return SeparationResult(np.zeros((0, 0)), None, output_rate, n_chunks=stitcher.n_chunks, files=written)


def _checked(block, path):
    _check_finite(block, str(path))
    return _to_mono(block)


def audio_files(inputs):
    """Expands files and folders (recursively: every file ``soundfile`` can read) into a sorted list of files.

    A ``MIXTURE,ENROLLMENT`` argument stays as it is. Missing paths are kept
    (they are reported when separated).

    Example
    -------
    >>> audio_files([]) == []
    True
    """
    extensions = {f".{ext.lower()}" for ext in soundfile.available_formats()} | {".wav", ".flac", ".ogg", ".mp3"}
    out = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions))
        else:
            out.append(str(item))
    return out


def read_enroll_list(path):
    """``{mixture path or stem: enrollment path}`` from ``mixture<TAB or comma>enrollment`` lines."""
    mapping = {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    delimiter = "\t" if "\t" in text else ","
    for row in csv.reader(text.splitlines(), delimiter=delimiter):
        if len(row) >= 2 and row[0].strip() and not row[0].startswith("#"):
            mapping[row[0].strip()] = row[1].strip()
    return mapping


def separate_files(model, inputs, output_folder, enroll=None, enroll_list=None, progress=False, **options):
    """Separates files and folders; an input that fails is reported and the others are still processed.

    Arguments
    ---------
    model : Model
    inputs : list of str
        Files, folders, or ``MIXTURE,ENROLLMENT`` pairs.
    output_folder : str
    enroll : str, optional
        One enrollment file for every input.
    enroll_list : str or dict, optional
        Per-input enrollments (:func:`read_enroll_list`), keyed by path or stem.
    progress : bool
    **options
        Passed to :func:`separate_file`.

    Returns
    -------
    dict
        ``{input: SeparationResult or the error message}``.
    """
    mapping = read_enroll_list(enroll_list) if isinstance(enroll_list, str | os.PathLike) else dict(enroll_list or {})
    results = {}
    paths = audio_files(inputs)
    files_bar = None
    if progress and len(paths) > 1:
        from tqdm import tqdm

        files_bar = tqdm(total=len(paths), desc="files", unit="file")
    for item in paths:
        path, item_enroll = item, enroll
        if "," in item and not Path(item).exists():
            path, item_enroll = item.split(",", 1)
        item_enroll = mapping.get(path, mapping.get(Path(path).stem, item_enroll))
        try:
            results[item] = separate_file(model, path, output_folder, enroll=item_enroll, progress=progress, **options)
        except (AudioInputError, OSError, RuntimeError, ValueError) as err:
            results[item] = f"{err}"
            logger.error("%s: %s", item, err)
        if files_bar is not None:
            files_bar.update(1)
    if files_bar is not None:
        files_bar.close()
    return results


# --------------------------------------------------------------------------- command line
def build_parser():
    """The ``separate`` command line."""
    parser = argparse.ArgumentParser(
        prog="separate",
        description="Separate recordings of any length, rate and number of channels with a trained run or an "
        "exported model folder.",
    )
    parser.add_argument("model", help="a trained run's output folder, or a folder written by `export`")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (MIXTURE,ENROLLMENT for extraction models)")
    parser.add_argument("--output_folder", default="separated", help="where <name>_s1.wav, ... go (default: separated)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--output_rate", type=int, default=None, help="output sample rate (default: the input's)")
    parser.add_argument("--chunk_seconds", type=float, default=CHUNK_SECONDS, help=f"default {CHUNK_SECONDS}")
    parser.add_argument("--overlap_seconds", type=float, default=OVERLAP_SECONDS, help=f"default {OVERLAP_SECONDS}")
    parser.add_argument("--batch_size", type=int, default=1, help="chunks separated at once (default 1)")
    parser.add_argument("--format", default="wav", dest="audio_format", help="output format: wav (default), flac, ...")
    parser.add_argument("--subtype", default=None, help="soundfile subtype (default FLOAT for wav, PCM_24 otherwise)")
    parser.add_argument("--enroll", default=None, help="enrollment utterance for every input (extraction models)")
    parser.add_argument("--enroll_list", default=None, help="file of `mixture<TAB>enrollment` lines")
    parser.add_argument("--brain", default=None, help="the run's Brain class, e.g. modules.nass.NASSBrain")
    parser.add_argument("--checkpoint", default=None, help="a CKPT+... folder (default: the run's best)")
    parser.add_argument("--noprogressbar", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    """Entry point of ``separate`` / ``python -m modules.inference``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load_model(args.model, device=device, brain_class=args.brain, checkpoint=args.checkpoint)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = separate_files(
        model,
        args.inputs,
        args.output_folder,
        enroll=args.enroll,
        enroll_list=args.enroll_list,
        progress=not args.noprogressbar,
        output_rate=args.output_rate,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
        batch_size=args.batch_size,
        audio_format=args.audio_format,
        subtype=args.subtype,
    )
    failed = 0
    for item, result in results.items():
        if isinstance(result, SeparationResult):
            print(f"{item} -> {', '.join(result.files)}")
        else:
            failed += 1
            print(f"error: {item}: {result}", file=sys.stderr)
    if not results:
        print("error: no audio files found in the inputs", file=sys.stderr)
        return 2
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
