"""Frozen SSL models (HuBERT, WavLM, wav2vec 2.0, UniSpeech-SAT): context-aware teachers and DIP comparison frontends.

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
layers, ``transformers``' ``hidden_states[k]`` (index ``k - 1`` of torchaudio's
``Wav2Vec2Model.extract_features``); the CNN tap is the output of the model's
``feature_extractor``, the 512-dimensional output of the last convolution,
before the feature projection (its layer norm and linear map).

Two loaders, one interface (:class:`SSLBackbone`: the CNN output and the hidden
states of a batch):

* **Hugging Face** (the recipes' default, :func:`load_hf_ssl`): a hub id
  (``facebook/hubert-base-ls960``, ``microsoft/wavlm-base-plus``, ...;
  :data:`HF_CHECKPOINTS`) or a local folder, loaded with SpeechBrain 1.1.2's
  ``speechbrain.integrations.huggingface`` (``HuBERT``, ``WavLM``,
  ``Wav2Vec2``; UniSpeech-SAT through ``Wav2Vec2``, whose ``AutoModel`` loads
  any of these types), frozen. A hub id is downloaded into ``save_path`` where
  the machine can reach the hub, read from there afterwards without going
  online, and otherwise refused with one line that names the id and how to pass
  a local folder instead (:func:`unreachable_message`). The input is
  normalised when the checkpoint's feature extractor says so
  (``do_normalize``: ``facebook/wav2vec2-base``), per item over its valid samples.
* **torchaudio** (:func:`load_ssl_checkpoint`): a local weights file, torchaudio's
  pipeline checkpoints (``hubert_fairseq_base_ls960.pth``, ``wavlm_base.pth``,
  ``wav2vec2_fairseq_base_ls960.pth`` from ``https://download.pytorch.org/torchaudio/models/``,
  plain state dicts of ``torchaudio.models.hubert_base()`` etc.) or a
  Hugging Face ``pytorch_model.bin`` / ``.safetensors`` of the base models,
  converted by :func:`convert_huggingface_state_dict` with the module
  correspondence of ``torchaudio.models.wav2vec2.utils.import_huggingface_model``.
  Fairseq ``.pt`` checkpoints are not read (convert them with torchaudio's
  ``import_fairseq_model``). No input normalisation (torchaudio's bundles of the
  three base models have ``_normalize_waveform=False``).

The teacher (:class:`SSLTeacher`) and the comparison frontend
(:class:`SSLFrontend`) are frozen: no parameter requires a gradient, they stay
in eval mode whatever ``train()`` is called with (dropout and layer drop off),
and their forward runs under ``torch.no_grad``. The recipes also list them in
``frozen_modules``, so they are neither optimised nor checkpointed; they are
loaded every time the recipe starts. The models expect 16 kHz audio.

A ``--debug`` run whose hub id cannot be downloaded (upstream's recipe test on
a machine without the checkpoint) may get a tiny random model of the same type
(``unreachable: stand_in``, :func:`stand_in_backbone`); it carries the error as
``stand_in_reason`` and the Brains refuse it outside ``--debug``.
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
    "HF_CHECKPOINTS",
    "HF_MODEL_TYPES",
    "PAPER_LAYERS",
    "SSL_MODELS",
    "SSL_SAMPLE_RATE",
    "HFSSLBackbone",
    "NoTeacher",
    "SSLBackbone",
    "SSLFrontend",
    "SSLTeacher",
    "SSLUnavailableError",
    "TorchaudioSSLBackbone",
    "build_ssl_model",
    "build_teacher",
    "convert_huggingface_state_dict",
    "detect_checkpoint_format",
    "load_hf_ssl",
    "load_ssl_backbone",
    "load_ssl_checkpoint",
    "save_tiny_hf_model",
    "ssl_frame_lengths",
    "tap_dims",
    "weights_digest",
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


def weights_digest(module):
    """A SHA-1 of a module's weights (names, dtypes, shapes and values of its state dict), 16 hex digits.

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> weights_digest(a) == weights_digest(a), weights_digest(a) == weights_digest(b)
    (True, False)
    """
    digest = hashlib.sha1()
    for name, value in sorted(module.state_dict().items()):
        if not torch.is_tensor(value):
            continue
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ Hugging Face
#: The SSL models read through SpeechBrain's Hugging Face integration: our name -> ``transformers`` ``model_type``.
HF_MODEL_TYPES = {"wav2vec2": "wav2vec2", "hubert": "hubert", "wavlm": "wavlm", "unispeech_sat": "unispeech-sat"}
#: Hub ids of the checkpoints the papers name: the BASE models (12 transformer layers, LibriSpeech 960 h) and
#: the "+" models of the DIP paper's Tables IV-VI (BASE+, 94k h of LibriLight, GigaSpeech and VoxPopuli).
HF_CHECKPOINTS = {
    "wav2vec2": "facebook/wav2vec2-base",
    "hubert": "facebook/hubert-base-ls960",
    "wavlm": "microsoft/wavlm-base",
    "unispeech_sat": "microsoft/unispeech-sat-base",
    "wavlm_plus": "microsoft/wavlm-base-plus",
    "unispeech_sat_plus": "microsoft/unispeech-sat-base-plus",
}
#: Reachability check of the hub before a download is tried (seconds).
HUB_PROBE_TIMEOUT = 3.0


class SSLUnavailableError(OSError):
    """A hub id that is neither a local folder, nor cached, nor downloadable here (its message says what to do)."""


def unreachable_message(source, key="ssl_hub"):
    """The one-line error of a hub id that cannot be downloaded here.

    Example
    -------
    >>> print(unreachable_message("microsoft/wavlm-base-plus"))  # doctest: +ELLIPSIS
    SSL model 'microsoft/wavlm-base-plus' is not a local folder and the Hugging Face hub cannot be reached...
    """
    return (
        f"SSL model {source!r} is not a local folder and the Hugging Face hub cannot be reached from this machine "
        f"(no internet, or HF_HUB_OFFLINE=1): on a machine with internet run `huggingface-cli download {source} "
        f"--local-dir <folder>` (or `git clone https://huggingface.co/{source}`), copy the folder here and pass "
        f"it instead: --{key}=<folder>"
    )


def _hub_reachable():
    """Whether the Hugging Face endpoint answers a TCP connection within :data:`HUB_PROBE_TIMEOUT` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError:
        return False
    return True


