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
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TCNMaskNet"]


def _norm(kind, channels):
    """gLN (GroupNorm with one group: mean and variance over channels and time) or cLN."""
    if kind == "gLN":
        return nn.GroupNorm(1, channels, eps=1e-8)
    if kind == "cLN":
        return _ChannelNorm(channels)
    raise ValueError(f"norm must be gLN or cLN, not {kind!r}")


class _ChannelNorm(nn.Module):
    """Channel-wise layer norm of ``[B, C, L]`` (over channels, per frame)."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-8)

    def forward(self, x):
        """``[B, C, L] -> [B, C, L]``."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


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
        if mask_nonlinear not in ("sigmoid", "relu", "softmax"):
            raise ValueError(f"mask_nonlinear must be sigmoid, relu or softmax, not {mask_nonlinear!r}")
        Sc = B if Sc is None else Sc
        self.C, self.N, self.mask_nonlinear = C, N, mask_nonlinear
        self.input_norm = _norm("cLN" if causal else norm, N)
        self.bottleneck = nn.Conv1d(N, B, 1)
        self.blocks = nn.ModuleList(
            _Block(B, H, P, Sc, dilation=2**x, norm=norm, causal=causal) for _ in range(R) for x in range(X)
        )
        self.output = nn.Sequential(nn.PReLU(), nn.Conv1d(Sc, C * N, 1))

    def forward(self, mixture_w):
        """``[batch, N, frames] -> [C, batch, N, frames]`` masks."""
        x = self.bottleneck(self.input_norm(mixture_w))
        skip_sum = 0
        for block in self.blocks:
            x, skip = block(x)
            skip_sum = skip_sum + skip
        scores = self.output(skip_sum)  # [B, C * N, L]
        scores = scores.view(scores.shape[0], self.C, self.N, -1).transpose(0, 1)
        if self.mask_nonlinear == "sigmoid":
            return torch.sigmoid(scores)
        if self.mask_nonlinear == "relu":
            return torch.relu(scores)
        return torch.softmax(scores, dim=0)
