"""DIP: the domain-invariant pretrained frontend and its adaptation layer.

Paper: Wang, Pan, Li, Wang and Li, "Speech Separation with Pretrained Frontend
to Minimize Domain Mismatch", IEEE/ACM TASLP 2024 (Section III, Fig. 1 and 2,
Section IV-B); constants from the authors' fairseq fork
(github.com/Wufan0Willan/DIP, model ``wav2vec2mmd8content``, configuration
``wav2vec2_loss10_neg100f.yaml``), read only.

* :class:`DIPFrontend`: the wav2vec 2.0 BASE shape. Local encoder ``h``: seven
  convolutions (512 channels, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2:
  stride 320, a 400-sample receptive field, 20 ms frames at 16 kHz; group norm
  in the first block, GELU). Contextual network ``g``: projection to 768, a
  convolutional relative positional embedding (kernel 128, 16 groups, weight
  norm), 12 post-norm transformer layers (768, FFN 3072, 12 heads), layer drop
  0.05, dropout 0.1. Quantiser ``q``: 2 codebooks x 320 entries, Gumbel softmax
  with temperature 2 -> 0.5 (x 0.999995 per update), targets of 256
  dimensions; span masking (start probability 0.65, span 10). 95.0M parameters
  (wav2vec 2.0 BASE: 95M; ``tests/test_dip.py``).
* :func:`compute_span_mask`: fairseq's span masking, vectorised on the device.
* :func:`fairseq_to_dip_state_dict`, :meth:`DIPFrontend.load_fairseq_checkpoint`:
  the authors' released checkpoint (fairseq key names) into this model.
* :class:`DIPFusion`: the adaptation layer of Fig. 2, the ``fusion`` module of
  :class:`modules.models.MaskingSeparator`. Frozen-frontend cues (20 ms frames)
  -> learned weighted sum of the chosen layers -> linear map to the encoder's
  width -> resampled to the encoder's frames by their centre times -> summed
  with the encoder output.

Built from ``torchaudio.models.wav2vec2_model`` (its ``FeatureExtractor``,
``FeatureProjection``, ``ConvolutionalPositionalEmbedding`` and
``EncoderLayer`` s, the ``GradMultiply`` of ``torchaudio.models.wav2vec2.components``)
and SpeechBrain's ``speechbrain.nnet.quantisers.GumbelVectorQuantizer``
(parameters, initialisation, temperature schedule; :class:`ProductQuantizer`
also returns the logits for the diversity loss). Not reused: SpeechBrain's
``W2VLatentExtractor`` (a layer norm in every block and a first kernel of 11,
not BASE's), its ``EncoderWrapper`` (sinusoidal, not convolutional, positions)
and ``sample_negatives`` (its per-utterance offset is ``T - 1`` instead of
``T``, so an utterance's distractors leak from its neighbour); torchaudio's
``MaskGenerator`` and SpeechBrain's ``compute_mask`` (numpy loops over the
batch, host round trips); :mod:`modules.losses.dip` draws the negatives.

Departures (also in the README):

* Attention heads: the paper's text says 8; the authors' configuration keeps
  fairseq's default of 12 (as wav2vec 2.0 BASE), and their released checkpoint
  is loaded with 12. ``num_heads`` sets it (the parameter count does not change).
* Padding: the authors crop every batch to its shortest item (no padding); so
  does :class:`modules.dip.DIPPretrainBrain`. Padded inputs are nonetheless
  handled (lengths give the transformer's attention mask and the masking range).
"""

from __future__ import annotations

import logging
import math
import re

import torch
import torch.nn.functional as F
import torchaudio
from speechbrain.nnet.quantisers import GumbelVectorQuantizer
from torch import nn
from torchaudio.models.wav2vec2 import components

__all__ = [
    "WAV2VEC2_CONV_LAYERS",
    "DIPFrontend",
    "DIPFusion",
    "ProductQuantizer",
    "compute_span_mask",
    "conv_geometry",
    "fairseq_to_dip_state_dict",
    "select_layers",
]