def _looks_like_path(source):
    """A path (absolute, relative with ``.``, home, or several folders deep) rather than an ``org/name`` hub id."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1


def resolve_hf_source(source, save_path=None, key="ssl_hub"):
    """A local folder for a hub id or folder: the folder itself, a cached download, or the id when it can be downloaded.

    Arguments
    ---------
    source : str
        A local folder (``save_pretrained`` output: ``config.json``, the weights,
        ``preprocessor_config.json``) or a hub id such as ``microsoft/wavlm-base-plus``.
    save_path : str, optional
        Where downloads go (SpeechBrain's ``save_path``); a copy already there is used offline.
    key : str
        The yaml key that gives ``source`` (named in the error).

    Returns
    -------
    str
        What SpeechBrain's loader is given.

    Raises
    ------
    FileNotFoundError
        ``source`` is a path that does not exist.
    SSLUnavailableError
        A hub id not cached in ``save_path`` while the hub cannot be reached.
    """
    source = str(source)
    if os.path.isdir(os.path.expanduser(source)):
        return os.path.expanduser(source)
    if _looks_like_path(source):
        raise FileNotFoundError(f"SSL model folder not found: {source!r} (--{key} takes a local folder or a hub id)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:  # a copy downloaded earlier: loaded without going online
        return snapshot_download(source, cache_dir=save_path, local_files_only=True)
    except HFValidationError as err:
        raise ValueError(f"--{key}={source!r} is neither a local folder nor a hub id ({err})") from err
    except (LocalEntryNotFoundError, OSError):
        pass
    if not _hub_reachable():
        raise SSLUnavailableError(unreachable_message(source, key))
    return source


def _speechbrain_class(model_type):
    """SpeechBrain's wrapper of a model type (UniSpeech-SAT has none: its ``Wav2Vec2`` loads any such AutoModel)."""
    from speechbrain.integrations.huggingface.hubert import HuBERT
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from speechbrain.integrations.huggingface.wavlm import WavLM

    return {"hubert": HuBERT, "wavlm": WavLM}.get(model_type, Wav2Vec2)


def load_hf_ssl(source, model_type=None, save_path=None, key="ssl_hub"):
    """A frozen SSL model from a hub id or a local folder, through SpeechBrain's Hugging Face integration.

    Arguments
    ---------
    source : str
        Hub id or local folder (:func:`resolve_hf_source`).
    model_type : str, optional
        ``wav2vec2``, ``hubert``, ``wavlm`` or ``unispeech_sat`` (:data:`HF_MODEL_TYPES`): picks
        SpeechBrain's wrapper and is checked against the checkpoint's ``config.json``.
    save_path : str, optional
        Download folder (default ``pretrained_models``).
    key : str
        The yaml key that gives ``source`` (named in errors).

    Returns
    -------
    HFSSLBackbone
    """
    if model_type is not None and model_type not in HF_MODEL_TYPES:
        raise ValueError(f"unknown SSL model type {model_type!r}: one of {sorted(HF_MODEL_TYPES)}")
    save_path = str(save_path or "pretrained_models")
    local = resolve_hf_source(source, save_path, key)
    wrapper_type = model_type
    if wrapper_type is None:
        from transformers import AutoConfig

        found = AutoConfig.from_pretrained(local, cache_dir=save_path).model_type
        wrapper_type = {v: k for k, v in HF_MODEL_TYPES.items()}.get(found)
        if wrapper_type is None:
            raise ValueError(f"{source}: a {found!r} model, not one of {sorted(HF_MODEL_TYPES.values())}")
    wrapper = _speechbrain_class(wrapper_type)(local, save_path=save_path, freeze=True, output_all_hiddens=True)
    found = wrapper.model.config.model_type
    if model_type is not None and found != HF_MODEL_TYPES[model_type]:
        raise ValueError(f"{source} is a {found!r} model, the recipe expects {HF_MODEL_TYPES[model_type]!r} ({key})")
    return HFSSLBackbone(wrapper.model, wrapper.feature_extractor, source=str(source))


def tiny_hf_config(model_type, num_layers=12, hidden_size=16):
    """A tiny ``transformers`` config of an SSL model type with the BASE models' CNN grid (20 ms frames).

    Random models of this size are test models and ``--debug`` stand-ins, never teachers of a real run.

    Example
    -------
    >>> config = tiny_hf_config("wavlm")
    >>> config.model_type, config.num_hidden_layers, list(config.conv_stride)
    ('wavlm', 12, [5, 2, 2, 2, 2, 2, 2])
    """
    import transformers

    classes = {"wav2vec2": "Wav2Vec2Config", "hubert": "HubertConfig", "wavlm": "WavLMConfig",
               "unispeech_sat": "UniSpeechSatConfig"}  # fmt: skip
    if model_type not in classes:
        raise ValueError(f"unknown SSL model type {model_type!r}: one of {sorted(classes)}")
    return getattr(transformers, classes[model_type])(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=2, intermediate_size=2 * hidden_size,
        conv_dim=(hidden_size,) * len(_CNN), conv_kernel=tuple(k for _, k, _ in _CNN),
        conv_stride=tuple(s for _, _, s in _CNN), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
        final_dropout=0.0, vocab_size=8,
    )  # fmt: skip


def save_tiny_hf_model(model_type, folder, seed=0, do_normalize=False, num_layers=12):
    """Writes a tiny random SSL model and its feature extractor to ``folder`` (what a hub download holds).

    Arguments
    ---------
    model_type : str
        ``wav2vec2``, ``hubert``, ``wavlm`` or ``unispeech_sat``.
    folder : str
    seed : int
        The random weights' seed (the global random state is left as it was).
    do_normalize : bool
        The feature extractor's input normalisation (``facebook/wav2vec2-base`` has it).
    num_layers : int

    Returns
    -------
    str
        ``folder``.
    """
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(tiny_hf_config(model_type, num_layers))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SSL_SAMPLE_RATE, padding_value=0.0, do_normalize=do_normalize,
        return_attention_mask=True,
    ).save_pretrained(folder)  # fmt: skip
    return str(folder)


