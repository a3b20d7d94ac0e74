"""DPRNN's masker with the structure of Asteroid's ``DPRNN`` (the masker of ``DPRNNTasNet``).

Paper: Luo, Chen and Yoshioka, "Dual-path RNN: efficient long sequence modeling
for time-domain single-channel speech separation" (ICASSP 2020). The DIP paper
(Wang et al., TASLP 2024, section IV) and the context-aware paper (Wang et al.,
arXiv:2503.12589, section III) both state "The implementation of ConvTasNet and
DPRNN are based on the Asteroid toolkit". SpeechBrain's ``Dual_Path_Model``
(``hparams/backbones/dprnn.yaml``) has the same blocks but differs from
Asteroid's masker in its chunking (it pads the sequence to whole chunks and adds
half a chunk each side), its bottleneck (no bias) and its masks (ReLU), and its
``dual_path.Encoder`` has a ReLU that Asteroid's encoder has not (128 parameters
fewer at the papers' sizes, a different function). :class:`DPRNNMaskNet` follows
Asteroid's ``asteroid.masknn.recurrent.DPRNN`` (read for its structure, written
here; no code taken):

* input norm (gLN) and a 1x1 bottleneck ``N -> B``;
* chunks of ``K`` frames with hop ``K // 2`` (50 % overlap), the sequence
  zero-padded by ``K`` frames on each side (``torch.nn.functional.unfold``);
* ``num_layers`` dual-path blocks: a bidirectional intra-chunk LSTM, a linear
  layer back to ``B`` and a norm, added to the input; then the inter-chunk LSTM
  (bidirectional by default), linear, norm, added;
* PReLU and a 1x1 2-D convolution ``B -> C * B`` (one feature map per source),
  overlap-add back to ``L`` frames (``fold``: the overlapping chunks are summed);
* a gated output ``tanh(conv(y)) * sigmoid(conv(y))`` and a 1x1 convolution
  ``B -> N`` without bias, then the mask non-linearity (sigmoid by default, as
  Asteroid's ``DPRNNTasNet`` and its LibriMix recipe).

At Asteroid's sizes (``N=64, B=128, H=128``, 6 blocks) the masker has 3,650,817
parameters for two sources, Asteroid's count (``docs/architecture.md``).

:meth:`DPRNNMaskNet.chunk`, :meth:`~DPRNNMaskNet.run_blocks`,
:meth:`~DPRNNMaskNet.merge` and :meth:`~DPRNNMaskNet.masks_from` are the steps
``modules.models.context_aware.DPRNNSplitMasker`` recombines into the SIMO/SISO
split of the context-aware scheme.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modules.models.convtasnet import MASK_NONLINEARS, _norm, apply_mask_nonlinear

__all__ = ["DPRNNBlock", "DPRNNMaskNet"]


class DPRNNBlock(nn.Module):
    """One dual-path block on ``[batch, B, K, S]`` (``K`` frames per chunk, ``S`` chunks).

    Arguments
    ---------
    channels : int
        ``B``, the feature size.
    hidden : int
        LSTM hidden size per direction.
    norm : str
        ``gLN`` or ``cLN`` after each linear layer.
    bidirectional : bool
        Bidirectional inter-chunk LSTM (the intra-chunk one always is).
    rnn_type : str
        ``LSTM``, ``GRU`` or ``RNN``.
    rnn_layers : int
        Layers of each RNN.
    dropout : float
        Dropout between RNN layers.

    Example
    -------
    >>> DPRNNBlock(6, 4)(torch.randn(2, 6, 10, 3)).shape
    torch.Size([2, 6, 10, 3])
    """

    def __init__(self, channels, hidden, norm="gLN", bidirectional=True, rnn_type="LSTM", rnn_layers=1, dropout=0.0):
        super().__init__()
        rnn_type = rnn_type.upper()
        if rnn_type not in ("LSTM", "GRU", "RNN"):
            raise ValueError(f"rnn_type must be LSTM, GRU or RNN, not {rnn_type!r}")
        rnn = getattr(nn, rnn_type)
        self.intra_rnn = rnn(channels, hidden, num_layers=rnn_layers, dropout=dropout, batch_first=True,
                             bidirectional=True)  # fmt: skip
        self.inter_rnn = rnn(channels, hidden, num_layers=rnn_layers, dropout=dropout, batch_first=True,
                             bidirectional=bool(bidirectional))  # fmt: skip
        # registered after both RNNs, so that the parameters come in the order of Asteroid's block
        self.intra_linear = nn.Linear(2 * hidden, channels)
        self.intra_norm = _norm(norm, channels)
        self.inter_linear = nn.Linear((2 if bidirectional else 1) * hidden, channels)
        self.inter_norm = _norm(norm, channels)

    def forward(self, x):
        """``[batch, B, K, S] -> [batch, B, K, S]``."""
        batch, channels, chunk, n_chunks = x.shape
        intra = x.permute(0, 3, 2, 1).reshape(batch * n_chunks, chunk, channels)  # along each chunk
        intra = self.intra_linear(self.intra_rnn(intra)[0])
        x = x + self.intra_norm(intra.reshape(batch, n_chunks, chunk, channels).permute(0, 3, 2, 1))
        inter = x.permute(0, 2, 3, 1).reshape(batch * chunk, n_chunks, channels)  # across the chunks
        inter = self.inter_linear(self.inter_rnn(inter)[0])
        return x + self.inter_norm(inter.reshape(batch, chunk, n_chunks, channels).permute(0, 3, 1, 2))


class DPRNNMaskNet(nn.Module):
    """DPRNN masker, Asteroid's structure: ``[batch, N, L] -> [C, batch, N, L]`` masks.

    Arguments
    ---------
    N : int
        Encoder channels (mask size).
    C : int
        Number of masks (sources).
    B : int
        Bottleneck channels (Asteroid's ``bn_chan``).
    H : int
        LSTM hidden size (``hid_size``).
    K : int
        Chunk size in frames (``chunk_size``).
    hop : int, optional
        Chunk hop (default ``K // 2``).
    num_layers : int
        Dual-path blocks (``n_repeats``).
    norm : str
        ``gLN`` or ``cLN``.
    mask_nonlinear : str
        ``sigmoid`` (Asteroid's default), ``relu`` or ``softmax`` (over the masks).
    bidirectional, rnn_type, rnn_layers, dropout
        Of each block (:class:`DPRNNBlock`).

    Example
    -------
    >>> net = DPRNNMaskNet(N=8, C=2, B=6, H=4, K=10, num_layers=2)
    >>> net(torch.randn(3, 8, 47)).shape
    torch.Size([2, 3, 8, 47])
    >>> sum(p.numel() for p in DPRNNMaskNet(N=64, C=2, B=128, H=128, K=250).parameters())
    3650817
    """

    def __init__(self, N, C, B=128, H=128, K=100, hop=None, num_layers=6, norm="gLN", mask_nonlinear="sigmoid",
                 bidirectional=True, rnn_type="LSTM", rnn_layers=1, dropout=0.0):  # fmt: skip
        super().__init__()
        if mask_nonlinear not in MASK_NONLINEARS:
            raise ValueError(f"mask_nonlinear must be one of {MASK_NONLINEARS}, not {mask_nonlinear!r}")
        hop = K // 2 if hop is None else int(hop)
        if not 0 < hop <= K:
            raise ValueError(f"the chunk hop must be within [1, K={K}], got {hop}")
        self.N, self.C, self.B, self.K, self.hop = N, C, B, K, hop
        self.num_layers, self.mask_nonlinear = num_layers, mask_nonlinear
        self.input_norm = _norm(norm, N)
        self.bottleneck = nn.Conv1d(N, B, 1)
        self.blocks = nn.ModuleList(
            DPRNNBlock(B, H, norm=norm, bidirectional=bidirectional, rnn_type=rnn_type, rnn_layers=rnn_layers,
                       dropout=dropout)
            for _ in range(num_layers)
        )  # fmt: skip
        self.speaker_split = nn.Sequential(nn.PReLU(), nn.Conv2d(B, C * B, 1))
        self.gate_tanh = nn.Sequential(nn.Conv1d(B, B, 1), nn.Tanh())
        self.gate_sigmoid = nn.Sequential(nn.Conv1d(B, B, 1), nn.Sigmoid())
        self.mask_conv = nn.Conv1d(B, N, 1, bias=False)

    def embed(self, mixture_w):
        """Input norm and bottleneck: ``[batch, N, L] -> [batch, B, L]``."""
        return self.bottleneck(self.input_norm(mixture_w))

    def chunk(self, x):
        """``[batch, D, L] -> [batch, D, K, S]``: chunks of ``K`` frames every ``hop``, ``K`` zeros each side."""
        batch, channels, _ = x.shape
        chunks = F.unfold(x.unsqueeze(-1), kernel_size=(self.K, 1), padding=(self.K, 0), stride=(self.hop, 1))
        return chunks.reshape(batch, channels, self.K, -1)

    def merge(self, x, length):
        """Overlap-add ``[batch, D, K, S] -> [batch, D, length]`` (the inverse layout of :meth:`chunk`, summed)."""
        batch, channels, chunk, n_chunks = x.shape
        merged = F.fold(x.reshape(batch, channels * chunk, n_chunks), (length, 1), kernel_size=(self.K, 1),
                        padding=(self.K, 0), stride=(self.hop, 1))  # fmt: skip
        return merged.reshape(batch, channels, length)

    def run_blocks(self, x, start=0, stop=None):
        """Dual-path blocks ``start:stop`` on ``[batch, B, K, S]``."""
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def masks_from(self, y):
        """Gated output, mask convolution and non-linearity: ``[batch', B, L] -> [batch', N, L]`` scores.

        The non-linearity is applied here unless it is ``softmax`` (over the sources: see :meth:`forward`).
        """
        scores = self.mask_conv(self.gate_tanh(y) * self.gate_sigmoid(y))
        return scores if self.mask_nonlinear == "softmax" else apply_mask_nonlinear(scores, self.mask_nonlinear)

    def forward(self, mixture_w):
        """``[batch, N, L] -> [C, batch, N, L]`` masks."""
        batch, _, length = mixture_w.shape
        x = self.run_blocks(self.chunk(self.embed(mixture_w)))
        x = self.speaker_split(x)  # [batch, C * B, K, S]
        y = self.merge(x.reshape(batch * self.C, self.B, *x.shape[2:]), length)  # [batch * C, B, L]
        masks = self.masks_from(y).reshape(batch, self.C, self.N, length).transpose(0, 1)
        return torch.softmax(masks, dim=0) if self.mask_nonlinear == "softmax" else masks
