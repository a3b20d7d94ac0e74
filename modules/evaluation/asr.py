"""Speech recognisers for the reference-free WER of separated speech.

Recognisers are named by spec strings (:func:`make_asr`, ``--asr`` of
:mod:`modules.evaluation.realm`); several may be given, each gives its own WER
column, named after it:

``pocketsphinx``
    CMU PocketSphinx with the US English acoustic model, language model and
    dictionary that ship inside its PyPI package: runs anywhere, offline (the
    fallback). Its WER on REAL-M is far above that of the papers' neural
    recognisers and is not comparable with their numbers; it ranks separators
    only.
``[NAME=][INTERFACE:]SOURCE``
    A SpeechBrain ASR model: ``SOURCE`` is a local model folder (its
    ``hyperparams.yaml`` and the files its ``pretrainer`` names, e.g. a model
    card downloaded with ``huggingface-cli download <id> --local-dir <folder>``)
    or a Hugging Face hub id such as
    ``speechbrain/asr-transformer-transformerlm-librispeech`` (fetched into the
    Hugging Face cache where the machine has internet). It is loaded the way a
    SpeechBrain user loads it, ``<Interface>.from_hparams(source=SOURCE,
    savedir=...)`` of :mod:`speechbrain.inference.ASR`, with ``INTERFACE`` one
    of

    * ``encoder``: ``EncoderASR`` (CTC models, e.g. wav2vec 2.0 + CTC);
    * ``encoder_decoder``: ``EncoderDecoderASR`` (attention encoder-decoders,
      e.g. the LibriSpeech transformer with its transformer LM);
    * ``whisper``: ``WhisperASR``;
    * ``speechbrain`` or nothing: read from the model's ``hyperparams.yaml``
      (:func:`detect_interface`): a ``whisper`` key is ``whisper``, a
      ``decoding_function`` key ``encoder``, a ``decoder`` module
      ``encoder_decoder``.

    ``NAME`` names the columns (default: the folder's or the hub id's last
    part, e.g. ``asr-transformer-transformerlm-librispeech``).

Every recogniser takes a signal at any rate: it is resampled
(:func:`modules.audio.resample`) to the recogniser's rate (16 kHz for
PocketSphinx's model; the model's ``sample_rate`` hyperparameter, else 16 kHz,
for SpeechBrain). REAL-M is 8 kHz: its band stays 0-4 kHz after resampling.

A hub id that cannot be fetched (no internet, ``HF_HUB_OFFLINE=1``, no cached
copy) raises :class:`ASRLoadError` with one line naming the id and how to give
a local folder instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from modules.audio import resample

__all__ = [
    "ASR",
    "INTERFACES",
    "ASRLoadError",
    "PocketSphinxASR",
    "SpeechBrainASR",
    "detect_interface",
    "make_asr",
    "parse_asr_spec",
]

#: Spec prefix -> class name in :mod:`speechbrain.inference.ASR`.
INTERFACES = {"encoder": "EncoderASR", "encoder_decoder": "EncoderDecoderASR", "whisper": "WhisperASR"}
_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class ASRLoadError(ValueError):
    """A recogniser that cannot be loaded (bad spec, no model, hub unreachable); the message is one line."""


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

    def __init__(self, name="pocketsphinx", **config):
        from pocketsphinx import Decoder

        self.name = name
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


def parse_asr_spec(spec):
    """``(name, interface, source)`` of an ``--asr`` spec (see the module docstring).

    ``interface`` is ``"pocketsphinx"``, a key of :data:`INTERFACES`, or ``None``
    (read from the model's ``hyperparams.yaml``); ``source`` is ``None`` for
    PocketSphinx.

    Example
    -------
    >>> parse_asr_spec("e2e=encoder_decoder:speechbrain/asr-transformer-transformerlm-librispeech")
    ('e2e', 'encoder_decoder', 'speechbrain/asr-transformer-transformerlm-librispeech')
    >>> parse_asr_spec("speechbrain:/models/asr-wav2vec2-librispeech/")
    ('asr-wav2vec2-librispeech', None, '/models/asr-wav2vec2-librispeech/')
    >>> parse_asr_spec("pocketsphinx")
    ('pocketsphinx', 'pocketsphinx', None)
    """
    text = str(spec).strip()
    name = None
    head, sep, rest = text.partition("=")
    if sep and _NAME.match(head):
        name, text = head, rest.strip()
    if text == "pocketsphinx":
        return name or "pocketsphinx", "pocketsphinx", None
    interface = None
    head, sep, rest = text.partition(":")
    if sep and head in (*INTERFACES, "speechbrain"):
        interface, text = (None if head == "speechbrain" else head), rest.strip()
    elif sep and re.fullmatch(r"[a-z_]+", head) and not Path(text).exists():
        raise ASRLoadError(
            f"--asr {spec!r}: unknown interface {head!r}; use pocketsphinx or [NAME=][INTERFACE:]SOURCE with INTERFACE "
            f"one of {', '.join(INTERFACES)} (or speechbrain / nothing to read it from hyperparams.yaml)"
        )
    if not text:
        raise ASRLoadError(f"--asr {spec!r}: no model folder or hub id")
    name = name or Path(text.rstrip("/\\")).name
    if not _NAME.match(name):
        raise ASRLoadError(f"--asr {spec!r}: {name!r} cannot name a result column; give NAME=... first")
    return name, interface, text


def _modules_keys(text):
    """The keys directly under the top-level ``modules:`` block of a yaml text."""
    match = re.search(r"^modules:[ \t]*(?:#.*)?\n((?:(?:[ \t]+.*|[ \t]*)\n?)*)", text, flags=re.M)
    if not match:
        return set()
    lines = [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return set()
    indent = len(lines[0]) - len(lines[0].lstrip())
    return {m.group(1) for line in lines if (m := re.match(rf"^ {{{indent}}}([A-Za-z_]\w*)\s*:", line))}


def detect_interface(text):
    """The :data:`INTERFACES` key a ``hyperparams.yaml`` text is written for, or ``None`` if it cannot tell.

    ``WhisperASR`` needs a ``whisper`` module, ``EncoderASR`` a
    ``decoding_function`` hyperparameter and ``EncoderDecoderASR`` a
    ``decoder`` module (their ``HPARAMS_NEEDED`` / ``MODULES_NEEDED``).

    Example
    -------
    >>> detect_interface("decoding_function: !name:speechbrain.decoders.ctc_greedy_decode\\nmodules:\\n  encoder: 1\\n")
    'encoder'
    >>> detect_interface("tokenizer: 1\\nmodules:\\n    encoder: !ref <e>\\n    decoder: !ref <d>\\n")
    'encoder_decoder'
    >>> detect_interface("modules:\\n  whisper: 1\\n  decoder: 2\\n"), detect_interface("x: 1\\n")
    ('whisper', None)
    """
    keys = set(re.findall(r"^([A-Za-z_]\w*)[ \t]*:", text, flags=re.M))
    modules = _modules_keys(text)
    if "whisper" in keys or "whisper" in modules:
        return "whisper"
    if "decoding_function" in keys:
        return "encoder"
    if "decoder" in modules:
        return "encoder_decoder"
    return None


def _offline():
    """No hub access: ``HF_HUB_OFFLINE`` set, or (without a proxy) the hub's host name does not resolve.

    The second check spares a machine without internet huggingface_hub's retries (half a minute of
    warnings) before the same answer: the cached copy, if any, is used either way.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # the proxy may reach the hub where this machine's resolver cannot
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def _hub_error(source, err):
    return ASRLoadError(
        f"--asr {source}: not a local folder, and the hub id {source} could not be fetched "
        f"({type(err).__name__}; no internet, HF_HUB_OFFLINE set or no cached copy): on a machine with internet run "
        f"`huggingface-cli download {source} --local-dir <folder>`, copy the folder here and pass --asr <folder>"
    )