class SSLBackbone(torch.nn.Module):
    """A frozen SSL model behind one interface: the CNN output and the hidden states of a waveform batch.

    Subclasses set ``num_layers`` (transformer layers), ``hidden_size``,
    ``cnn_dim`` (channels of the last convolution), ``conv_layers`` (``(channels,
    kernel, stride)`` per convolution), ``source`` (hub id, folder or file) and
    ``loaded_from`` (``None`` for a random stand-in), and implement
    :meth:`features`. The module stays in eval mode and has no trainable parameter.
    """

    stand_in_reason = None  # why a random stand-in replaces the weights (set by the builders)

    def train(self, mode=True):
        """Stays in eval mode (dropout and layer drop off) whatever ``mode`` is."""
        return super().train(False)

    @property
    def embed_dim(self):
        """Width of the hidden states (the DIP adaptation layer's ``frontend_dim``)."""
        return self.hidden_size

    def digest(self):
        """:func:`weights_digest` of the model, computed once."""
        if getattr(self, "_digest", None) is None:
            self._digest = weights_digest(self)
        return self._digest

    def features(self, wavs, lengths=None, num_layers=None):
        """``(cnn [B, F, cnn_dim], states)``: ``states[k]`` ``[B, F, hidden]`` is transformer layer ``k``'s output."""
        raise NotImplementedError


