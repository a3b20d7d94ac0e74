"""Frozen SSL teachers (HuBERT, WavLM, wav2vec 2.0 base) built locally, with the paper's layer taps.

The context-aware group stage (arXiv:2503.12589, section
II-B) trains the context extractor to predict representations of the clean
sources taken from chosen layers of an SSL model:

=========  =============================  ================  ==============
tap        what the paper calls it        HuBERT / WavLM    wav2vec 2.0
=========  =============================  ================  ==============
``mel``    Mel-spectrogram-like           CNN output (7th   CNN output
                                          of 7 CNN layers)
``phoneme`` phoneme representation        transformer 11    transformer 6
``word``   word representation            transformer 9     transformer 8
=========  =============================  ================  ==============

(:data:`PAPER_LAYERS`; "hybrid" is the three taps plus the signal SI-SDR, see
:mod:`modules.context_aware`). Layers are numbered from 1 as in the paper:
transformer layer ``k`` is the output of the ``k``-th of the 12 transformer
layers, index ``k - 1`` of torchaudio's ``Wav2Vec2Model.extract_features``
(HuggingFace's ``hidden_states[k]``); the CNN tap is
``model.feature_extractor(x, lengths)``, the 512-dimensional output of the last
convolution, before the feature projection.

Weights come only from a local file (:func:`load_ssl_checkpoint`), never from
the network (``torchaudio.pipelines.*.get_model()`` downloads and is never
called). Two formats are read:

* **torchaudio** pipeline checkpoints: the files behind
  ``torchaudio.pipelines.HUBERT_BASE`` / ``WAVLM_BASE`` / ``WAV2VEC2_BASE``
  (``hubert_fairseq_base_ls960.pth``, ``wavlm_base.pth``,
  ``wav2vec2_fairseq_base_ls960.pth`` from ``https://download.pytorch.org/torchaudio/models/``),
  plain state dicts of the models built by ``torchaudio.models.hubert_base()``,
  ``wavlm_base()`` and ``wav2vec2_base()``;
* **HuggingFace** ``pytorch_model.bin`` (or a ``.safetensors`` file, read with
  ``safetensors`` when installed) of ``facebook/hubert-base-ls960``,
  ``microsoft/wavlm-base`` or ``facebook/wav2vec2-base``, converted by
  :func:`convert_huggingface_state_dict` with the module correspondence of
  ``torchaudio.models.wav2vec2.utils.import_huggingface_model`` (without
  needing ``transformers``).

Fairseq ``.pt`` checkpoints are not read: convert them first (torchaudio's
``import_fairseq_model``) or use the torchaudio files above, which are the
fairseq weights converted.

The teacher (:class:`SSLTeacher`) is frozen: no parameter requires a gradient,
it stays in eval mode whatever ``train()`` is called with (dropout and layer
drop off), and its forward runs under ``torch.no_grad``. The recipes also list
it in ``frozen_modules``, so it is neither optimised nor checkpointed; it is
loaded from its checkpoint every time the recipe starts.

Waveforms are fed as they are (no normalisation): torchaudio's bundles of the
three base models have ``_normalize_waveform=False`` and fairseq's base configs
``normalize: false``. The models expect 16 kHz audio.
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
import torchaudio
from torchaudio.models.wav2vec2.utils.import_huggingface import transform_wavlm_encoder_state

logger = logging.getLogger(__name__)

__all__ = [
    "PAPER_LAYERS",
    "SSL_MODELS",
    "SSL_SAMPLE_RATE",
    "NoTeacher",
    "SSLTeacher",
    "build_ssl_model",
    "build_teacher",
    "convert_huggingface_state_dict",
    "detect_checkpoint_format",
    "load_ssl_checkpoint",
    "ssl_frame_lengths",
    "tap_dims",
]

#: Sample rate the SSL models were trained at.
SSL_SAMPLE_RATE = 16000
#: The three SSL models of the paper (Table I) and their torchaudio builders (full size).
SSL_MODELS = {
    "hubert": torchaudio.models.hubert_base,
    "wavlm": torchaudio.models.wavlm_base,
    "wav2vec2": torchaudio.models.wav2vec2_base,
}
#: The paper's layer for each tap (section II-B): "cnn" or a 1-based transformer layer.
PAPER_LAYERS = {
    "hubert": {"mel": "cnn", "phoneme": 11, "word": 9},
    "wavlm": {"mel": "cnn", "phoneme": 11, "word": 9},
    "wav2vec2": {"mel": "cnn", "phoneme": 6, "word": 8},
}
#: CNN of the three base models: (channels, kernel, stride) per layer; 400 samples of receptive field, hop 320.
_CNN = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
#: A tiny model of the same family (same CNN kernels and strides, so the same 20 ms frame grid; 12
#: transformer layers, so every tap of the paper exists) for tests. Random weights: never a teacher of a real run.
_TINY = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [(16, k, s) for _, k, s in _CNN],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 16,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 8,
    "encoder_pos_conv_groups": 2,
    "encoder_num_layers": 12,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 32,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}
SIZES = ("base", "tiny")
#: The two names of the weight-normalised positional convolution (old ``weight_norm``, ``parametrizations``).
_HF_WEIGHT_NORM = {
    "pos_conv_embed.conv.weight_g": "pos_conv_embed.conv.parametrizations.weight.original0",
    "pos_conv_embed.conv.weight_v": "pos_conv_embed.conv.parametrizations.weight.original1",
}
_HF_PREFIXES = ("wav2vec2.", "hubert.", "wavlm.")
#: HuggingFace keys outside the backbone (pretraining heads, the mask embedding, CTC heads): not imported.
_HF_IGNORED = ("masked_spec_embed", "quantizer.", "project_hid.", "project_q.", "label_embeddings_concat",
               "final_proj.", "lm_head.", "dropout_features")  # fmt: skip


def build_ssl_model(name, size="base"):
    """An SSL model of the paper with random weights, in eval mode: torchaudio's ``Wav2Vec2Model``.

    Arguments
    ---------
    name : str
        ``hubert``, ``wavlm`` or ``wav2vec2`` (:data:`SSL_MODELS`).
    size : str
        ``base`` (``torchaudio.models.hubert_base()`` etc., 94.4M parameters) or
        ``tiny`` (the same CNN grid and 12 transformer layers of width 16, for tests).

    Returns
    -------
    torchaudio.models.Wav2Vec2Model

    Example
    -------
    >>> model = build_ssl_model("wavlm", "tiny")
    >>> len(model.extract_features(torch.randn(1, 16000))[0])  # 12 transformer layers
    12
    """
    if name not in SSL_MODELS:
        raise ValueError(f"unknown SSL model {name!r}: one of {sorted(SSL_MODELS)}")
    if size not in SIZES:
        raise ValueError(f"unknown SSL model size {size!r}: one of {SIZES}")
    if size == "base":
        model = SSL_MODELS[name]()
    elif name == "wavlm":
        model = torchaudio.models.wavlm_model(**_TINY, encoder_num_buckets=32, encoder_max_distance=80)
    else:
        model = torchaudio.models.wav2vec2_model(**_TINY)
    return model.eval()


def _unwrap_checkpoint(state):
    for key in ("state_dict", "model"):  # a checkpoint dict around the weights
        if (
            isinstance(state, dict)
            and isinstance(state.get(key), dict)
            and not any(torch.is_tensor(v) for v in state.values())
        ):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError("not a state dict of tensors")
    return state


def _read_weights(path):
    if str(path).endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(f"{path}: reading .safetensors needs the safetensors package") from err
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def detect_checkpoint_format(state):
    """``"torchaudio"``, ``"huggingface"`` or ``"fairseq"`` from the key names of a state dict.

    Example
    -------
    >>> detect_checkpoint_format({"encoder.transformer.layer_norm.weight": torch.ones(1)})
    'torchaudio'
    >>> detect_checkpoint_format({"hubert.encoder.layers.0.attention.k_proj.weight": torch.ones(1)})
    'huggingface'
    """
    keys = list(state)
    if any(k.startswith("encoder.transformer.") for k in keys):
        return "torchaudio"
    if any(".self_attn." in k or k.startswith("post_extract_proj.") for k in keys):
        return "fairseq"
    stripped = [k.split(".", 1)[1] if k.startswith(_HF_PREFIXES) else k for k in keys]
    if any(k.startswith(("encoder.layers.", "feature_projection.")) for k in stripped):
        return "huggingface"
    raise ValueError(f"unrecognised SSL checkpoint (first keys: {keys[:4]})")


def convert_huggingface_state_dict(state, wavlm=False):
    """Renames a HuggingFace wav2vec2 / HuBERT / WavLM state dict to torchaudio's ``Wav2Vec2Model`` keys.

    The module correspondence is that of torchaudio's ``import_huggingface_model``:
    ``feature_extractor`` -> ``feature_extractor``, ``feature_projection`` ->
    ``encoder.feature_projection``, ``encoder`` -> ``encoder.transformer``; for
    WavLM the separate ``q/k/v_proj`` of each layer are concatenated into
    ``torch.nn.MultiheadAttention``'s ``in_proj`` (torchaudio's
    ``transform_wavlm_encoder_state``). A model prefix (``wav2vec2.``,
    ``hubert.``, ``wavlm.``) is removed, pretraining and CTC heads and the mask
    embedding are dropped, and the weight-normalised positional convolution is
    read under both its names (``weight_g``/``weight_v`` or
    ``parametrizations.weight.original0/1``).

    Arguments
    ---------
    state : dict of str -> torch.Tensor
    wavlm : bool
        Whether the checkpoint is a WavLM model.

    Returns
    -------
    dict of str -> torch.Tensor

    Example
    -------
    >>> hf = {"hubert.feature_projection.projection.bias": torch.zeros(2), "hubert.masked_spec_embed": torch.zeros(2),
    ...       "hubert.encoder.pos_conv_embed.conv.weight_g": torch.ones(1)}
    >>> for key in sorted(convert_huggingface_state_dict(hf)):
    ...     print(key)
    encoder.feature_projection.projection.bias
    encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0
    """
    converted, transformer = {}, {}
    for original, value in state.items():
        key = original.split(".", 1)[1] if original.startswith(_HF_PREFIXES) else original
        if key.startswith(_HF_IGNORED):
            continue
        for old, new in _HF_WEIGHT_NORM.items():
            key = key.replace(old, new)
        if key.startswith("feature_extractor."):
            converted[key] = value
        elif key.startswith("feature_projection."):
            converted["encoder." + key] = value
        elif key.startswith("encoder."):
            transformer[key[len("encoder.") :]] = value
        else:
            raise KeyError(f"unexpected key in a HuggingFace SSL checkpoint: {original}")
    if wavlm:
        n_layers = len({k.split(".")[1] for k in transformer if k.startswith("layers.")})
        transform_wavlm_encoder_state(transformer, n_layers)
    converted.update({"encoder.transformer." + k: v for k, v in transformer.items()})
    return converted


def load_ssl_checkpoint(model, path, fmt="auto", wavlm=None):
    """Loads local SSL weights into ``model`` (strictly: every key must match).

    Arguments
    ---------
    model : torchaudio.models.Wav2Vec2Model
        Built by :func:`build_ssl_model` (same architecture as the checkpoint).
    path : str
        A torchaudio pipeline ``.pth`` file or a HuggingFace ``pytorch_model.bin``
        / ``.safetensors`` (see the module docstring). Never downloaded.
    fmt : str
        ``auto`` (from the key names), ``torchaudio`` or ``huggingface``.
    wavlm : bool, optional
        Whether a HuggingFace checkpoint is a WavLM (default: whether ``model`` is one).

    Returns
    -------
    torchaudio.models.Wav2Vec2Model
        ``model``, in eval mode.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"SSL checkpoint not found: {path!r}. Give the local file of the model (torchaudio's "
            "hubert_fairseq_base_ls960.pth / wavlm_base.pth / wav2vec2_fairseq_base_ls960.pth, or a HuggingFace "
            "pytorch_model.bin); weights are never downloaded"
        )
    try:
        state = _unwrap_checkpoint(_read_weights(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    found = detect_checkpoint_format(state) if fmt == "auto" else fmt
    if found == "huggingface":
        if wavlm is None:
            wavlm = any("gru_rel_pos" in k for k in model.state_dict())
        state = convert_huggingface_state_dict(state, wavlm=wavlm)
    elif found != "torchaudio":
        raise ValueError(
            f"{path}: a {found} checkpoint; convert it to torchaudio's format first "
            "(torchaudio.models.wav2vec2.utils.import_fairseq_model), or use torchaudio's pipeline file"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the model (wrong SSL model or size?): {err}") from err
    return model.eval()


def ssl_frame_lengths(n_samples, model=None):
    """Frames of the SSL models' CNN for ``n_samples`` samples: ``floor((n - 400) / 320) + 1`` (0 below 400).

    The CNN (kernels 10, 3, 3, 3, 3, 2, 2; strides 5, 2, 2, 2, 2, 2, 2) has a
    receptive field of 400 samples (25 ms) and a hop of 320 (20 ms): frame ``t``
    sees samples ``[320 t, 320 t + 400)``.

    Arguments
    ---------
    n_samples : torch.Tensor or int
    model : torchaudio.models.Wav2Vec2Model, optional
        When given, its own CNN configuration is used.

    Returns
    -------
    torch.Tensor or int

    Example
    -------
    >>> ssl_frame_lengths(torch.tensor([399, 400, 719, 720, 16000]))
    tensor([ 0,  1,  1,  2, 49])
    """
    layers = _CNN if model is None else [(c.conv.out_channels, c.kernel_size, c.stride) for c in _conv_blocks(model)]
    frames = n_samples
    for _, kernel, stride in layers:
        if torch.is_tensor(frames):
            frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
            frames = frames.clamp(min=0)
        else:
            frames = max((frames - kernel) // stride + 1, 0)
    return frames


def _conv_blocks(model):
    return list(model.feature_extractor.conv_layers)


def tap_dims(teacher):
    """``{tap: feature dimension}`` of a teacher (what the predictor heads must output).

    Example
    -------
    >>> tap_dims(SSLTeacher(build_ssl_model("hubert", "tiny"), {"mel": "cnn", "word": 9}))
    {'mel': 16, 'word': 16}
    """
    return dict(teacher.tap_dims)


class SSLTeacher(torch.nn.Module):
    """A frozen SSL model returning the representations of chosen layers.

    Arguments
    ---------
    model : torchaudio.models.Wav2Vec2Model
        With its weights loaded (:func:`build_teacher` does both).
    layers : dict of str -> str or int
        ``{tap: "cnn" or a 1-based transformer layer}``, e.g. ``PAPER_LAYERS["hubert"]``.
    identity : str
        A string naming the weights (model, size, checkpoint), for the teacher-target cache.

    Example
    -------
    >>> teacher = SSLTeacher(build_ssl_model("wav2vec2", "tiny"), PAPER_LAYERS["wav2vec2"])
    >>> out = teacher(torch.randn(2, 16000))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'mel': (2, 49, 16), 'phoneme': (2, 49, 16), 'word': (2, 49, 16)}
    >>> teacher.train().training, any(p.requires_grad for p in teacher.parameters())
    (False, False)
    """

    def __init__(self, model, layers, identity=""):
        super().__init__()
        self.model = model
        self.layers = dict(layers)
        n_layers = len(model.encoder.transformer.layers)
        for tap, layer in self.layers.items():
            if layer != "cnn" and not (isinstance(layer, int) and 1 <= layer <= n_layers):
                raise ValueError(f"tap {tap!r}: layer must be 'cnn' or 1..{n_layers} (1-based), got {layer!r}")
        self.max_layer = max([layer for layer in self.layers.values() if layer != "cnn"], default=0)
        cnn_dim = _conv_blocks(model)[-1].conv.out_channels
        embed_dim = model.encoder.feature_projection.projection.out_features
        self.tap_dims = {tap: cnn_dim if layer == "cnn" else embed_dim for tap, layer in self.layers.items()}
        self.identity = identity
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Stays in eval mode (dropout and layer drop off) whatever ``mode`` is."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, lengths=None):
        """Representations of the taps.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at 16 kHz.
        lengths : torch.Tensor, optional
            ``[batch]`` valid samples (padded items are masked in attention).
            Note that the CNN's group normalisation of the base models spans the
            whole (padded) input, so an item padded in a batch does not get
            exactly its unpadded representation: pass unpadded signals for exact targets.

        Returns
        -------
        dict of str -> torch.Tensor
            ``{tap: [batch, frames, dim]}``, float32, 50 frames per second.
        """
        wavs = wavs.float()
        features, frame_lengths = self.model.feature_extractor(wavs, lengths)
        outputs = {}
        if self.max_layer:
            hidden = self.model.encoder.extract_features(features, frame_lengths, num_layers=self.max_layer)
        for tap, layer in self.layers.items():
            outputs[tap] = features if layer == "cnn" else hidden[layer - 1]
        return outputs


class NoTeacher(torch.nn.Module):
    """Stands for the teacher of a group stage that needs none (the ``signal`` target): no taps, no weights."""

    def __init__(self):
        super().__init__()
        self.layers, self.tap_dims, self.identity = {}, {}, "none"

    def forward(self, wavs, lengths=None):
        """No representations."""
        return {}


def _identity(name, size, path):
    stat = os.stat(path)
    digest = hashlib.sha1(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{name}-{size}-{digest}"


def build_teacher(model, checkpoint, taps, layers=None, size="base", checkpoint_format="auto"):
    """The frozen teacher of a group stage, its weights loaded from a local file.

    Arguments
    ---------
    model : str
        ``hubert``, ``wavlm`` or ``wav2vec2``.
    checkpoint : str or None
        Local weights (:func:`load_ssl_checkpoint`); required unless ``taps`` is empty.
    taps : sequence of str
        The contextual targets needed (``mel``, ``phoneme``, ``word``); empty for a
        signal-only group stage, which gets a :class:`NoTeacher`.
    layers : dict, optional
        ``{tap: "cnn" or 1-based layer}`` overriding :data:`PAPER_LAYERS` ``[model]``.
    size : str
        ``base`` (the paper) or ``tiny`` (test teachers).
    checkpoint_format : str
        ``auto``, ``torchaudio`` or ``huggingface``.

    Returns
    -------
    SSLTeacher or NoTeacher
    """
    taps = list(taps)
    if not taps:
        return NoTeacher()
    if model not in PAPER_LAYERS:
        raise ValueError(f"unknown SSL model {model!r}: one of {sorted(PAPER_LAYERS)}")
    chosen = {**PAPER_LAYERS[model], **(dict(layers) if layers else {})}
    unknown = [tap for tap in taps if tap not in chosen]
    if unknown:
        raise ValueError(f"no layer for tap(s) {unknown}: give them in ssl_layers")
    network = load_ssl_checkpoint(build_ssl_model(model, size), checkpoint, fmt=checkpoint_format)
    teacher = SSLTeacher(network, {tap: chosen[tap] for tap in taps}, identity=_identity(model, size, checkpoint))
    logger.info("SSL teacher %s (%s) from %s, layers %s", model, size, checkpoint, teacher.layers)
    return teacher
