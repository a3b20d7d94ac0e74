"""SIMO-SISO split of a separator and the group-stage predictor (context-aware two-stage training).

Paper: Wang et al., "Context-Aware Two-Step Training Scheme for Domain Invariant
Speech Separation" (arXiv:2503.12589, Fig. 1 and section
II-A), following Luo et al., "Rethinking the separation layers in speech
separation networks" (ICASSP 2021). A separator with ``N`` separation blocks
becomes

* a single-input multi-output (SIMO) **context extractor**: the encoder output
  ``E_m`` through the masker's input layers and the first ``N / 2`` blocks, then
  one 1x1 convolution that splits the features into one contextual embedding
  ``C_i`` per speaker;
* a single-input single-output (SISO) **segregator**: the other ``N / 2``
  blocks and the masker's output layers, shared by the speakers and called once
  per speaker, ``C_i -> M_i`` (one mask per call); ``E_m * M_i`` is decoded.

The split reuses the masker that ``hparams/backbones/*.yaml`` builds, its blocks
and weights as they are:

* :class:`ConvTasNetSplitMasker` wraps a Conv-TasNet masker built with one mask
  (``num_masks: 1``), split at block granularity (of ``R * X`` blocks, so
  Asteroid's ``X = 8, R = 3`` splits after block 12):

  - the Asteroid-shaped masker with skip connections
    (:class:`modules.models.convtasnet.TCNMaskNet`, ``convtasnet_skip.yaml``,
    the papers' separator): input norm, bottleneck and the first ``split_at``
    blocks; the state after them is the residual path ``[B, L]`` *and* the sum
    of the skip outputs so far ``[Sc, L]``, concatenated (``D = B + Sc``), then
    ``PReLU`` and a 1x1 convolution ``D -> C * D`` (the SIMO head); the
    segregator takes one ``C_i``, splits it back into residual and skip sum,
    runs the remaining blocks (adding their skip outputs) and the masker's own
    output layer (``PReLU``, ``Sc -> N``) and mask non-linearity. Carrying the
    skip sum (a choice the papers leave open) keeps every block's skip output in
    use, and makes the split the unsplit masker exactly when the SIMO head is
    the identity (one speaker; tested);
  - SpeechBrain's ``MaskNet`` (no skip path, ``convtasnet.yaml``): channel-wise
    layer norm, bottleneck and the first ``split_at`` temporal blocks, then
    ``PReLU`` and a 1x1 convolution ``B -> C * B``; the segregator runs the
    remaining blocks and the ``B -> N`` mask convolution with ReLU.

  The SIMO head is the one module the unsplit Conv-TasNet does not have (it has
  a ``C * N``-channel mask convolution where the split one has ``N``).
* :class:`DPRNNSplitMasker` wraps the Asteroid-shaped DPRNN
  (:class:`modules.models.dprnn_asteroid.DPRNNMaskNet`, ``dprnn_asteroid.yaml``)
  built with ``num_masks = C``: input norm, bottleneck, chunking and the first
  ``split_at`` dual-path blocks, then its own ``PReLU`` and speaker-split 2-D
  convolution (moved from after the last block to the middle) and overlap-add;
  the segregator re-chunks each ``C_i``, runs the other blocks, overlap-adds and
  applies the gated output and the mask convolution. With ``split_at`` = all
  blocks it is the unsplit masker (tested). The split model has exactly the
  parameters of the unsplit one.
* :class:`DualPathSplitMasker` wraps a ``Dual_Path_Model`` (DPRNN, SepFormer)
  built with ``num_spks = C``: norm, bottleneck and the first ``split_at``
  dual-path blocks, then its own ``PReLU`` and speaker-split ``conv2d`` (moved
  from after the last block to the middle) and overlap-add; the segregator
  re-chunks each ``C_i``, runs the other blocks, overlap-adds and applies the
  gated output and the end convolution with ReLU. The split model has exactly
  the parameters of the unsplit one.

:class:`ContextAwareSeparator` is the separator module of both stages
(``separator(mix) -> (estimates [B, T, C], features)`` with the features
``mix_w``, ``context`` ``[B, C, D, L]`` and ``masks``); with
``context_only=True`` (the group stage) it stops after the context extractor.

:class:`ContextPredictor` is the group stage's "shared 1D convolutional
predictor": one head per SSL target mapping each ``C_i`` to the SSL frame rate,
and, for the signal target, a mask-and-decode head.

**Frame alignment** (a choice the paper leaves open). The encoder (kernel 32,
stride 16) gives frame ``l`` over samples ``[16 l, 16 l + 32)``; the SSL CNN
gives frame ``t`` over ``[320 t, 320 t + 400)``. A convolution of kernel
``(400 - 32) / 16 + 1 = 24`` and stride ``320 / 16 = 20`` over the encoder
frames therefore sees exactly the samples of SSL frame ``t`` at its output
``t``, and gives exactly as many frames as the SSL model,
``floor((n - 400) / 320) + 1``, for every input length ``n``
(:func:`aligned_kernel`). ``pooling="conv"`` learns that convolution;
``pooling="mean"`` averages the same 24 frames and applies a 1x1 convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model
from speechbrain.nnet.CNN import Conv1d as SBConv1d

from modules.models.convtasnet import TCNMaskNet, apply_mask_nonlinear
from modules.models.dprnn_asteroid import DPRNNMaskNet
from modules.models.separator import MaskingSeparator, fit_length

__all__ = [
    "PREDICTOR_POOLING",
    "ContextAwareSeparator",
    "ContextPredictor",
    "ConvTasNetSplitMasker",
    "DPRNNSplitMasker",
    "DualPathSplitMasker",
    "SignalHead",
    "aligned_kernel",
    "count_parameters",
]

#: How the predictor brings the encoder frames to the SSL frame rate.
PREDICTOR_POOLING = ("conv", "mean")


def count_parameters(modules):
    """Number of parameters of a module or of a list of modules (shared parameters once).

    Example
    -------
    >>> count_parameters([torch.nn.Linear(2, 3), torch.nn.Linear(3, 1, bias=False)])
    12
    """
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    seen = {id(p): p.numel() for m in modules for p in m.parameters()}
    return sum(seen.values())


def _split_point(n_blocks, split_at):
    split_at = n_blocks // 2 if split_at is None else int(split_at)
    if not 0 <= split_at <= n_blocks:
        raise ValueError(f"split_at must be within [0, {n_blocks}] (the number of blocks), got {split_at}")
    return split_at


class ConvTasNetSplitMasker(torch.nn.Module):
    """Conv-TasNet's masker split into a SIMO context extractor and a SISO segregator.

    Arguments
    ---------
    masknet : modules.models.convtasnet.TCNMaskNet or speechbrain.lobes.models.conv_tasnet.MaskNet
        Built with ``C = 1`` (the segregator predicts one mask per call): the
        skip-path masker with a sigmoid or ReLU mask, SpeechBrain's with a ReLU mask.
    num_spks : int
        Number of speakers (contextual embeddings).
    split_at : int, optional
        Temporal blocks in the context extractor (default: half of the ``R * X`` blocks).

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> masker = ConvTasNetSplitMasker(MaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1), num_spks=2)
    >>> context = masker.extract(torch.rand(3, 8, 50))
    >>> context.shape, masker.segregate(context[:, 0]).shape, masker.split_at
    (torch.Size([3, 2, 6, 50]), torch.Size([3, 8, 50]), 2)
    >>> skip = ConvTasNetSplitMasker(TCNMaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1, Sc=4), num_spks=2)
    >>> context = skip.extract(torch.rand(3, 8, 50))
    >>> context.shape, skip.segregate(context[:, 1]).shape, skip.context_dim  # D = B + Sc
    (torch.Size([3, 2, 10, 50]), torch.Size([3, 8, 50]), 10)
    """

    def __init__(self, masknet, num_spks, split_at=None):
        super().__init__()
        self.skip_path = isinstance(masknet, TCNMaskNet)
        if masknet.C != 1:
            raise ValueError(f"build the Conv-TasNet masker with one mask (num_masks: 1), not {masknet.C}")
        allowed = ("sigmoid", "relu") if self.skip_path else ("relu",)
        if masknet.mask_nonlinear not in allowed:
            raise ValueError(f"the segregator's mask is one mask per call: mask_nonlinear must be one of {allowed}, "
                             f"not {masknet.mask_nonlinear!r}")  # fmt: skip
        self.masknet = masknet
        self.num_spks = int(num_spks)
        self.n_blocks = len(self._blocks(0, None))
        self.split_at = _split_point(self.n_blocks, split_at)
        if self.skip_path:
            self.context_dim = masknet.B + masknet.Sc
            conv = torch.nn.Conv1d(self.context_dim, self.num_spks * self.context_dim, kernel_size=1, bias=False)
        else:
            self.context_dim = masknet.bottleneck_conv1x1.conv.out_channels
            conv = SBConv1d(in_channels=self.context_dim, out_channels=self.num_spks * self.context_dim,
                            kernel_size=1, bias=False)  # fmt: skip
        self.speaker_split = torch.nn.Sequential(torch.nn.PReLU(), conv)

    def _blocks(self, start, stop):
        if self.skip_path:
            return list(self.masknet.blocks)[start:stop]
        return list(self.masknet.temporal_conv_net.values())[start:stop]

    def parts(self):
        """``{"extractor": [modules], "segregator": [modules]}``."""
        net = self.masknet
        if self.skip_path:
            first, last = [net.input_norm, net.bottleneck], [net.output]
        else:
            first, last = [net.layer_norm, net.bottleneck_conv1x1], [net.mask_conv1x1]
        return {
            "extractor": [*first, *self._blocks(0, self.split_at), self.speaker_split],
            "segregator": [*self._blocks(self.split_at, self.n_blocks), *last],
        }

    def extract(self, mix_w):
        """Encoder output ``[B, N, L]`` -> contextual embeddings ``[B, C, D, L]``."""
        batch, _, length = mix_w.shape
        net = self.masknet
        if self.skip_path:
            x = net.embed(mix_w)
            x, skip = net.run_blocks(x, x.new_zeros(batch, net.Sc, length), 0, self.split_at)
            return self.speaker_split(torch.cat([x, skip], dim=1)).reshape(batch, self.num_spks, -1, length)
        y = net.bottleneck_conv1x1(net.layer_norm(mix_w.transpose(1, 2)))  # [B, L, B_ch]
        for block in self._blocks(0, self.split_at):
            y = block(y)
        y = self.speaker_split(y)  # [B, L, C * B_ch]
        return y.reshape(batch, length, self.num_spks, -1).permute(0, 2, 3, 1)

    def segregate(self, context):
        """One speaker's embedding ``[B', D, L]`` -> its mask ``[B', N, L]``."""
        net = self.masknet
        if self.skip_path:
            x, skip = context.split([net.B, net.Sc], dim=1)
            _, skip = net.run_blocks(x, skip, self.split_at, self.n_blocks)
            return apply_mask_nonlinear(net.output(skip), net.mask_nonlinear)
        y = context.transpose(1, 2)
        for block in self._blocks(self.split_at, self.n_blocks):
            y = block(y)
        return F.relu(net.mask_conv1x1(y)).transpose(1, 2)


class DPRNNSplitMasker(torch.nn.Module):
    """The Asteroid-shaped DPRNN masker split into a SIMO context extractor and a SISO segregator.

    Arguments
    ---------
    masknet : modules.models.dprnn_asteroid.DPRNNMaskNet
        Built with ``C`` = the number of speakers and a sigmoid or ReLU mask;
        its speaker-split convolution becomes the SIMO head after ``split_at`` blocks.
    split_at : int, optional
        Dual-path blocks in the context extractor (default: half of them).

    Example
    -------
    >>> masker = DPRNNSplitMasker(DPRNNMaskNet(N=8, C=2, B=6, H=4, K=10, num_layers=2))
    >>> context = masker.extract(torch.rand(3, 8, 47))
    >>> context.shape, masker.segregate(context[:, 1]).shape, masker.split_at
    (torch.Size([3, 2, 6, 47]), torch.Size([3, 8, 47]), 1)
    """

    def __init__(self, masknet, split_at=None):
        super().__init__()
        if not isinstance(masknet, DPRNNMaskNet):
            raise TypeError(f"expected a modules.models.dprnn_asteroid.DPRNNMaskNet, got {type(masknet).__name__}")
        if masknet.mask_nonlinear == "softmax":
            raise ValueError("the segregator predicts one mask per call: mask_nonlinear must be sigmoid or relu")
        self.masknet = masknet
        self.num_spks = masknet.C
        self.n_blocks = masknet.num_layers
        self.split_at = _split_point(self.n_blocks, split_at)
        self.context_dim = masknet.B

    def parts(self):
        """``{"extractor": [modules], "segregator": [modules]}``."""
        net = self.masknet
        return {
            "extractor": [net.input_norm, net.bottleneck, *net.blocks[: self.split_at], net.speaker_split],
            "segregator": [*net.blocks[self.split_at :], net.gate_tanh, net.gate_sigmoid, net.mask_conv],
        }

    def extract(self, mix_w):
        """Encoder output ``[B, N, L]`` -> contextual embeddings ``[B, C, D, L]``."""
        net = self.masknet
        batch, _, length = mix_w.shape
        x = net.run_blocks(net.chunk(net.embed(mix_w)), 0, self.split_at)
        x = net.speaker_split(x)  # [B, C * D, K, S]
        x = net.merge(x.reshape(batch * self.num_spks, net.B, *x.shape[2:]), length)
        return x.reshape(batch, self.num_spks, net.B, length)

    def segregate(self, context):
        """One speaker's embedding ``[B', D, L]`` -> its mask ``[B', N, L]`` (no blocks left: no re-chunking)."""
        net = self.masknet
        if self.split_at < self.n_blocks:
            context = net.merge(net.run_blocks(net.chunk(context), self.split_at, self.n_blocks), context.shape[-1])
        return net.masks_from(context)


class DualPathSplitMasker(torch.nn.Module):
    """A dual-path masker (DPRNN, SepFormer) split into a SIMO context extractor and a SISO segregator.

    Arguments
    ---------
    model : speechbrain.lobes.models.dual_path.Dual_Path_Model
        Built with ``num_spks`` = the number of speakers; its speaker-split
        convolution becomes the SIMO head after ``split_at`` blocks.
    split_at : int, optional
        Dual-path blocks in the context extractor (default: half of them).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Dual_Path_Model, SBRNNBlock
    >>> rnn = SBRNNBlock(input_size=6, hidden_channels=4, num_layers=1, bidirectional=True)
    >>> masker = DualPathSplitMasker(Dual_Path_Model(8, 6, rnn, rnn, num_layers=2, K=10, num_spks=2))
    >>> context = masker.extract(torch.rand(3, 8, 47))
    >>> context.shape, masker.segregate(context[:, 1]).shape
    (torch.Size([3, 2, 6, 47]), torch.Size([3, 8, 47]))
    """

    def __init__(self, model, split_at=None):
        super().__init__()
        if not isinstance(model, Dual_Path_Model):
            raise TypeError(f"expected a speechbrain Dual_Path_Model, got {type(model).__name__}")
        self.model = model
        self.num_spks = model.num_spks
        self.n_blocks = model.num_layers
        self.split_at = _split_point(self.n_blocks, split_at)
        self.context_dim = model.conv1d.out_channels

    def parts(self):
        """``{"extractor": [modules], "segregator": [modules]}``."""
        m = self.model
        first = [m.norm, m.conv1d, *([m.pos_enc] if m.use_global_pos_enc else [])]
        return {
            "extractor": [*first, *m.dual_mdl[: self.split_at], m.prelu, m.conv2d],
            "segregator": [*m.dual_mdl[self.split_at :], m.output, m.output_gate, m.end_conv1x1],
        }

    # Dual_Path_Model's chunking and overlap-add (speechbrain 1.1.2), reused as they are.
    def _chunk(self, x):
        return Dual_Path_Model._Segmentation(self.model, x, self.model.K)

    def _merge(self, x, gap):
        return Dual_Path_Model._over_add(self.model, x, gap)

    def extract(self, mix_w):
        """Encoder output ``[B, N, L]`` -> contextual embeddings ``[B, C, D, L]``."""
        m = self.model
        x = m.conv1d(m.norm(mix_w))
        if m.use_global_pos_enc:
            x = m.pos_enc(x.transpose(1, -1)).transpose(1, -1) + x * (x.size(1) ** 0.5)
        x, gap = self._chunk(x)
        for block in m.dual_mdl[: self.split_at]:
            x = block(x)
        x = m.conv2d(m.prelu(x))  # [B, D * C, K, S]
        batch, _, chunk, n_chunks = x.shape
        x = self._merge(x.reshape(batch * self.num_spks, -1, chunk, n_chunks), gap)  # [B * C, D, L]
        return x.reshape(batch, self.num_spks, x.shape[1], x.shape[2])

    def segregate(self, context):
        """One speaker's embedding ``[B', D, L]`` -> its mask ``[B', N, L]``."""
        m = self.model
        x, gap = self._chunk(context)
        for block in m.dual_mdl[self.split_at :]:
            x = block(x)
        x = self._merge(x, gap)
        x = m.output(x) * m.output_gate(x)
        return m.activation(m.end_conv1x1(x))


class ContextAwareSeparator(MaskingSeparator):
    """Encoder -> SIMO context extractor -> SISO segregator per speaker -> masks on ``E_m`` -> decoder.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``[B, T] -> [B, N, L]`` (``speechbrain.lobes.models.dual_path.Encoder``, kernel 32, stride 16).
    masker : ConvTasNetSplitMasker, DPRNNSplitMasker or DualPathSplitMasker
        Has ``extract(mix_w) -> [B, C, D, L]`` and ``segregate([B', D, L]) -> [B', N, L]``.
    decoder : torch.nn.Module
        ``[B', N, L] -> [B', T']``.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> sep = ContextAwareSeparator(
    ...     Encoder(kernel_size=32, out_channels=8),
    ...     ConvTasNetSplitMasker(MaskNet(N=8, B=6, H=8, P=3, X=2, R=1, C=1), num_spks=2),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=32, stride=16, bias=False),
    ... )
    >>> est, feats = sep(torch.randn(2, 1600))
    >>> est.shape, feats["context"].shape, feats["masks"].shape
    (torch.Size([2, 1600, 2]), torch.Size([2, 2, 6, 99]), torch.Size([2, 2, 8, 99]))
    >>> sep(torch.randn(2, 1600), context_only=True)[0] is None
    True
    """

    def __init__(self, encoder, masker, decoder):
        super().__init__(encoder, masker, decoder)

    @property
    def num_spks(self):
        """Number of speakers (contextual embeddings, outputs)."""
        return self.masker.num_spks

    def parts(self):
        """``{"extractor": [...], "segregator": [...], "encoder": [...], "decoder": [...]}`` (modules)."""
        return {"encoder": [self.encoder], **self.masker.parts(), "decoder": [self.decoder]}

    def segregate(self, context):
        """The segregator on each speaker's embedding: ``[B, C, D, L] -> masks [C, B, N, L]``."""
        batch, n_spks = context.shape[:2]
        masks = self.masker.segregate(context.flatten(0, 1))  # one SISO call per (item, speaker)
        return masks.reshape(batch, n_spks, *masks.shape[1:]).transpose(0, 1)

    def mask(self, masker_input):
        """``[B, N, L] -> [C, B, N, L]``: context extractor, then the segregator per speaker."""
        return self.segregate(self.masker.extract(masker_input))

    def forward(self, mix, context_only=False):
        """Separates ``mix`` ``[B, T]``.

        Arguments
        ---------
        mix : torch.Tensor
        context_only : bool
            Stop after the context extractor (group stage): the estimates are ``None``.

        Returns
        -------
        estimates : torch.Tensor or None
            ``[B, T, C]``.
        features : dict
            ``mix_w`` ``[B, N, L]``, ``context`` ``[B, C, D, L]`` and (unless
            ``context_only``) ``masks`` ``[C, B, N, L]``.
        """
        mix_w = self.encode(mix)
        context = self.masker.extract(mix_w)
        features = {"mix_w": mix_w, "context": context}
        if context_only:
            return None, features
        masks = self.segregate(context)
        estimates = fit_length(self.decode(mix_w, masks), mix.shape[-1])
        return estimates, {**features, "masks": masks}


def aligned_kernel(encoder_kernel=32, encoder_stride=16, ssl_kernel=400, ssl_hop=320):
    """Kernel and stride over encoder frames that see exactly the samples of one SSL frame.

    Encoder frame ``l`` covers ``[s l, s l + k)``; SSL frame ``t`` covers
    ``[H t, H t + K)``. Encoder frames ``H t / s`` to ``H t / s + (K - k) / s``
    tile it, so a convolution of kernel ``(K - k) / s + 1`` and stride ``H / s``
    maps encoder frames to SSL frames one to one, for every input length
    (see the module docstring).

    Returns
    -------
    (int, int)

    Example
    -------
    >>> aligned_kernel(32, 16)
    (24, 20)
    """
    if (ssl_kernel - encoder_kernel) % encoder_stride or ssl_hop % encoder_stride or ssl_kernel < encoder_kernel:
        raise ValueError(
            f"an encoder of kernel {encoder_kernel} and stride {encoder_stride} does not tile the SSL frames "
            f"(kernel {ssl_kernel}, hop {ssl_hop}): need (K - k) and H divisible by the stride"
        )
    return (ssl_kernel - encoder_kernel) // encoder_stride + 1, ssl_hop // encoder_stride


class SignalHead(torch.nn.Module):
    """The group stage's signal target: ``C_i`` -> a mask on ``E_m`` -> its own decoder -> ``s^_i``.

    A 1x1 convolution ``D -> N`` with ReLU, applied to the encoder output and
    decoded by a transposed convolution (kernel ``kernel_size``, stride half of it),
    all dropped after the group stage with the rest of the predictor.

    Arguments
    ---------
    in_channels : int
        ``D``, the context dimension.
    n_filters : int
        ``N``, the encoder's channels.
    kernel_size : int
        The encoder's kernel (32).
    """

    def __init__(self, in_channels, n_filters, kernel_size=32):
        super().__init__()
        self.mask = torch.nn.Conv1d(in_channels, n_filters, 1)
        self.decoder = Decoder(in_channels=n_filters, out_channels=1, kernel_size=kernel_size,
                               stride=kernel_size // 2, bias=False)  # fmt: skip

    def forward(self, context, mix_w, n_samples):
        """``context`` ``[B, C, D, L]``, ``mix_w`` ``[B, N, L]`` -> signals ``[B, n_samples, C]``."""
        batch, n_spks = context.shape[:2]
        masks = F.relu(self.mask(context.flatten(0, 1)))  # [B * C, N, L]
        signals = self.decoder(masks * mix_w.repeat_interleave(n_spks, dim=0)).reshape(batch, n_spks, -1)
        return fit_length(signals.transpose(1, 2), n_samples)


class ContextPredictor(torch.nn.Module):
    """The group stage's predictor, shared by the speakers: ``C_i`` -> ``U~_i`` per SSL target (and ``s^_i``).

    Arguments
    ---------
    in_channels : int
        ``D``, the context dimension (the masker's ``context_dim``).
    target_dims : dict of str -> int
        ``{tap: SSL feature dimension}`` (``modules.models.ssl.tap_dims(teacher)``).
    encoder_kernel, encoder_stride : int
        The separator's encoder (32, 16): they fix the alignment (:func:`aligned_kernel`).
    pooling : str
        ``conv`` (a learnt convolution of the aligned kernel and stride) or
        ``mean`` (the mean of the same frames, then a 1x1 convolution).
    signal : bool
        Also predict the signals (``signal`` or ``hybrid`` targets), with a :class:`SignalHead`.
    n_filters : int, optional
        ``N``, the encoder's channels (needed with ``signal``).

    Example
    -------
    >>> predictor = ContextPredictor(6, {"word": 16}, signal=True, n_filters=8)
    >>> out = predictor(torch.rand(2, 2, 6, 99), torch.rand(2, 8, 99), 1600)
    >>> out["word"].shape, out["signal"].shape  # [B, SSL frames, C, dim], [B, T, C]
    (torch.Size([2, 4, 2, 16]), torch.Size([2, 1600, 2]))
    """

    def __init__(self, in_channels, target_dims, encoder_kernel=32, encoder_stride=16, pooling="conv", signal=False,
                 n_filters=None):  # fmt: skip
        super().__init__()
        if pooling not in PREDICTOR_POOLING:
            raise ValueError(f"pooling must be one of {PREDICTOR_POOLING}, not {pooling!r}")
        self.kernel, self.stride = aligned_kernel(encoder_kernel, encoder_stride)
        self.pooling = pooling
        heads = {}
        for tap, dim in dict(target_dims).items():
            if pooling == "conv":
                heads[tap] = torch.nn.Conv1d(in_channels, dim, self.kernel, stride=self.stride)
            else:
                heads[tap] = torch.nn.Sequential(
                    torch.nn.AvgPool1d(self.kernel, stride=self.stride), torch.nn.Conv1d(in_channels, dim, 1)
                )
        self.heads = torch.nn.ModuleDict(heads)
        if signal and n_filters is None:
            raise ValueError("the signal head needs n_filters (the encoder's channels)")
        self.signal = SignalHead(in_channels, n_filters, encoder_kernel) if signal else None
        if not heads and self.signal is None:
            raise ValueError("the predictor has nothing to predict: give target_dims or signal=True")

    def forward(self, context, mix_w, n_samples):
        """Predictions for one batch.

        Arguments
        ---------
        context : torch.Tensor
            ``[B, C, D, L]`` from the context extractor.
        mix_w : torch.Tensor
            ``[B, N, L]``, the encoder output (for the signal head).
        n_samples : int
            Input length (for the signal head).

        Returns
        -------
        dict
            ``{tap: [B, F, C, dim]}`` (``F`` SSL frames) and ``signal`` ``[B, T, C]`` when predicted.
        """
        batch, n_spks = context.shape[:2]
        flat = context.flatten(0, 1)
        out = {}
        for tap, head in self.heads.items():
            pred = head(flat)  # [B * C, dim, F]
            out[tap] = pred.reshape(batch, n_spks, *pred.shape[1:]).permute(0, 3, 1, 2)
        if self.signal is not None:
            out["signal"] = self.signal(context, mix_w, n_samples)
        return out