class TorchaudioSSLBackbone(SSLBackbone):
    """A torchaudio ``Wav2Vec2Model`` (:func:`build_ssl_model`) as an :class:`SSLBackbone`.

    ``states[0]`` (the transformer's input) is not returned by torchaudio's
    ``extract_features``: it is ``None`` here.
    """

    def __init__(self, model, source=""):
        super().__init__()
        self.model = model
        self.num_layers = len(model.encoder.transformer.layers)
        self.conv_layers = [(c.conv.out_channels, c.kernel_size, c.stride) for c in _conv_blocks(model)]
        self.cnn_dim = self.conv_layers[-1][0]
        self.hidden_size = model.encoder.feature_projection.projection.out_features
        self.source = self.loaded_from = str(source) if source else None
        self.normalize = False
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def features(self, wavs, lengths=None, num_layers=None):
        """See :class:`SSLBackbone`; only ``num_layers`` transformer layers are run."""
        cnn, frames = self.model.feature_extractor(wavs.float(), lengths)
        num_layers = self.num_layers if num_layers is None else num_layers
        states = [None]
        if num_layers:
            states += self.model.encoder.extract_features(cnn, frames, num_layers=num_layers)
        return cnn, states


class HFSSLBackbone(SSLBackbone):
    """A ``transformers`` wav2vec 2.0 / HuBERT / WavLM / UniSpeech-SAT model as an :class:`SSLBackbone`.

    Input: the feature extractor's normalisation when its ``do_normalize`` is
    set (``facebook/wav2vec2-base``; zero mean and unit variance over each
    item's valid samples, as ``Wav2Vec2FeatureExtractor``), padding zeroed and
    given as the attention mask. ``states`` are ``transformers``'
    ``hidden_states``: ``states[0]`` is the transformer's input (after the
    positional convolution), ``states[k]`` the output of layer ``k``. The CNN
    output is that of ``model.feature_extractor`` (before the feature
    projection's layer norm and linear map), taken by a forward hook, so the
    CNN runs once.

    Arguments
    ---------
    model : transformers.PreTrainedModel
        The base model (``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel``, ``UniSpeechSatModel``).
    feature_extractor : transformers.Wav2Vec2FeatureExtractor, optional
        Its ``do_normalize`` decides the input normalisation.
    source : str
        The hub id or folder it came from.
    """

    def __init__(self, model, feature_extractor=None, source=""):
        super().__init__()
        self.model = model
        config = model.config
        self.model_type = config.model_type
        self.num_layers = int(config.num_hidden_layers)
        self.hidden_size = int(config.hidden_size)
        self.conv_layers = [
            tuple(int(v) for v in c) for c in zip(config.conv_dim, config.conv_kernel, config.conv_stride)
        ]
        self.cnn_dim = self.conv_layers[-1][0]
        self.normalize = bool(getattr(feature_extractor, "do_normalize", False))
        self.source = self.loaded_from = str(source) if source else None
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def features(self, wavs, lengths=None, num_layers=None):
        """See :class:`SSLBackbone`: ``num_layers=0`` runs the CNN only, otherwise every layer runs."""
        wavs = wavs.float()
        mask = None
        if lengths is not None:
            mask = torch.arange(wavs.shape[-1], device=wavs.device)[None, :] < lengths.to(wavs.device)[:, None]
            wavs = wavs * mask
        if self.normalize:
            valid = mask.float() if mask is not None else torch.ones_like(wavs)
            count = valid.sum(-1, keepdim=True).clamp(min=1)
            mean = (wavs * valid).sum(-1, keepdim=True) / count
            var = (((wavs - mean) * valid) ** 2).sum(-1, keepdim=True) / count
            wavs = (wavs - mean) / torch.sqrt(var + 1e-7) * valid
        if num_layers == 0:  # the CNN tap alone (the Mel-like target)
            return self.model.feature_extractor(wavs).transpose(1, 2), [None]
        captured = {}
        hook = self.model.feature_extractor.register_forward_hook(lambda m, i, out: captured.setdefault("cnn", out))
        try:
            out = self.model(wavs, attention_mask=mask, output_hidden_states=True)
        finally:
            hook.remove()
        return captured["cnn"].transpose(1, 2), list(out.hidden_states)