def _is_fetch_error(err):
    """Errors of fetching (network, missing cache entries) rather than of the model itself."""
    module = type(err).__module__ or ""
    return isinstance(err, (OSError, ConnectionError)) or module.startswith(("huggingface_hub", "requests", "urllib3"))


class SpeechBrainASR(ASR):
    """A SpeechBrain ASR model (``EncoderASR``, ``EncoderDecoderASR`` or ``WhisperASR``) from a folder or hub id.

    Arguments
    ---------
    source : str
        A local model folder (with ``hyperparams.yaml``) or a hub id.
    interface : str, optional
        A key of :data:`INTERFACES`; ``None`` reads it from ``hyperparams.yaml``.
    name : str, optional
        Column name (default: the last part of ``source``).
    device : str
    savedir : str, optional
        Where SpeechBrain links or copies the model files (``from_hparams``'s
        ``savedir``); ``None``: a local folder is used in place and a hub
        model stays in the Hugging Face cache.
    """

    def __init__(self, source, interface=None, name=None, device="cpu", savedir=None):
        from speechbrain.utils.fetching import FetchConfig, FetchFrom, FetchSource, fetch

        source = str(source)
        local = Path(source)
        if local.is_dir():
            if not (local / "hyperparams.yaml").is_file():
                raise ASRLoadError(f"--asr {source}: not a SpeechBrain ASR folder (no hyperparams.yaml)")
            where, hub = str(local.resolve()), False
        elif _HUB_ID.match(source) and not local.exists():
            where, hub = FetchSource(FetchFrom.HUGGING_FACE, source), True
        else:
            raise ASRLoadError(
                f"--asr {source}: neither a local SpeechBrain ASR folder nor a hub id (owner/name); download the "
                "model and give its folder"
            )
        config = FetchConfig(allow_network=not (hub and _offline()))
        if interface is None:
            try:
                text = Path(fetch("hyperparams.yaml", source=where, savedir=savedir, fetch_config=config)).read_text()
            except Exception as err:
                if hub and (_is_fetch_error(err) or isinstance(err, ValueError)):
                    raise _hub_error(source, err) from err
                raise
            interface = detect_interface(text)
            if interface is None:
                raise ASRLoadError(
                    f"--asr {source}: cannot tell the SpeechBrain interface from its hyperparams.yaml (no whisper, "
                    "decoding_function or decoder module): prefix the source with encoder:, encoder_decoder: or "
                    "whisper:"
                )
        if interface not in INTERFACES:
            raise ASRLoadError(f"--asr {source}: unknown interface {interface!r} (use one of {', '.join(INTERFACES)})")
        import speechbrain.inference.ASR as sb_asr

        cls = getattr(sb_asr, INTERFACES[interface])
        try:
            self.model = cls.from_hparams(
                source=where, savedir=savedir, run_opts={"device": str(device)}, fetch_config=config
            )
        except Exception as err:
            if hub and _is_fetch_error(err):
                raise _hub_error(source, err) from err
            if _is_fetch_error(err):  # a local card whose hyperparams.yaml names another hub model
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise ASRLoadError(
                    f"--asr {source}: loading failed ({type(err).__name__}: {first}); if its hyperparams.yaml names "
                    "another hub model (e.g. wav2vec2_hub:, a whisper source:), download that one too and point the "
                    "entry at its folder"
                ) from err
            if isinstance(err, (KeyError, AttributeError)) or str(err).startswith("Need "):  # HPARAMS/MODULES_NEEDED
                raise ASRLoadError(
                    f"--asr {source}: its hyperparams.yaml does not fit SpeechBrain's {INTERFACES[interface]} "
                    f"({type(err).__name__}: {err}); give the right interface prefix ({', '.join(INTERFACES)})"
                ) from err
            raise
        self.interface = interface
        self.source = source
        self.sample_rate = int(getattr(self.model.hparams, "sample_rate", 16000))
        self.name = name or Path(source.rstrip("/\\")).name

    def transcribe_tensor(self, wavs):
        """``transcribe_batch`` of the interface on a ``[B, T]`` batch at the model's rate (full lengths)."""
        words, _ = self.model.transcribe_batch(wavs, torch.ones(wavs.shape[0]))
        return [w if isinstance(w, str) else " ".join(w) for w in words]

    def transcribe(self, signal, sample_rate):
        """The text recognised in ``signal`` (resampled to the recogniser's rate)."""
        audio = resample(np.asarray(signal, dtype=np.float64), sample_rate, self.sample_rate)
        return self.transcribe_tensor(torch.as_tensor(audio, dtype=torch.float32)[None])[0]


def make_asr(spec, device="cpu", savedir=None):
    """An :class:`ASR` from a spec string: ``pocketsphinx`` or ``[NAME=][INTERFACE:]SOURCE`` (module docstring).

    ``savedir``: SpeechBrain's ``savedir`` is ``<savedir>/<name>`` (``None``: see :class:`SpeechBrainASR`).
    """
    name, interface, source = parse_asr_spec(spec)
    if interface == "pocketsphinx":
        return PocketSphinxASR(name=name)
    savedir = Path(savedir) / name if savedir else None  # one folder per recogniser: their files share names
    return SpeechBrainASR(source, interface=interface, name=name, device=device, savedir=savedir)