logger = logging.getLogger(__name__)

#: wav2vec 2.0's local encoder: ``(channels, kernel, stride)`` per block (stride 320, 400-sample receptive field).
WAV2VEC2_CONV_LAYERS = ((512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2))


def conv_geometry(conv_layers):
    """``(stride, receptive_field)`` in samples of a stack of valid convolutions.

    Example
    -------
    >>> conv_geometry(WAV2VEC2_CONV_LAYERS)
    (320, 400)
    """
    stride, field = 1, 1
    for _, kernel, step in conv_layers:
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def select_layers(layers, num_layers):
    """The hidden states a downstream model reads: 0 is the transformer input, ``k`` the output of layer ``k``.

    Arguments
    ---------
    layers : str, int or sequence of int
        ``"all"`` (0 to ``num_layers``), one index, or a list of indices.
    num_layers : int
        Transformer layers of the frontend.

    Returns
    -------
    list of int

    Example
    -------
    >>> select_layers("all", 2), select_layers(12, 12), select_layers([4, 8], 12)
    ([0, 1, 2], [12], [4, 8])
    """
    if layers == "all":
        return list(range(num_layers + 1))
    chosen = [int(layers)] if isinstance(layers, (int, str)) else [int(k) for k in layers]
    bad = [k for k in chosen if not 0 <= k <= num_layers]
    if bad or not chosen:
        raise ValueError(f"frontend layers must be 'all' or indices in [0, {num_layers}], got {layers!r}")
    return chosen


def compute_span_mask(
    batch_size,
    num_frames,
    mask_prob=0.65,
    mask_length=10,
    lengths=None,
    min_masks=2,
    same_count=True,
    device=None,
    generator=None,
):
    """wav2vec 2.0 span masking (fairseq's ``compute_mask_indices``, ``static`` spans), on the device.

    For an utterance of ``n`` frames, ``floor(mask_prob * n / mask_length + u)``
    spans (``u ~ U[0, 1)``, at least ``min_masks``) start at distinct frames drawn
    uniformly in ``[0, n - mask_length)``; each masks ``mask_length`` frames;
    spans may overlap. About 49 % of the frames are masked for 0.65 and 10
    (``1 - (1 - 0.065)^10``). The paper's "65 % of the frames as starting
    indices" is this ``mask_prob`` of fairseq, which the authors' code uses.
    With ``same_count`` (fairseq's ``require_same_masks``), masked frames are
    dropped at random from each utterance down to the batch's smallest count,
    so every utterance has the same number of masked frames.

    Arguments
    ---------
    batch_size, num_frames : int
    mask_prob : float
    mask_length : int
    lengths : torch.Tensor, optional
        ``[B]`` valid frames (default: all ``num_frames``).
    min_masks : int
    same_count : bool
    device : torch.device, optional
    generator : torch.Generator, optional
        On ``device``.

    Returns
    -------
    torch.Tensor
        ``[B, num_frames]`` bool.

    Example
    -------
    >>> mask = compute_span_mask(3, 200, generator=torch.Generator().manual_seed(0))
    >>> mask.shape, mask.sum(1).unique().numel(), 0.3 < mask.float().mean().item() < 0.7
    (torch.Size([3, 200]), 1, True)
    """
    if lengths is None:
        lengths = torch.full((batch_size,), num_frames, dtype=torch.long, device=device)
    device = lengths.device
    positions = (lengths - mask_length).clamp(min=1)  # span starts in [0, positions)
    draw = torch.rand(batch_size, device=device, generator=generator)
    spans = torch.floor(mask_prob * lengths.to(torch.float64) / mask_length + draw.to(torch.float64)).long()
    spans = torch.minimum(spans.clamp(min=min_masks), positions)
    frame = torch.arange(num_frames, device=device)
    keys = torch.rand(batch_size, num_frames, device=device, generator=generator)
    keys = keys.masked_fill(frame[None] >= positions[:, None], 2.0)  # not a valid start
    rank = keys.argsort(dim=1).argsort(dim=1)
    starts = (rank < spans[:, None]).to(torch.int32)
    covered = F.conv1d(
        F.pad(starts.float()[:, None], (mask_length - 1, 0)), starts.new_ones(1, 1, mask_length, dtype=torch.float32)
    )[:, 0]
    mask = (covered > 0) & (frame[None] < lengths[:, None])
    if same_count:
        counts = mask.sum(1)
        keep = counts.min()
        keys = torch.rand(batch_size, num_frames, device=device, generator=generator).masked_fill(~mask, 2.0)
        mask = mask & (keys.argsort(dim=1).argsort(dim=1) < keep)
    return mask