def stand_in_backbone(model_type, reason, seed=0):
    """A tiny random model of ``model_type`` for a ``--debug`` run whose SSL checkpoint cannot be had.

    Built through the same loader as a real checkpoint (a temporary folder);
    ``stand_in_reason`` holds ``reason`` (what a real run raises) and
    ``loaded_from`` is ``None``.
    """
    import tempfile

    hf_type = model_type if model_type in HF_MODEL_TYPES else "wav2vec2"
    with tempfile.TemporaryDirectory() as folder:
        save_tiny_hf_model(hf_type, folder, seed=seed)
        backbone = load_hf_ssl(folder, hf_type, save_path=folder)
    backbone.source, backbone.loaded_from, backbone.stand_in_reason = f"stand-in:{hf_type}", None, reason
    logger.warning("%s; a tiny random %s model stands in for it (a --debug run only)", reason, hf_type)
    return backbone


def load_ssl_backbone(source, model_type, save_path=None, key="ssl_hub", unreachable="error"):
    """:func:`load_hf_ssl`, or a random stand-in (:func:`stand_in_backbone`) when the hub cannot be reached.

    Arguments
    ---------
    source, model_type, save_path, key
        See :func:`load_hf_ssl`.
    unreachable : str
        ``error`` (raise :class:`SSLUnavailableError`) or ``stand_in``: a tiny
        random model of ``model_type`` carrying the error as its
        ``stand_in_reason``; the Brains refuse it outside ``--debug``
        (:class:`modules.context_aware.GroupStageBrain`, :class:`modules.dip.DIPBrain`).

    Returns
    -------
    HFSSLBackbone
    """
    if unreachable not in ("error", "stand_in"):
        raise ValueError(f"unreachable must be 'error' or 'stand_in', got {unreachable!r}")
    try:
        return load_hf_ssl(source, model_type, save_path=save_path, key=key)
    except SSLUnavailableError as err:
        if unreachable == "error":
            raise
        return stand_in_backbone(model_type, str(err))


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
    model : SSLBackbone or torchaudio.models.Wav2Vec2Model
        With its weights loaded (:func:`build_teacher` does both); a torchaudio
        model is wrapped in a :class:`TorchaudioSSLBackbone`.
    layers : dict of str -> str or int
        ``{tap: "cnn" or a 1-based transformer layer}``, e.g. ``PAPER_LAYERS["hubert"]``.
    identity : str, optional
        Names the weights for the teacher-target cache; default: the backbone's
        source and a digest of its weights (:attr:`identity`).

    Example
    -------
    >>> teacher = SSLTeacher(build_ssl_model("wav2vec2", "tiny"), PAPER_LAYERS["wav2vec2"])
    >>> out = teacher(torch.randn(2, 16000))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'mel': (2, 49, 16), 'phoneme': (2, 49, 16), 'word': (2, 49, 16)}
    >>> teacher.train().training, any(p.requires_grad for p in teacher.parameters())
    (False, False)
    """

    def __init__(self, model, layers, identity=None):
        super().__init__()
        self.backbone = model if isinstance(model, SSLBackbone) else TorchaudioSSLBackbone(model)
        self.layers = dict(layers)
        n_layers = self.backbone.num_layers
        for tap, layer in self.layers.items():
            if layer != "cnn" and not (isinstance(layer, int) and 1 <= layer <= n_layers):
                raise ValueError(f"tap {tap!r}: layer must be 'cnn' or 1..{n_layers} (1-based), got {layer!r}")
        self.max_layer = max([layer for layer in self.layers.values() if layer != "cnn"], default=0)
        self.tap_dims = {
            tap: self.backbone.cnn_dim if layer == "cnn" else self.backbone.hidden_size
            for tap, layer in self.layers.items()
        }
        self._identity = identity
        self.stand_in_reason = self.backbone.stand_in_reason
        self.requires_grad_(False)
        self.eval()

    @property
    def identity(self):
        """The weights' identity for the target cache: ``<source>|<weights digest>|<normalize>`` (computed once)."""
        if self._identity is None:
            backbone = self.backbone
            self._identity = f"{backbone.source}|{backbone.digest()}|normalize={backbone.normalize}"
        return self._identity

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
        cnn, states = self.backbone.features(wavs, lengths, num_layers=self.max_layer)
        return {tap: (cnn if layer == "cnn" else states[layer]).float() for tap, layer in self.layers.items()}


