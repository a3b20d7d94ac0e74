"""DPCCN and sDPCCN: densely-connected pyramid complex convolutional network (Han et al., ICASSP 2022).

Paper: J. Han, Y. Long, L. Burget, J. Černocký, "DPCCN: Densely-connected
pyramid complex convolutional network for robust speech separation and
extraction", ICASSP 2022 (section 2.1, section 4.1, Figure 1). Architecture
constants from the authors' public model code (github.com/jyhan03/dpccn,
``nnet_dpccn.py`` and ``libs/conv_stft.py``, read and re-implemented, not
copied); every layer below was checked against it.

Signal path of :class:`DPCCN` (``[B, C, T, F]``: channels, STFT frames, frequency bins):

* STFT, 512-point FFT, 128 hop, square-root periodic Hann window, the input
  padded by ``win - hop`` samples on both sides as the authors' ``ConvSTFT``
  does; the waveform is first divided by its standard deviation
  ("variance normalisation"). Real and imaginary planes are the 2 input
  channels (``magnitude_input=True`` adds the magnitude as a third: Table 2,
  "w/ magnitude spectrum").
* ``Conv2d(2, 16, 3, padding=(1, 0))``: frequency 257 -> 255.
* Encoder: ``DenseBlock(16)``; 4 x [``Conv2dBlock`` stride (1, 2) ->
  ``DenseBlock(32)``]; ``Conv2dBlock`` 32 -> 64 -> 128 -> 384, stride (1, 2).
  Frequency 255 -> 127 -> 63 -> 31 -> 15 -> 7 -> 3 -> 1. A ``Conv2dBlock`` is
  Conv2d -> ELU -> InstanceNorm2d (no affine parameters); a ``DenseBlock`` is
  five of them, each fed the concatenation of the block input and all
  earlier outputs.
* TCN: 2 layers x 10 blocks over the 384 x T bottleneck; a block is
  IN -> ELU -> depthwise dilated Conv1d (kernel 3, dilation 1 ... 512) ->
  IN -> ELU -> 1x1 Conv1d, plus the residual.
* Decoder, mirrored, each stage fed ``cat(skip, previous)``:
  ``ConvTranspose2dBlock`` 768 -> 128, 256 -> 64, 128 -> 32; 4 x
  [``DenseBlock`` (64 in, 64 out) -> ``ConvTranspose2dBlock`` 64 -> 32 (16 for
  the last)]; ``DenseBlock`` (32 in, 32 out). Frequency 1 -> ... -> 255.
* Pyramid pooling (scales 4, 8, 16, 32): square ``AvgPool2d`` -> 1x1 conv
  32 -> 8 -> bilinear upsampling to ``(T, F)``; ``cat`` with the input (64
  channels) -> 1x1 conv 64 -> 32. ``pyramid=False`` leaves it out (Table 2,
  "w/o pyramid layer").
* ``ConvTranspose2d(32, 2 * n_outputs, 3, padding=(1, 0))``: frequency 255 ->
  257; channels ``2k, 2k + 1`` are the real and imaginary parts of output
  ``k``; inverse STFT (overlap-add normalised by the summed squared window).

With the default sizes and two outputs the model has 6,300,980 parameters,
the count of the authors' ``DenseUNet()`` (the STFT kernels are buffers
there and windows here); parameters are created in the same order, and with
the authors' weights copied in, the outputs on 4 s inputs agree with theirs
to 3e-7 (a one-off check against their code, which is not vendored here).

sDPCCN (``speaker_encoder=True``, one output; paper section 2.1): the
:class:`SpeakerEncoder` turns the enrollment's magnitude spectrum into a
``[B, 16, 1, 255]`` map (Conv1d + ReLU -> Conv1d block with channel-wise
layer norm -> reshape to 4-D -> 2-D conv block -> average over time) that
multiplies the output of the first dense block of the encoder, element by
element, broadcast over time.

Departures (each also in the README's DPCCN section):

* Inputs shorter than the pyramid's largest pooling (32 STFT frames, 0.46 s
  at 8 kHz) are zero-padded to it and the outputs cut back (the authors'
  square ``AvgPool2d(32)`` fails on them); inputs are also padded to a
  multiple of the hop so that no trailing sample is dropped.
* The outputs are multiplied back by the input's standard deviation, so
  that the estimates have the mixture's scale (the authors return them at
  the normalised scale). SI-SNR, the training loss, does not change.
* The STFT pair is ``torch.stft`` and an ``irfft`` overlap-add, numerically
  the same transform as the authors' convolution kernels (their ``pinv``
  synthesis kernel is the inverse real DFT), always computed in float32
  outside autocast.
* The authors' code has no sDPCCN. The paper does not say which DPCCN
  feature map the speaker embedding multiplies, nor the speaker encoder's
  sizes. Here it multiplies the output of the first dense block, the one
  map whose shape (16 channels x 255 bins) a time-pooled 2-D conv block on
  a 255-bin spectrum reproduces without a projection; WeSep's DPCCN for
  target speech extraction (wenet-e2e/wesep, ``wesep/models/dpccn.py``)
  fuses its speaker embedding at the same place. Speaker-encoder sizes
  (``spk_kernel_size``, ``spk_hidden``) are ours. Padded enrollment frames are
  left out of the instance norm's statistics and of the time average.
* Padding: given the items' ``lengths``, a batch holding a padded item runs
  each item on its own samples (the authors' code normalises and pools over
  the padding, so a 3 s item padded to 4 s came out only 15-16 dB SI-SNR from
  its unpadded output; now it is the same output). Training crops of equal
  length still run as one batch.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DPCCN",
    "ChannelLayerNorm",
    "Conv2dBlock",
    "ConvTranspose2dBlock",
    "DenseBlock",
    "PyramidPooling",
    "SpeakerEncoder",
    "StftPair",
    "TCNBlock",
    "check_training_loss",
]

#: Training losses of the DPCCN recipes: the paper's negative SI-SNR, and Table 2's "w/ DenseUNet's loss".
TRAINING_LOSSES = ("si_snr", "denseunet")


def check_training_loss(name):
    """The training loss a DPCCN yaml names (its ``loss`` key): ``"si_snr"``, or an error.

    ``"denseunet"`` is the DPCCN paper's Table 2 row "DPCCN w/ DenseUNet's
    loss" (9.3 dB implied: "using the negative SISNR loss function can bring
    a 1.1 dB improvement"), the loss of DenseUNet (Z.-Q. Wang and D. Wang,
    "Count and separate", ICASSP 2021, [18] of the paper). The DPCCN paper
    calls it "the original RI related loss function" and gives no formula;
    the authors' public code (jyhan03/dpccn) has the model only, no loss;
    nor does it say whether the loss would see the output layer's RI planes
    or the STFT of the output waveform. Not implemented: it raises
    :class:`NotImplementedError` rather than guess.

    Example
    -------
    >>> check_training_loss("si_snr")
    'si_snr'
    >>> check_training_loss("denseunet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    NotImplementedError: Table 2's "DPCCN w/ DenseUNet's loss" is not implemented: ...
    """
    if name == "denseunet":
        raise NotImplementedError(
            "Table 2's \"DPCCN w/ DenseUNet's loss\" is not implemented: the DPCCN paper names DenseUNet's RI "
            "loss ([18], Wang and Wang, ICASSP 2021) without its formula, and the authors' public code has no loss; "
            "train with loss: si_snr (the paper's)"
        )
    if name not in TRAINING_LOSSES:
        raise ValueError(f"loss must be one of {TRAINING_LOSSES}, got {name!r}")
    return name


class Conv2dBlock(nn.Sequential):
    """Conv2d -> ELU -> InstanceNorm2d (no affine parameters), the authors' ``Conv2dBlock``.

    Example
    -------
    >>> Conv2dBlock(16, 32, stride=(1, 2), padding=(1, 0))(torch.randn(1, 16, 10, 255)).shape
    torch.Size([1, 32, 10, 127])
    """

    def __init__(self, in_channels, out_channels, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.ELU(),
            nn.InstanceNorm2d(out_channels),
        )


class ConvTranspose2dBlock(nn.Sequential):
    """ConvTranspose2d -> ELU -> InstanceNorm2d, the authors' ``ConvTrans2dBlock``.

    Example
    -------
    >>> ConvTranspose2dBlock(32, 16)(torch.randn(1, 32, 10, 127)).shape
    torch.Size([1, 16, 10, 255])
    """

    def __init__(self, in_channels, out_channels, kernel_size=(3, 3), stride=(1, 2), padding=(1, 0)):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding),
            nn.ELU(),
            nn.InstanceNorm2d(out_channels),
        )


class DenseBlock(nn.Module):
    """Five :class:`Conv2dBlock` (kernel 3, same padding), each fed all earlier outputs and the input.

    Layer ``i`` takes ``in_channels + i * growth`` channels and gives
    ``growth`` (the last gives ``out_channels``). The authors' encoder blocks
    have ``in_channels == growth``, their decoder blocks ``in_channels ==
    2 * growth`` (skip and previous stage concatenated).

    Arguments
    ---------
    in_channels : int
    growth : int
    out_channels : int
    n_layers : int

    Example
    -------
    >>> block = DenseBlock(64, 32, 64)
    >>> block(torch.randn(1, 64, 5, 15)).shape, [layer[0].in_channels for layer in block.layers]
    (torch.Size([1, 64, 5, 15]), [64, 96, 128, 160, 192])
    """

    def __init__(self, in_channels, growth, out_channels, n_layers=5):
        super().__init__()
        self.layers = nn.ModuleList(
            Conv2dBlock(in_channels + i * growth, out_channels if i == n_layers - 1 else growth)
            for i in range(n_layers)
        )

    def forward(self, x):
        """``[B, in_channels, T, F] -> [B, out_channels, T, F]``."""
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1) if len(features) > 1 else x))
        return features[-1]


class TCNBlock(nn.Module):
    """IN -> ELU -> depthwise dilated Conv1d -> IN -> ELU -> 1x1 Conv1d, plus the input (non-causal).

    Example
    -------
    >>> TCNBlock(8, dilation=4)(torch.randn(2, 8, 50)).shape
    torch.Size([2, 8, 50])
    """

    def __init__(self, channels, kernel_size=3, dilation=1):
        super().__init__()
        self.net = nn.Sequential(
            nn.InstanceNorm1d(channels),
            nn.ELU(),
            nn.Conv1d(
                channels,
                channels,
                kernel_size,
                padding=dilation * (kernel_size - 1) // 2,
                dilation=dilation,
                groups=channels,
            ),
            nn.InstanceNorm1d(channels),
            nn.ELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x):
        """``[B, C, T] -> [B, C, T]``."""
        return x + self.net(x)


class PyramidPooling(nn.Module):
    """Pyramid pooling: per scale, square average pooling -> 1x1 conv -> bilinear upsampling; concat; 1x1 conv.

    Arguments
    ---------
    channels : int
        Input and output channels (32 in DPCCN).
    pool_channels : int
        Channels of each scale's 1x1 conv (8).
    sizes : sequence of int
        Pooling kernel = stride of each scale (4, 8, 16, 32): the input needs
        at least ``max(sizes)`` frames and bins.

    Example
    -------
    >>> PyramidPooling(32, 8, (4, 8, 16, 32))(torch.randn(1, 32, 40, 255)).shape
    torch.Size([1, 32, 40, 255])
    """

    def __init__(self, channels, pool_channels, sizes):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.scales = nn.ModuleList(
            nn.Sequential(nn.AvgPool2d(size), nn.Conv2d(channels, pool_channels, 1)) for size in self.sizes
        )
        self.project = nn.Conv2d(channels + len(self.sizes) * pool_channels, channels, 1)

    def forward(self, x):
        """``[B, C, T, F] -> [B, C, T, F]``."""
        size = x.shape[-2:]
        pooled = [F.interpolate(scale(x), size=size, mode="bilinear", align_corners=False) for scale in self.scales]
        return self.project(torch.cat([x, *pooled], dim=1))


class StftPair(nn.Module):
    """The authors' STFT / iSTFT pair: sqrt-Hann window, ``win - hop`` samples of zero padding on each side.

    The analysis is ``torch.stft`` on the padded signal (no centring); the
    synthesis is the inverse real DFT of every frame, windowed, overlap-added
    and divided by the overlap-added squared window (+1e-8), then the padding
    is cut. Analysis then synthesis returns the input to float precision.

    Arguments
    ---------
    n_fft : int
    hop_length : int

    Example
    -------
    >>> stft = StftPair(512, 128)
    >>> x = torch.randn(2, 4096)
    >>> spec = stft(x)
    >>> spec.shape, stft.n_frames(4096)
    (torch.Size([2, 257, 35]), 35)
    >>> bool(torch.allclose(stft.inverse(spec, 4096), x, atol=1e-4))
    True
    """

    def __init__(self, n_fft=512, hop_length=128):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(hop_length)
        self.pad = self.n_fft - self.hop
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64).sqrt()
        self.register_buffer("window", window.float(), persistent=False)

    def n_frames(self, n_samples):
        """Frames of a signal of ``n_samples`` samples."""
        return (n_samples + 2 * self.pad - self.n_fft) // self.hop + 1

    def min_samples(self, n_frames):
        """Fewest samples (a multiple of the hop) that give at least ``n_frames`` frames."""
        need = (n_frames - 1) * self.hop + self.n_fft - 2 * self.pad
        return max(self.hop, math.ceil(need / self.hop) * self.hop)

    def forward(self, x):
        """``[B, T] -> [B, n_fft // 2 + 1, frames]`` complex64."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.pad(x.float(), (self.pad, self.pad))
            return torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)

    def inverse(self, spec, length=None):
        """``[B, n_fft // 2 + 1, frames]`` complex -> ``[B, samples]`` float32 (cut to ``length``)."""
        with torch.autocast(device_type=spec.device.type, enabled=False):
            frames = torch.fft.irfft(spec.to(torch.complex64), n=self.n_fft, dim=1) * self.window[:, None]
            n_frames = frames.shape[-1]
            total = (n_frames - 1) * self.hop + self.n_fft
            fold = {"output_size": (1, total), "kernel_size": (1, self.n_fft), "stride": (1, self.hop)}
            signal = F.fold(frames, **fold)[:, 0, 0]
            envelope = self.window.square()[None, :, None].expand(1, -1, n_frames)
            envelope = F.fold(envelope, **fold)[:, 0, 0]
            signal = (signal / (envelope + 1e-8))[:, self.pad : total - self.pad]
        return signal if length is None else signal[:, :length]


class ChannelLayerNorm(nn.LayerNorm):
    """Channel-wise layer norm of Conv-TasNet (cLN): each frame normalised over its channels.

    Example
    -------
    >>> y = ChannelLayerNorm(4)(torch.randn(2, 4, 7))
    >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
    (torch.Size([2, 4, 7]), True)
    """

    def forward(self, x):
        """``[B, C, T] -> [B, C, T]``."""
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _masked_instance_norm(x, mask, eps=1e-5):
    """InstanceNorm2d statistics over the valid frames only (``mask`` ``[B, 1, T, 1]``, 1 = valid)."""
    count = (mask.sum(dim=(2, 3), keepdim=True) * x.shape[-1]).clamp(min=1)
    mean = (x * mask).sum(dim=(2, 3), keepdim=True) / count
    var = ((x - mean).square() * mask).sum(dim=(2, 3), keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps) * mask


def _normalise_variance(x, lengths=None, eps=1e-8):
    """``x / std(x)`` per item over its valid samples (``torch.std``'s unbiased estimate); ``(normalised, std [B, 1])``.

    A silent or one-sample item gets ``std = eps`` instead of 0 or NaN.
    """
    if lengths is None:
        valid = torch.ones_like(x)
    else:
        valid = (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)
    n = valid.sum(-1, keepdim=True)
    mean = (x * valid).sum(-1, keepdim=True) / n.clamp(min=1)
    std = (((x - mean) * valid).square().sum(-1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
    std = std.clamp(min=eps)
    return x / std, std


class SpeakerEncoder(nn.Module):
    """sDPCCN's speaker encoder (paper section 2.1): enrollment -> ``[B, channels, 1, freq_bins]``.

    Magnitude spectrum of the variance-normalised enrollment (the same STFT
    as DPCCN) -> Conv1d (frequency bins as channels, to ``freq_bins``) + ReLU
    -> Conv-TasNet 1-D conv block (1x1 conv -> PReLU -> cLN -> depthwise conv
    -> PReLU -> cLN -> 1x1 conv, residual) -> reshape to ``[B, 1, T, freq_bins]``
    -> :class:`Conv2dBlock` to ``channels`` (instance norm over the valid frames)
    -> mean over the valid frames. Padded frames of a batch are zeroed after
    every layer, so an item gets the embedding it gets alone.

    Arguments
    ---------
    stft : StftPair
    freq_bins : int
        Bins of the DPCCN map the output multiplies (255).
    channels : int
        Channels of that map (16).
    kernel_size : int
        Kernel of the first Conv1d.
    hidden : int
        Hidden channels of the 1-D conv block.

    Example
    -------
    >>> enc = SpeakerEncoder(StftPair(512, 128), freq_bins=255, channels=4, hidden=16)
    >>> emb = enc(torch.randn(2, 6000), torch.tensor([6000, 4000]))
    >>> emb.shape
    torch.Size([2, 4, 1, 255])
    >>> alone = enc(torch.randn(2, 6000)[1:, :4000] * 0)  # shapes of a single item work too
    >>> alone.shape
    torch.Size([1, 4, 1, 255])
    """

    def __init__(self, stft, freq_bins=255, channels=16, kernel_size=3, hidden=512):
        super().__init__()
        self.stft = stft
        n_bins = stft.n_fft // 2 + 1
        self.input = nn.ModuleList([nn.Conv1d(n_bins, freq_bins, kernel_size, padding=kernel_size // 2), nn.ReLU()])
        self.block = nn.ModuleList(
            [
                nn.Conv1d(freq_bins, hidden, 1),
                nn.PReLU(),
                ChannelLayerNorm(hidden),
                nn.Conv1d(hidden, hidden, 3, padding=1, groups=hidden),
                nn.PReLU(),
                ChannelLayerNorm(hidden),
                nn.Conv1d(hidden, freq_bins, 1),
            ]
        )
        self.conv2d = nn.Conv2d(1, channels, 3, padding=1)
        self.activation = nn.ELU()

    def forward(self, enroll, enroll_lengths=None):
        """``enroll [B, T_e]`` (zero-padded), ``enroll_lengths [B]`` -> ``[B, channels, 1, freq_bins]``."""
        x, _ = _normalise_variance(enroll, enroll_lengths)
        spec = self.stft(x)
        magnitude = (spec.real.square() + spec.imag.square() + 1e-8).sqrt()  # [B, n_bins, frames]
        frames = magnitude.shape[-1]
        if enroll_lengths is None:
            valid = torch.ones(x.shape[0], frames, device=x.device)
        else:
            n_valid = (enroll_lengths + 2 * self.stft.pad - self.stft.n_fft) // self.stft.hop + 1
            valid = (torch.arange(frames, device=x.device)[None, :] < n_valid.clamp(min=1)[:, None]).float()
        valid = valid.to(self.conv2d.weight.dtype)[:, None, :]
        h = magnitude.to(valid.dtype) * valid
        for layer in self.input:
            h = layer(h) * valid  # padded frames stay zero, as if the item were alone
        residual = h
        for layer in self.block:
            h = layer(h) * valid
        h = residual + h
        mask = valid[..., None]  # [B, 1, frames, 1]
        h = self.activation(self.conv2d(h.transpose(1, 2)[:, None]))  # [B, channels, frames, freq_bins]
        h = _masked_instance_norm(h, mask)
        return h.sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True).clamp(min=1)


class DPCCN(nn.Module):
    """DPCCN (speech separation) or, with ``speaker_encoder=True``, sDPCCN (target speech extraction).

    Called as ``model(mix)`` (DPCCN) or ``model(mix, enroll=..., enroll_lengths=...)``
    (sDPCCN): ``[B, T] -> (estimates [B, T, n_outputs], {})``, the separator
    call of :mod:`modules.models.separator`. See the module docstring for
    the layers, the sizes of the authors' model and the departures.

    Arguments
    ---------
    n_outputs : int
        Speakers to estimate (1 for extraction).
    n_fft, hop_length : int
        STFT size and hop (512, 128).
    first_channels : int
        Channels of the input conv and the first dense block (16).
    dense_channels : int
        Channels of the four strided dense stages (32).
    deep_channels : sequence of int
        Channels of the strided convs between those and the TCN (64, 128).
    tcn_channels : int
        Bottleneck channels (384).
    tcn_blocks, tcn_layers : int
        Blocks per TCN layer (dilations ``2**b``) and layers (10, 2).
    tcn_kernel_size : int
    dense_layers : int
        Conv2d blocks per dense block (5; fewer for small CPU models).
    pyramid : bool
        Use the pyramid pooling block.
    pool_sizes : sequence of int
        Its scales (4, 8, 16, 32).
    pool_channels : int
        Channels of each scale (8).
    magnitude_input : bool
        Add the magnitude spectrum as a third input plane.
    speaker_encoder : bool
        sDPCCN: condition on an enrollment utterance (:class:`SpeakerEncoder`).
    spk_kernel_size, spk_hidden : int
        Sizes of the speaker encoder.

    Example
    -------
    >>> model = DPCCN(2, first_channels=2, dense_channels=4, deep_channels=(4, 4), tcn_channels=8,
    ...               tcn_blocks=2, tcn_layers=1)
    >>> est, features = model(torch.randn(3, 2000))  # shorter than 32 frames: padded inside
    >>> est.shape, features
    (torch.Size([3, 2000, 2]), {})
    >>> tse = DPCCN(1, first_channels=2, dense_channels=4, deep_channels=(4, 4), tcn_channels=8,
    ...             tcn_blocks=2, tcn_layers=1, speaker_encoder=True, spk_hidden=8)
    >>> tse(torch.randn(2, 8000), enroll=torch.randn(2, 6000), enroll_lengths=torch.tensor([6000, 5000]))[0].shape
    torch.Size([2, 8000, 1])
    """

    def __init__(
        self,
        n_outputs=2,
        n_fft=512,
        hop_length=128,
        first_channels=16,
        dense_channels=32,
        deep_channels=(64, 128),
        tcn_channels=384,
        tcn_blocks=10,
        tcn_layers=2,
        tcn_kernel_size=3,
        dense_layers=5,
        pyramid=True,
        pool_sizes=(4, 8, 16, 32),
        pool_channels=8,
        magnitude_input=False,
        speaker_encoder=False,
        spk_kernel_size=3,
        spk_hidden=512,
    ):
        super().__init__()
        self.n_outputs = int(n_outputs)
        self.magnitude_input = bool(magnitude_input)
        self.stft = StftPair(n_fft, hop_length)
        c1, c2, deep = int(first_channels), int(dense_channels), [int(c) for c in deep_channels]
        freq = n_fft // 2 + 1 - 2  # after the input conv's (1, 0) padding
        n_strided = 4 + len(deep) + 1
        bottom = freq
        for _ in range(n_strided):
            bottom = (bottom - 3) // 2 + 1
        if bottom != 1:
            raise ValueError(
                f"n_fft={n_fft} with {n_strided} stride-2 convs leaves {bottom} frequency bins at the TCN, "
                "not 1: change deep_channels (one entry per extra halving)"
            )
        self.freq_bins = freq
        self.input_conv = nn.Conv2d(3 if self.magnitude_input else 2, c1, 3, padding=(1, 0))
        down = {"stride": (1, 2), "padding": (1, 0)}
        n = int(dense_layers)
        encoder = [DenseBlock(c1, c1, c1, n)]
        for i in range(4):
            encoder.append(nn.Sequential(Conv2dBlock(c1 if i == 0 else c2, c2, **down), DenseBlock(c2, c2, c2, n)))
        widths = [c2, *deep, int(tcn_channels)]
        for a, b in itertools.pairwise(widths):
            encoder.append(Conv2dBlock(a, b, **down))
        self.encoder = nn.ModuleList(encoder)
        self.tcn = nn.Sequential(
            *(
                TCNBlock(int(tcn_channels), tcn_kernel_size, dilation=2**b)
                for _ in range(int(tcn_layers))
                for b in range(int(tcn_blocks))
            )
        )
        decoder = [ConvTranspose2dBlock(2 * b, a) for a, b in zip(widths[-2::-1], widths[:0:-1])]
        for i in range(4):
            decoder.append(
                nn.Sequential(DenseBlock(2 * c2, c2, 2 * c2, n), ConvTranspose2dBlock(2 * c2, c1 if i == 3 else c2))
            )
        decoder.append(DenseBlock(2 * c1, c1, c2, n))
        self.decoder = nn.ModuleList(decoder)
        self.pool_sizes = tuple(int(s) for s in pool_sizes) if pyramid else ()
        self.pyramid = PyramidPooling(c2, pool_channels, self.pool_sizes) if pyramid else None
        self.output_conv = nn.ConvTranspose2d(c2, 2 * self.n_outputs, 3, padding=(1, 0))
        self.speaker_encoder = (
            SpeakerEncoder(self.stft, freq, c1, spk_kernel_size, spk_hidden) if speaker_encoder else None
        )

    #: :meth:`modules.brain.SeparationBrain.conditioning` passes the mixtures' lengths (padding-aware forward).
    takes_lengths = True

    @property
    def min_frames(self):
        """Fewest STFT frames the network takes (the pyramid's largest pooling)."""
        return max(self.pool_sizes, default=1)

    def input_planes(self, mix):
        """Variance-normalised, padded mixture -> ``([B, 2 or 3, frames, 257], std [B, 1])``."""
        x, std = _normalise_variance(mix)
        length = max(math.ceil(x.shape[-1] / self.stft.hop) * self.stft.hop, self.stft.min_samples(self.min_frames))
        spec = self.stft(F.pad(x, (0, length - x.shape[-1])))
        planes = [spec.real, spec.imag]
        if self.magnitude_input:
            planes.append((spec.real.square() + spec.imag.square() + 1e-8).sqrt())
        return torch.stack(planes, dim=1).transpose(2, 3), std

    def forward(self, mix, enroll=None, enroll_lengths=None, lengths=None):
        """``mix [B, T]`` (sDPCCN: and ``enroll [B, T_e]``, ``enroll_lengths [B]``) -> ``([B, T, n_outputs], {})``.

        ``lengths [B]`` (the valid samples of each item; the Brain passes them,
        :attr:`takes_lengths`): a batch with a padded item runs each item
        on its own samples, so that its output does not depend on the padding
        (the variance normalisation, the instance norms, the time convolutions
        and the pyramid's pooling would all see it), and pads the outputs back
        with zeros. A batch of equal lengths (training crops) runs at once.
        """
        if (enroll is None) != (self.speaker_encoder is None):
            need = "needs `enroll` (sDPCCN)" if enroll is None else "has no speaker encoder: `enroll` is not used"
            raise TypeError(f"this DPCCN {need}")
        if lengths is not None and bool((lengths < mix.shape[-1]).any()):  # one host synchronisation per batch
            outputs = []
            for i, n in enumerate(lengths.tolist()):
                own = {} if enroll is None else {"enroll": enroll[i : i + 1], "enroll_lengths": None}
                if enroll is not None and enroll_lengths is not None:
                    own["enroll_lengths"] = enroll_lengths[i : i + 1]
                estimates, _ = self.forward(mix[i : i + 1, : int(n)], **own)
                outputs.append(F.pad(estimates, (0, 0, 0, mix.shape[-1] - int(n))))
            return torch.cat(outputs), {}
        planes, std = self.input_planes(mix)
        x = self.input_conv(planes.to(self.input_conv.weight.dtype))
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i == 0 and self.speaker_encoder is not None:
                x = x * self.speaker_encoder(enroll, enroll_lengths)
            skips.append(x)
        batch, channels, frames, _ = x.shape
        x = self.tcn(x.reshape(batch, channels, frames)).unsqueeze(-1)
        for stage, skip in zip(self.decoder, reversed(skips)):
            x = stage(torch.cat([skip, x], dim=1))
        if self.pyramid is not None:
            x = self.pyramid(x)
        x = self.output_conv(x)  # [B, 2 * n_outputs, frames, bins]
        spec = x.float().reshape(batch, self.n_outputs, 2, frames, -1).transpose(-1, -2)
        spec = torch.complex(spec[:, :, 0], spec[:, :, 1]).flatten(0, 1)  # [B * n_outputs, bins, frames]
        signals = self.stft.inverse(spec, mix.shape[-1]).reshape(batch, self.n_outputs, -1)
        return (signals * std[:, :, None]).transpose(1, 2), {}