class ProductQuantizer(GumbelVectorQuantizer):
    """SpeechBrain's Gumbel product quantiser, also returning the logits (for the diversity loss).

    Parameters, initialisation and temperature schedule (``update_temp``) are
    SpeechBrain's (copied from fairseq). In training the codes are drawn with a
    straight-through Gumbel softmax at the current temperature; in evaluation
    they are the argmax.

    Arguments
    ---------
    input_dim : int
    num_vars : int
        Entries per codebook (V).
    temp_tuple : tuple
        ``(start, end, decay)`` of the temperature.
    groups : int
        Codebooks (G).
    vq_dim : int
        Output dimension (the G entries concatenated).

    Example
    -------
    >>> q = ProductQuantizer(16, 5, (2.0, 0.5, 0.999995), 2, 8)
    >>> out = q(torch.randn(2, 3, 16))
    >>> out["x"].shape, out["logits"].shape
    (torch.Size([2, 3, 8]), torch.Size([2, 3, 2, 5]))
    """

    def forward(self, x):
        """``{"x": [B, T, vq_dim], "logits": [B, T, G, V], "temp": float}``."""
        batch, frames, _ = x.shape
        logits = self.weight_proj(x).view(batch, frames, self.groups, self.num_vars)
        if self.training:
            codes = F.gumbel_softmax(logits.float(), tau=self.curr_temp, hard=True).type_as(logits)
        else:
            codes = F.one_hot(logits.argmax(-1), self.num_vars).type_as(logits)
        entries = self.vars.view(self.groups, self.num_vars, -1).to(codes.dtype)
        quantised = torch.einsum("btgv,gvd->btgd", codes, entries).reshape(batch, frames, -1)
        return {"x": quantised, "logits": logits, "temp": self.curr_temp}


def _init_pretraining(module):
    """fairseq's initialisation for pretraining: Kaiming convolutions, BERT-style linears, pos-conv normal."""
    for sub in module.modules():
        if isinstance(sub, components.ConvLayerBlock):
            nn.init.kaiming_normal_(sub.conv.weight)
        elif isinstance(sub, components.ConvolutionalPositionalEmbedding):
            conv = sub.conv
            std = math.sqrt(4.0 / (sub.embed_dim * sub.kernel_size))
            direction = conv.parametrizations.weight.original1
            with torch.no_grad():
                direction.normal_(0.0, std)
                conv.parametrizations.weight.original0.copy_(direction.norm(dim=(0, 1), keepdim=True))
                conv.bias.zero_()
        elif isinstance(sub, components.Transformer):
            for layer in sub.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, 0.02)
                    nn.init.zeros_(layer.bias)