class NoTeacher(torch.nn.Module):
    """Stands for the teacher of a group stage that needs none (the ``signal`` target): no taps, no weights."""

    def __init__(self):
        super().__init__()
        self.layers, self.tap_dims, self.identity, self.stand_in_reason = {}, {}, "none", None

    def forward(self, wavs, lengths=None):
        """No representations."""
        return {}


def _file_identity(name, size, path):
    stat = os.stat(path)
    return f"{name}-{size}:{os.path.abspath(path)}:{stat.st_size}"


def build_teacher(
    model,
    checkpoint=None,
    taps=(),
    layers=None,
    size="base",
    checkpoint_format="auto",
    loader="torchaudio",
    hub=None,
    save_path=None,
    unreachable="error",
):
    """The frozen teacher of a group stage: a hub id or folder (Hugging Face) or a local weights file (torchaudio).

    Arguments
    ---------
    model : str
        ``hubert``, ``wavlm`` or ``wav2vec2``.
    checkpoint : str or None
        torchaudio loader: local weights (:func:`load_ssl_checkpoint`); ``None`` with
        ``size: tiny``: random weights drawn with seed 0 (smoke runs: ``modules.reproduce run --tiny``).
    taps : sequence of str
        The contextual targets needed (``mel``, ``phoneme``, ``word``); empty for a
        signal-only group stage, which gets a :class:`NoTeacher`.
    layers : dict, optional
        ``{tap: "cnn" or 1-based layer}`` overriding :data:`PAPER_LAYERS` ``[model]`` tap by tap.
    size : str
        torchaudio loader: ``base`` (the paper) or ``tiny`` (test teachers).
    checkpoint_format : str
        torchaudio loader: ``auto``, ``torchaudio`` or ``huggingface``.
    loader : str
        ``huggingface`` (SpeechBrain's integration: ``hub``) or ``torchaudio`` (``checkpoint``).
    hub : str, optional
        Hugging Face loader: a hub id or local folder; ``None``: the paper's
        checkpoint of ``model`` (:data:`HF_CHECKPOINTS`).
    save_path : str, optional
        Hugging Face loader: where downloads go.
    unreachable : str
        Hugging Face loader: ``error`` or ``stand_in`` (:func:`load_ssl_backbone`).

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
    chosen = {tap: chosen[tap] for tap in taps}
    if loader == "huggingface":
        source = hub or HF_CHECKPOINTS[model]
        backbone = load_ssl_backbone(source, model, save_path=save_path, key="ssl_hub", unreachable=unreachable)
        teacher = SSLTeacher(backbone, chosen)
    elif loader == "torchaudio":
        if checkpoint is None and size == "tiny":  # smoke runs, benchmarks: a tiny model has no weights to load
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the same random teacher in every run and seed
                network = build_ssl_model(model, size)
            source = f"{model}-tiny:random-seed0"
            logger.warning("%s teacher: tiny size and no checkpoint, so random weights (seed 0): a smoke run", model)
        else:
            network = load_ssl_checkpoint(build_ssl_model(model, size), checkpoint, fmt=checkpoint_format)
            source = _file_identity(model, size, checkpoint)
        teacher = SSLTeacher(TorchaudioSSLBackbone(network, source=source), chosen)
    else:
        raise ValueError(f"ssl_loader must be 'huggingface' or 'torchaudio', got {loader!r}")
    logger.info("SSL teacher %s from %s, layers %s", model, teacher.backbone.source, teacher.layers)
    return teacher


class SSLFrontend(torch.nn.Module):
    """A frozen pretrained SSL model as a DIP comparison frontend (the DIP paper's Tables IV-VI).

    Same interface as :class:`modules.models.dip.DIPFrontend` for
    :class:`modules.dip.DIPBrain` and :class:`modules.models.dip.DIPFusion`:
    ``forward(wav, lengths, layers)`` returns the chosen hidden states
    ``[S, B, F, D]`` (0: the transformer's input, ``k``: layer ``k``'s output;
    :func:`modules.models.dip.select_layers`), and ``embed_dim``,
    ``num_layers``, ``conv_layers``, ``loaded_from`` describe it.

    Arguments
    ---------
    source : str
        Hub id or local folder (e.g. ``microsoft/wavlm-base-plus``).
    model_type : str
        ``wav2vec2``, ``hubert``, ``wavlm`` or ``unispeech_sat``.
    save_path : str, optional
        Where downloads go.
    unreachable : str
        ``error`` or ``stand_in`` (:func:`load_ssl_backbone`; :class:`modules.dip.DIPBrain`
        refuses a stand-in outside ``--debug``).
    """

    def __init__(self, source, model_type, save_path=None, unreachable="error"):
        super().__init__()
        self.backbone = load_ssl_backbone(source, model_type, save_path=save_path, key="ssl_hub",
                                          unreachable=unreachable)  # fmt: skip
        self.embed_dim, self.num_layers = self.backbone.hidden_size, self.backbone.num_layers
        self.conv_layers = self.backbone.conv_layers
        self.loaded_from, self.stand_in_reason = self.backbone.loaded_from, self.backbone.stand_in_reason
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def forward(self, wav, lengths=None, layers="all"):
        """``[len(layers), B, F, D]`` hidden states, without gradient."""
        from modules.models.dip import select_layers

        chosen = select_layers(layers, self.num_layers)
        _, states = self.backbone.features(wav, lengths)
        return torch.stack([states[k] for k in chosen])
