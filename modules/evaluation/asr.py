"""Speech recognisers for the reference-free WER of separated speech; nothing is downloaded.

Two backends, chosen by a spec string (:func:`make_asr`):

``pocketsphinx``
    CMU PocketSphinx with the US English acoustic model, language model and
    dictionary that ship inside its PyPI package: runs anywhere, offline. Its
    WER on REAL-M is far above that of the papers' neural recognisers and is
    not comparable with their numbers; it ranks separators only.
``speechbrain:<folder>``
    A SpeechBrain ``EncoderDecoderASR`` model folder on the local disk
    (``hyperparams.yaml`` and its checkpoint files, e.g. a copy of
    ``speechbrain/asr-transformer-transformerlm-librispeech`` fetched by the
    user), the kind of recogniser the papers use. Loaded with
    ``EncoderDecoderASR.from_hparams(source=<folder>)``; a path that is not a
    local folder is refused, so no model is fetched from a hub.

Both take a signal at any rate: it is resampled (:func:`modules.audio.resample`)
to the recogniser's rate (16 kHz for PocketSphinx's model; the model's
``sample_rate`` hyperparameter, else 16 kHz, for SpeechBrain). REAL-M is 8 kHz:
its band stays 0-4 kHz after resampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules.audio import resample

__all__ = ["ASR", "PocketSphinxASR", "SpeechBrainASR", "make_asr"]


class ASR:
    """A recogniser: ``transcribe(signal, sample_rate) -> str``; ``name`` labels result columns."""

    name = "asr"
    sample_rate = 16000

    def transcribe(self, signal, sample_rate):
        """The transcript of a mono signal (``[T]`` array) at ``sample_rate``."""
        raise NotImplementedError


class PocketSphinxASR(ASR):
    """PocketSphinx with the English model inside its PyPI package (offline).

    Example
    -------
    >>> asr = PocketSphinxASR()
    >>> text = asr.transcribe(0.1 * np.sin(np.arange(8000) / 3), 8000)
    >>> isinstance(text, str)
    True
    """

    name = "pocketsphinx"

    def __init__(self, **config):
        from pocketsphinx import Decoder

        self.decoder = Decoder(loglevel="FATAL", samprate=self.sample_rate, **config)

    def transcribe(self, signal, sample_rate):
        """The text recognised in ``signal`` (resampled to the recogniser's rate)."""
        audio = resample(np.asarray(signal, dtype=np.float64), sample_rate, self.sample_rate)
        peak = np.abs(audio).max() if audio.size else 0.0
        if peak > 1:  # int16 input: keep the shape of a louder-than-full-scale separation, not its clipping
            audio = audio / peak
        pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class SpeechBrainASR(ASR):
    """A local SpeechBrain ``EncoderDecoderASR`` folder (never downloaded).

    Arguments
    ---------
    folder : str
        A folder with ``hyperparams.yaml`` (and the files its pretrainer names).
    device : str
    """

    def __init__(self, folder, device="cpu"):
        folder = Path(folder)
        if not (folder / "hyperparams.yaml").is_file():
            raise FileNotFoundError(
                f"{folder}: not a local SpeechBrain ASR folder (no hyperparams.yaml); download the model yourself "
                "and give its folder"
            )
        from speechbrain.inference.ASR import EncoderDecoderASR

        self.model = EncoderDecoderASR.from_hparams(source=str(folder), run_opts={"device": str(device)})
        self.sample_rate = int(getattr(self.model.hparams, "sample_rate", 16000))
        self.name = f"speechbrain_{folder.name}"

    def transcribe(self, signal, sample_rate):
        """The text recognised in ``signal`` (resampled to the recogniser's rate)."""
        audio = resample(np.asarray(signal, dtype=np.float64), sample_rate, self.sample_rate)
        wavs = torch.as_tensor(audio, dtype=torch.float32)[None]
        words, _ = self.model.transcribe_batch(wavs, torch.ones(1))
        return words[0] if isinstance(words[0], str) else " ".join(words[0])


def make_asr(spec, device="cpu"):
    """``pocketsphinx`` or ``speechbrain:<folder>`` -> an :class:`ASR`."""
    if spec == "pocketsphinx":
        return PocketSphinxASR()
    if spec.startswith("speechbrain:"):
        return SpeechBrainASR(spec.split(":", 1)[1], device=device)
    raise ValueError(f"unknown ASR backend {spec!r}: use pocketsphinx or speechbrain:<local folder>")