class DIPFrontend(nn.Module):
    """The DIP frontend: a wav2vec 2.0 BASE-shaped model for MPC / MIC pretraining; see the module docstring.

    Arguments
    ---------
    conv_layers : sequence of (channels, kernel, stride)
        Local encoder (default: wav2vec 2.0's, stride 320).
    embed_dim, num_layers, num_heads, ffn_dim : int
        Transformer: 768, 12, 12, 3072.
    pos_conv_kernel, pos_conv_groups : int
        Convolutional positional embedding: 128, 16.
    dropout, attention_dropout, activation_dropout : float
        0.1, 0.1, 0.0 (fairseq's defaults; the authors' configuration).
    layer_drop : float
        0.05.
    dropout_input, dropout_features : float
        0.1 each: on the projected features and on the quantiser's input.
    final_dim : int
        Dimension of the contrastive space (256).
    codebooks, codebook_entries : int
        2 x 320.
    temperature : tuple
        ``(2.0, 0.5, 0.999995)``: start, floor and per-update decay.
    feature_grad_mult : float
        Gradient scale into the local encoder (0.1).
    mask_prob, mask_length : float, int
        0.65 and 10 (:func:`compute_span_mask`).
    fairseq_checkpoint : str, optional
        A local fairseq checkpoint of this architecture (the authors' release)
        loaded at construction (:meth:`load_fairseq_checkpoint`). Nothing is
        ever downloaded.

    Example
    -------
    >>> tiny = DIPFrontend(conv_layers=[(16, 10, 5), (16, 4, 4)], embed_dim=32, num_layers=2, num_heads=2,
    ...                    ffn_dim=64, pos_conv_kernel=4, pos_conv_groups=2, final_dim=16, codebook_entries=8)
    >>> wav = torch.randn(2, 4000)
    >>> states = tiny.extract_layers(wav)
    >>> states.shape  # 3 states (transformer input, 2 layers), 20 ms frames at 4000 / 20 samples
    torch.Size([3, 2, 199, 32])
    >>> out = tiny.pretrain_forward(wav)
    >>> out["predictions"].shape == out["targets"].shape, out["code_logits"].shape[-2:]
    (True, torch.Size([2, 8]))
    """

    def __init__(
        self,
        conv_layers=WAV2VEC2_CONV_LAYERS,
        embed_dim=768,
        num_layers=12,
        num_heads=12,
        ffn_dim=3072,
        pos_conv_kernel=128,
        pos_conv_groups=16,
        dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        layer_drop=0.05,
        dropout_input=0.1,
        dropout_features=0.1,
        final_dim=256,
        codebooks=2,
        codebook_entries=320,
        temperature=(2.0, 0.5, 0.999995),
        feature_grad_mult=0.1,
        mask_prob=0.65,
        mask_length=10,
        fairseq_checkpoint=None,
    ):
        super().__init__()
        conv_layers = [tuple(int(v) for v in layer) for layer in conv_layers]
        w2v = torchaudio.models.wav2vec2_model(
            extractor_mode="group_norm",
            extractor_conv_layer_config=conv_layers,
            extractor_conv_bias=False,
            encoder_embed_dim=embed_dim,
            encoder_projection_dropout=dropout_input,
            encoder_pos_conv_kernel=pos_conv_kernel,
            encoder_pos_conv_groups=pos_conv_groups,
            encoder_num_layers=num_layers,
            encoder_num_heads=num_heads,
            encoder_attention_dropout=attention_dropout,
            encoder_ff_interm_features=ffn_dim,
            encoder_ff_interm_dropout=activation_dropout,
            encoder_dropout=dropout,
            encoder_layer_norm_first=False,
            encoder_layer_drop=layer_drop,
            aux_num_out=None,
        )
        self.conv_layers = conv_layers
        self.num_layers = num_layers
        self.frame_stride, self.receptive_field = conv_geometry(conv_layers)
        self.feature_extractor = w2v.feature_extractor
        self.encoder = w2v.encoder
        self.mask_emb = nn.Parameter(torch.empty(embed_dim).uniform_())
        self.dropout_features = nn.Dropout(dropout_features)
        self.quantizer = ProductQuantizer(
            conv_layers[-1][0], codebook_entries, tuple(temperature), codebooks, final_dim
        )
        self.project_q = nn.Linear(final_dim, final_dim)
        self.final_proj = nn.Linear(embed_dim, final_dim)
        self.feature_grad_mult = feature_grad_mult
        self.mask_prob, self.mask_length = mask_prob, mask_length
        self.num_updates = 0
        self.loaded_from = None
        _init_pretraining(self)
        if fairseq_checkpoint:
            self.load_fairseq_checkpoint(fairseq_checkpoint)

    # ------------------------------------------------------------ state
    def get_extra_state(self):
        """The number of updates (it sets the Gumbel temperature), saved with the weights."""
        return {"num_updates": self.num_updates}

    def set_extra_state(self, state):
        """Restores the number of updates and the temperature."""
        self.set_num_updates(int(state.get("num_updates", 0)))

    def set_num_updates(self, num_updates):
        """Sets the update count and anneals the Gumbel temperature to ``max(start * decay^n, floor)``."""
        self.num_updates = int(num_updates)
        self.quantizer.update_temp(self.num_updates)

    # ------------------------------------------------------------ parts
    def frame_lengths(self, lengths):
        """Valid frames of the local encoder's output for ``lengths`` samples."""
        for _, kernel, stride in self.conv_layers:
            lengths = (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        return lengths

    def _local_features(self, wav, lengths):
        """Local encoder ``h``: ``[B, T] -> ([B, F, C], frame lengths or None)``, gradient scaled."""
        if wav.shape[-1] < self.receptive_field:
            wav = F.pad(wav, (0, self.receptive_field - wav.shape[-1]))
        if self.feature_grad_mult == 0 and self.training:
            with torch.no_grad():
                features, frames = self.feature_extractor(wav, lengths)
        else:
            features, frames = self.feature_extractor(wav, lengths)
            if self.training and self.feature_grad_mult != 1.0:
                features = components.GradMultiply.apply(features, self.feature_grad_mult)
        if frames is not None:
            frames = frames.clamp(min=1)
        return features, frames

    def _attention_mask(self, x, frames):
        if frames is None:
            return x, None
        batch, length, _ = x.shape
        pad = torch.arange(length, device=x.device)[None] >= frames[:, None]
        x = x.masked_fill(pad[..., None], 0.0)
        mask = (-10000.0 * pad[:, None, None, :].to(x.dtype)).expand(batch, 1, length, length)
        return x, mask

    def _transformer(self, x, attention_mask, keep_states=False):
        """The contextual network ``g`` (torchaudio's layers, layer drop in training)."""
        transformer = self.encoder.transformer
        x = x + transformer.pos_conv_embed(x)
        if transformer.layer_norm_first:  # torchaudio's flag: True for post-norm (BASE) models
            x = transformer.layer_norm(x)
        x = transformer.dropout(x)
        states = [x] if keep_states else None
        for layer in transformer.layers:
            if self.training and transformer.layer_drop > 0 and torch.rand(()) < transformer.layer_drop:
                if keep_states:
                    states.append(x)
                continue
            x, _ = layer(x, attention_mask)
            if keep_states:
                states.append(x)
        if not transformer.layer_norm_first:
            x = transformer.layer_norm(x)
            if keep_states:
                states[-1] = x
        return x, states

    # ------------------------------------------------------------ uses
    def extract_layers(self, wav, lengths=None, layers="all"):
        """Hidden states for a downstream model (no masking): ``[S, B, F, D]``.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveforms (16 kHz for the BASE geometry).
        lengths : torch.Tensor, optional
            ``[B]`` valid samples.
        layers : str, int or sequence of int
            See :func:`select_layers` (0: transformer input; ``k``: layer ``k``).

        Returns
        -------
        torch.Tensor
            ``[len(layers), B, F, D]``; ``F`` frames of ``frame_stride`` samples.
        """
        chosen = select_layers(layers, self.num_layers)
        features, frames = self._local_features(wav, lengths)
        projection = self.encoder.feature_projection
        x, mask = self._attention_mask(projection(features), frames)
        _, states = self._transformer(x, mask, keep_states=True)
        return torch.stack([states[k] for k in chosen])

    def pretrain_forward(self, wav, lengths=None, generator=None):
        """One branch of MPC / MIC pretraining (Fig. 1): mask, contextualise, quantise.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]``.
        lengths : torch.Tensor, optional
            ``[B]`` valid samples.
        generator : torch.Generator, optional
            For the masks (on ``wav``'s device).

        Returns
        -------
        dict
            ``predictions`` ``[B, M, final_dim]`` (context vectors at the masked
            frames), ``targets`` (their quantised local features), ``code_logits``
            ``[B, M, G, V]``, ``feature_penalty`` (0-d), ``contexts`` ``[B, F, D]``
            (transformer output, every frame), ``lengths`` (``[B]`` frames or
            None), ``mask`` ``[B, F]`` and ``temperature``.
        """
        features, frames = self._local_features(wav, lengths)
        penalty = features.float().pow(2).mean()
        projection = self.encoder.feature_projection
        features = projection.layer_norm(features)
        x = projection.dropout(projection.projection(features))
        unmasked = self.dropout_features(features)
        batch, num_frames, _ = x.shape
        mask = compute_span_mask(
            batch, num_frames, self.mask_prob, self.mask_length, lengths=frames, device=x.device, generator=generator
        )
        x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        x, attention = self._attention_mask(x, frames)
        contexts, _ = self._transformer(x, attention)
        masked = int(mask[0].sum())  # every utterance has the same count
        quantised = self.quantizer(unmasked[mask].view(batch, masked, -1))
        return {
            "predictions": self.final_proj(contexts[mask].view(batch, masked, -1)),
            "targets": self.project_q(quantised["x"]),
            "code_logits": quantised["logits"],
            "feature_penalty": penalty,
            "contexts": contexts,
            "lengths": frames,
            "mask": mask,
            "temperature": quantised["temp"],
        }

    def forward(self, wav, lengths=None, layers="all", pretrain=False, generator=None):
        """:meth:`extract_layers`, or with ``pretrain`` :meth:`pretrain_forward` of each branch.

        With ``pretrain``, ``wav`` may be a list of waveform batches (the
        Siamese branches, one call so that DDP sees a single forward);
        ``lengths`` is then a list too (or None). Returns a list of branch
        outputs for a list, one output otherwise.
        """
        if not pretrain:
            return self.extract_layers(wav, lengths, layers)
        if not isinstance(wav, (list, tuple)):
            return self.pretrain_forward(wav, lengths, generator)
        lengths = lengths if isinstance(lengths, (list, tuple)) else [lengths] * len(wav)
        return [self.pretrain_forward(w, n, generator) for w, n in zip(wav, lengths)]

    # ------------------------------------------------------------ weights
    def load_fairseq_checkpoint(self, path):
        """Loads a local fairseq wav2vec 2.0 / DIP checkpoint (``{"model": state_dict, ...}`` or a bare state dict).

        The file is read with ``torch.load(weights_only=True)``. A checkpoint
        written by fairseq itself also pickles its configuration (``omegaconf``
        objects), which that refuses: extract the weights once, where fairseq is
        installed, with ``torch.save(torch.load(path, weights_only=False)["model"], "dip_model.pt")``.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickled configuration objects
            raise RuntimeError(
                f"{path}: not a plain state dict ({type(err).__name__}). Extract the weights first, where fairseq is "
                f"installed: torch.save(torch.load(path, weights_only=False)['model'], 'dip_model.pt')"
            ) from err
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        converted = fairseq_to_dip_state_dict(state)
        converted["quantizer.max_ent"] = self.quantizer.max_ent.detach().clone()
        converted["_extra_state"] = self.get_extra_state()
        self.load_state_dict(converted, strict=True)
        self.loaded_from = str(path)
        logger.info("DIP frontend loaded from the fairseq checkpoint %s", path)
        return self


class DIPFusion(nn.Module):
    """The adaptation layer (Fig. 2): frontend cues brought to the encoder's frames and width, summed in.

    A learned softmax-weighted sum of the chosen hidden states (when there are
    several; SUPERB's featurizer, which the authors' downstream code uses),
    a linear map from the frontend's width to the encoder's channels, then a
    resampling in time: encoder frame ``l`` (samples ``[l S, l S + K)``, centre
    ``l S + (K - 1) / 2``) takes the frontend features at the same centre time,
    interpolated linearly between the two frontend frames around it (frontend
    frame ``f``: centre ``f S_f + (R_f - 1) / 2``, ``S_f`` its stride and ``R_f``
    its receptive field) and held at the first / last frontend frame beyond
    them. The result is added to the encoder output; the masker reads the sum
    and the masks still apply to the encoder output alone
    (:class:`modules.models.MaskingSeparator`).

    Arguments
    ---------
    frontend_dim : int
        Width of the frontend's hidden states (768).
    encoder_channels : int
        ``N`` of the separator's encoder.
    encoder_kernel : int
        Its kernel size ``K`` (its stride is ``K // 2`` unless given).
    layers : str, int or sequence of int
        Which hidden states the Brain passes (:func:`select_layers`).
    num_layers : int
        Transformer layers of the frontend (12).
    conv_layers : sequence of (channels, kernel, stride)
        The frontend's local encoder (its stride and receptive field).
    encoder_stride : int, optional
    interpolation : str
        ``linear`` or ``nearest``.

    Example
    -------
    >>> fusion = DIPFusion(32, 8, encoder_kernel=32, layers="all", num_layers=2)
    >>> mix_w = torch.randn(2, 8, 999)  # 16000 samples, kernel 32, stride 16
    >>> fusion(mix_w, cues=torch.randn(3, 2, 49, 32)).shape
    torch.Size([2, 8, 999])
    """

    def __init__(
        self,
        frontend_dim,
        encoder_channels,
        encoder_kernel,
        layers="all",
        num_layers=12,
        conv_layers=WAV2VEC2_CONV_LAYERS,
        encoder_stride=None,
        interpolation="linear",
    ):
        super().__init__()
        if interpolation not in ("linear", "nearest"):
            raise ValueError(f"interpolation must be linear or nearest, got {interpolation!r}")
        self.num_states = len(select_layers(layers, num_layers))
        self.layer_weights = nn.Parameter(torch.zeros(self.num_states)) if self.num_states > 1 else None
        self.projection = nn.Linear(frontend_dim, encoder_channels)
        self.encoder_kernel = int(encoder_kernel)
        self.encoder_stride = int(encoder_stride or encoder_kernel // 2)
        self.frontend_stride, self.frontend_field = conv_geometry(conv_layers)
        self.interpolation = interpolation

    def frame_positions(self, num_frames, num_cue_frames, device=None):
        """Position of each encoder frame's centre on the frontend's frame axis (clamped to its frames)."""
        centres = torch.arange(num_frames, device=device, dtype=torch.float64) * self.encoder_stride
        centres = centres + (self.encoder_kernel - 1) / 2
        position = (centres - (self.frontend_field - 1) / 2) / self.frontend_stride
        return position.clamp(0, num_cue_frames - 1)

    def adapt(self, cues, num_frames):
        """``[S, B, F, D]`` cues -> ``[B, N, num_frames]`` on the encoder's frames."""
        if cues.shape[0] != self.num_states:
            raise ValueError(f"expected {self.num_states} frontend states, got {cues.shape[0]} (frontend_layers?)")
        if self.layer_weights is not None:
            weights = torch.softmax(self.layer_weights.float(), 0).to(cues.dtype)
            cues = torch.einsum("s,sbfd->bfd", weights, cues)
        else:
            cues = cues[0]
        cues = self.projection(cues)  # [B, F, N]
        position = self.frame_positions(num_frames, cues.shape[1], cues.device)
        if self.interpolation == "nearest":
            index = torch.floor(position + 0.5).long()
            aligned = cues[:, index]
        else:
            low = position.floor().long()
            high = (low + 1).clamp(max=cues.shape[1] - 1)
            frac = (position - low).to(cues.dtype)[None, :, None]
            aligned = cues[:, low] * (1 - frac) + cues[:, high] * frac
        return aligned.transpose(1, 2)

    def forward(self, mix_w, mix=None, cues=None):
        """``mix_w`` ``[B, N, L]`` plus the adapted ``cues``; ``mix`` is not used."""
        if cues is None:
            raise ValueError("DIPFusion needs the frontend's cues (conditioning input `cues`)")
        return mix_w + self.adapt(cues, mix_w.shape[-1]).to(mix_w.dtype)


# ---------------------------------------------------------------------------------------------
# fairseq checkpoint conversion

#: fairseq (wav2vec 2.0 / DIP) key patterns -> this model's keys.
FAIRSEQ_KEY_MAP = (
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (
        r"encoder\.pos_conv\.0\.parametrizations\.weight\.(original[01])",
        r"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.\1",
    ),
    (r"encoder\.pos_conv\.0\.bias", "encoder.transformer.pos_conv_embed.conv.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)",
        r"encoder.transformer.layers.\1.attention.\2_proj.\3",
    ),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.transformer.layers.\1.layer_norm.\2"),
    (
        r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)",
        r"encoder.transformer.layers.\1.feed_forward.intermediate_dense.\2",
    ),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.transformer.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.transformer.layers.\1.final_layer_norm.\2"),
    (r"mask_emb", "mask_emb"),
    (r"quantizer\.vars", "quantizer.vars"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"project_q.\1"),
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
)


def fairseq_to_dip_state_dict(state_dict):
    """Renames a fairseq wav2vec 2.0 / DIP state dict to :class:`DIPFrontend`'s keys.

    The mapping (``FAIRSEQ_KEY_MAP``): ``feature_extractor.conv_layers.i.0`` ->
    ``feature_extractor.conv_layers.i.conv``; the first block's group norm
    ``conv_layers.0.2`` -> ``conv_layers.0.layer_norm``; ``layer_norm`` and
    ``post_extract_proj`` -> ``encoder.feature_projection.{layer_norm,projection}``;
    ``encoder.pos_conv.0.{weight_g,weight_v,bias}`` -> the weight-normed
    ``encoder.transformer.pos_conv_embed.conv`` (``original0`` is ``g``,
    ``original1`` is ``v``); ``encoder.layer_norm`` -> ``encoder.transformer.layer_norm``;
    per layer ``self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``fc1``,
    ``fc2``, ``final_layer_norm`` -> ``attention.*``, ``layer_norm``,
    ``feed_forward.intermediate_dense``, ``feed_forward.output_dense``,
    ``final_layer_norm``; ``mask_emb``, ``quantizer.{vars,weight_proj}``,
    ``project_q``, ``final_proj`` keep their names. A ``w2v_model.`` prefix
    (fine-tuned checkpoints) is dropped. Any other key is an error.

    Example
    -------
    >>> list(fairseq_to_dip_state_dict({"encoder.layers.3.fc1.weight": 0}))
    ['encoder.transformer.layers.3.feed_forward.intermediate_dense.weight']
    """
    converted, unknown = {}, []
    for key, value in state_dict.items():
        name = key[len("w2v_model.") :] if key.startswith("w2v_model.") else key
        for pattern, target in FAIRSEQ_KEY_MAP:
            if re.fullmatch(pattern, name):
                converted[re.sub(pattern, target, name)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"fairseq checkpoint keys with no place in the DIP frontend: {unknown[:8]}")
    return converted
