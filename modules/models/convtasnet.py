"""The Conv-TasNet separation module as in the Conv-TasNet paper, skip connections included.

SpeechBrain's ``conv_tasnet.MaskNet`` (``hparams/backbones/convtasnet.yaml``)
sums each block's output into a residual path only. The paper (Luo and
Mesgarani, 2019, Figure 1 and Table 2) and its authors' code also give each
1-D convolutional block a skip-connection output (``Sc`` channels); the masks
are computed from the sum of the skip outputs. Its best non-causal
configuration (N=512, L=16, B=128, Sc=128, H=512, P=3, X=8, R=3, gLN, sigmoid
masks) has 5.1M parameters, the figure SADDEL builds on ("we followed the best
configurations for ConvTasnet"). :class:`TCNMaskNet` is that module, with the
``[B, N, L] -> [n_masks, B, N, L]`` call of SpeechBrain's masknets, so
:class:`modules.models.MaskingSeparator` uses it unchanged.

It has the structure of Asteroid's ``TDConvNet`` (``asteroid.masknn.convolutional``,
the masker of ``asteroid.models.ConvTasNet``; written here, not copied): the same
modules in the same order, so the same parameter count for the same sizes
(``docs/architecture.md`` compares them). Asteroid's "free" filterbank encoder is
a linear 1-D convolution (``encoder_activation=None``), where SpeechBrain's
``dual_path.Encoder`` applies a ReLU: :class:`WaveformEncoder` is either.

The DIP and context-aware papers' Conv-TasNet ("based on the Asteroid toolkit")
is built from ``hparams/backbones/convtasnet_skip.yaml`` with a linear encoder
and ReLU masks (Asteroid's LibriMix recipe); :meth:`TCNMaskNet.run_blocks` lets
``modules.models.context_aware.ConvTasNetSplitMasker`` split it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MASK_NONLINEARS", "TCNMaskNet", "WaveformEncoder", "apply_mask_nonlinear"]

#: Mask non-linearities of the maskers of this package.
MASK_NONLINEARS = ("sigmoid", "relu", "softmax")


def apply_mask_nonlinear(scores, kind):
    """``sigmoid`` or ``relu`` of ``scores`` ``[C, ...]``, or ``softmax`` over the masks (dim 0)."""
    if kind == "sigmoid":
        return torch.sigmoid(scores)
    if kind == "relu":
        return torch.relu(scores)
    if kind == "softmax":
        return torch.softmax(scores, dim=0)
    raise ValueError(f"mask_nonlinear must be one of {MASK_NONLINEARS}, not {kind!r}")


class WaveformEncoder(nn.Module):
    """A 1-D convolution of the waveform, no bias, then ReLU or nothing: ``[B, T] -> [B, N, L]``.

    With ``activation="relu"`` it computes what SpeechBrain's ``dual_path.Encoder``
    computes (same parameter name ``conv1d.weight``); with ``activation=None`` it
    is Asteroid's "free" filterbank encoder with ``encoder_activation=None``
    (Asteroid's ConvTasNet and DPRNNTasNet default).

    Arguments
    ---------
    kernel_size : int
        Filter length.
    out_channels : int
        Number of filters ``N``.
    stride : int, optional
        Hop (default: ``kernel_size // 2``, as both toolkits).
    activation : str or None
        ``"relu"`` or ``None``.

    Example
    -------
    >>> enc = WaveformEncoder(kernel_size=32, out_channels=8)
    >>> enc(torch.randn(2, 1600)).shape
    torch.Size([2, 8, 99])
    >>> relu = WaveformEncoder(32, 8, activation="relu")
    >>> bool((enc(torch.randn(1, 800)) < 0).any()), bool((relu(torch.randn(1, 800)) < 0).any())
    (True, False)
    """

    def __init__(self, kernel_size, out_channels, stride=None, activation=None):
        super().__init__()
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be relu or None, not {activation!r}")
        stride = kernel_size // 2 if stride is None else stride
        self.conv1d = nn.Conv1d(1, out_channels, kernel_size, stride=stride, bias=False)
        self.activation = activation

    def forward(self, x):
        """``[B, T]`` (or ``[B, 1, T]``) -> ``[B, N, L]``."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        y = self.conv1d(x)
        return torch.relu(y) if self.activation == "relu" else y


def _norm(kind, channels):
    """gLN (GroupNorm with one group: mean and variance over channels and all other axes) or cLN."""
    if kind == "gLN":
        return nn.GroupNorm(1, channels, eps=1e-8)
    if kind == "cLN":
        return _ChannelNorm(channels)
    raise ValueError(f"norm must be gLN or cLN, not {kind!r}")


class _ChannelNorm(nn.Module):
    """Channel-wise layer norm of ``[B, C, ...]`` (over channels, per frame)."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-8)

    def forward(self, x):
        """``[B, C, ...] -> [B, C, ...]``."""
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class _Block(nn.Module):
    """1-D convolutional block: 1x1 conv -> PReLU -> norm -> depthwise dilated conv -> PReLU -> norm,
    then a 1x1 conv back to the residual path and a 1x1 conv to the skip path."""

    def __init__(self, B, H, P, Sc, dilation, norm, causal):
        super().__init__()
        self.causal_trim = (P - 1) * dilation if causal else 0
        padding = (P - 1) * dilation if causal else (P - 1) * dilation // 2
        self.net = nn.Sequential(
            nn.Conv1d(B, H, 1),
            nn.PReLU(),
            _norm(norm, H),
            nn.Conv1d(H, H, P, dilation=dilation, padding=padding, groups=H),
        )
        self.post = nn.Sequential(nn.PReLU(), _norm(norm, H))
        self.residual = nn.Conv1d(H, B, 1)
        self.skip = nn.Conv1d(H, Sc, 1)

    def forward(self, x):
        """``x [B, B, L] -> (residual [B, B, L], skip [B, Sc, L])``."""
        y = self.net(x)
        if self.causal_trim:
            y = y[..., : -self.causal_trim]
        y = self.post(y)
        return x + self.residual(y), self.skip(y)


class TCNMaskNet(nn.Module):
    """Conv-TasNet's temporal convolutional network with residual and skip paths.

    Arguments
    ---------
    N : int
        Encoder channels (mask size).
    B : int
        Bottleneck (residual path) channels.
    H : int
        Channels inside the convolutional blocks.
    P : int
        Kernel size of the depthwise convolutions.
    X : int
        Blocks per repeat (dilations 1, 2, ..., 2^(X-1)).
    R : int
        Repeats.
    C : int
        Number of masks.
    Sc : int, optional
        Skip-connection channels (default ``B``, as in the paper's best model).
    norm : str
        ``"gLN"`` (non-causal, the paper's best) or ``"cLN"``.
    causal : bool
        Causal depthwise convolutions (left padding only).
    mask_nonlinear : str
        ``"sigmoid"`` (the paper), ``"relu"`` or ``"softmax"`` (over the masks).

    Example
    -------
    >>> net = TCNMaskNet(N=16, B=8, H=12, P=3, X=2, R=2, C=3)
    >>> net(torch.randn(2, 16, 50)).shape
    torch.Size([3, 2, 16, 50])
    >>> sum(p.numel() for p in TCNMaskNet(N=512, B=128, H=512, P=3, X=8, R=3, C=2).parameters())
    5034161
    """

    def __init__(self, N, B, H, P, X, R, C, Sc=None, norm="gLN", causal=False, mask_nonlinear="sigmoid"):
        super().__init__()
        if mask_nonlinear not in MASK_NONLINEARS:
            raise ValueError(f"mask_nonlinear must be one of {MASK_NONLINEARS}, not {mask_nonlinear!r}")
        Sc = B if Sc is None else Sc
        self.C, self.N, self.B, self.Sc, self.mask_nonlinear = C, N, B, Sc, mask_nonlinear
        self.input_norm = _norm("cLN" if causal else norm, N)
        self.bottleneck = nn.Conv1d(N, B, 1)
        self.blocks = nn.ModuleList(
            _Block(B, H, P, Sc, dilation=2**x, norm=norm, causal=causal) for _ in range(R) for x in range(X)
        )
        self.output = nn.Sequential(nn.PReLU(), nn.Conv1d(Sc, C * N, 1))

    def embed(self, mixture_w):
        """Input norm and bottleneck: ``[batch, N, L] -> [batch, B, L]``."""
        return self.bottleneck(self.input_norm(mixture_w))

    def run_blocks(self, x, skip_sum, start=0, stop=None):
        """Blocks ``start:stop`` on the residual path ``x`` ``[batch, B, L]``, adding their skip outputs
        to ``skip_sum`` ``[batch, Sc, L]``; returns both."""
        for block in self.blocks[start:stop]:
            x, skip = block(x)
            skip_sum = skip_sum + skip
        return x, skip_sum

    def forward(self, mixture_w):
        """``[batch, N, frames] -> [C, batch, N, frames]`` masks."""
        x = self.embed(mixture_w)
        _, skip_sum = self.run_blocks(x, x.new_zeros(x.shape[0], self.Sc, x.shape[-1]))
        scores = self.output(skip_sum)  # [B, C * N, L]
        scores = scores.view(scores.shape[0], self.C, self.N, -1).transpose(0, 1)
        return apply_mask_nonlinear(scores, self.mask_nonlinear)
