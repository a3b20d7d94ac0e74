"""TD-SpeakerBeam: Conv-TasNet with a multiplicative speaker adaptation layer (target speech extraction).

Paper: M. Delcroix, T. Ochiai, K. Žmolíková, K. Kinoshita, N. Tawara,
T. Nakatani, S. Araki, "Improving speaker discrimination of target speech
extraction with time-domain SpeakerBeam", ICASSP 2020 (the DPCCN paper's TSE
baseline, [8], "TSB" in its Tables 3 and 4). Configuration: the public
implementation by one of its authors, BUTSpeechFIT/speakerbeam (the BUT group
of the DPCCN paper's co-authors; ``src/models/td_speakerbeam.py``,
``adapt_layers.py``, ``egs/libri2mix/local/conf.yml``; read, not copied):

* the main network is a Conv-TasNet with one mask, skip-connection paths
  included (:class:`modules.models.convtasnet.TCNMaskNet`): 512 filters of
  16 samples (stride 8), bottleneck B 128, skip Sc 128, hidden H 512,
  kernel P 3, X 8 blocks x R 3 repeats, gLN, ReLU masks;
* the adaptation layer ``mul`` sits in block 7 (0-based: the last block of
  the first repeat, ``adapt_layer = X - 1``): the block's residual output
  and its skip output are each multiplied element-wise, before they are
  summed into their paths, by one half of the speaker embedding (broadcast
  over time);
* the auxiliary network has its own encoder (same filterbank shape), its
  own bottleneck, one repeat of X blocks with skip paths, PReLU and a linear
  1x1 conv to ``2 * 128`` channels (the two halves), and the mean over time.

6,704,194 parameters at these sizes (tested): 4,984,497 in the main network,
1,719,697 in the auxiliary one.

Departures (each in docs/dpccn.md):

* the encoders are SpeechBrain's ``dual_path.Encoder`` (a ReLU after the
  1-D conv, as the collection's Conv-TasNet of Table 3); BUT's Asteroid
  free filterbank has no nonlinearity. Same parameter count;
* the time average of the auxiliary network runs over the enrollment's
  valid frames only; padded frames still enter its gLN statistics and
  convolutions (BUT crops enrollments to 3 s in training, so its batches
  have none);
* what the TD-SpeakerBeam paper adds to this network beyond the BUT code
  (such as its speaker-identification multi-task loss) is not implemented:
  the DPCCN paper trains every system with negative SI-SNR (section 4.1),
  and so do the recipes.
"""

from __future__ import annotations

import torch
from torch import nn

from modules.models.convtasnet import TCNMaskNet, _Block, _norm
from modules.models.separator import MaskingSeparator, fit_length

__all__ = ["SpeakerBeamAuxiliary", "TDSpeakerBeam"]


def encoder_frames(lengths, kernel_size, stride):
    """Encoder frames that cover each item's valid samples (``[B]`` long).

    Example
    -------
    >>> encoder_frames(torch.tensor([800, 100]), 16, 8).tolist()
    [99, 11]
    """
    return ((lengths - kernel_size).clamp(min=0) // stride + 1).long()


def block_outputs(block, x):
    """A Conv-TasNet block's residual and skip outputs ``(r [B, B, L], s [B, Sc, L])``, before ``x + r``."""
    y = block.net(x)
    if block.causal_trim:
        y = y[..., : -block.causal_trim]
    y = block.post(y)
    return block.residual(y), block.skip(y)


class SpeakerBeamAuxiliary(nn.Module):
    """TD-SpeakerBeam's auxiliary network: enrollment -> speaker embedding ``[B, embedding_dim]``.

    Encoder -> gLN -> 1x1 conv to ``B`` -> ``X`` Conv-TasNet blocks with
    skip paths (one repeat, dilations ``1 ... 2**(X-1)``) -> PReLU on the
    sum of the skip outputs -> linear 1x1 conv to ``embedding_dim`` -> mean
    over the valid frames.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``[B, T] -> [B, N, L]`` (a SpeechBrain ``dual_path.Encoder`` of its own).
    N, B, H, P, X : int
        Encoder channels, bottleneck, hidden channels, kernel, blocks.
    embedding_dim : int
        Size of the embedding: ``B + Sc`` for the main network's adaptation
        layer (one half for its residual output, one for its skip output).
    Sc : int, optional
        Skip-connection channels (default ``B``).
    norm : str
        ``gLN`` or ``cLN``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> aux = SpeakerBeamAuxiliary(Encoder(kernel_size=16, out_channels=8), N=8, B=6, H=8, P=3, X=2, embedding_dim=12)
    >>> aux(torch.randn(2, 800), torch.tensor([800, 400])).shape
    torch.Size([2, 12])
    """

    def __init__(self, encoder, N, B, H, P, X, embedding_dim, Sc=None, norm="gLN"):
        super().__init__()
        Sc = B if Sc is None else Sc
        self.encoder = encoder
        self.input_norm = _norm(norm, N)
        self.bottleneck = nn.Conv1d(N, B, 1)
        self.blocks = nn.ModuleList(_Block(B, H, P, Sc, dilation=2**x, norm=norm, causal=False) for x in range(X))
        self.output = nn.Sequential(nn.PReLU(), nn.Conv1d(Sc, embedding_dim, 1))

    def forward(self, enroll, enroll_lengths=None):
        """``enroll [B, T_e]``, ``enroll_lengths [B]`` -> ``[B, embedding_dim]``."""
        x = self.bottleneck(self.input_norm(self.encoder(enroll)))  # [B, B_chan, L]
        skip_sum = 0
        for block in self.blocks:
            x, skip = block(x)
            skip_sum = skip_sum + skip
        h = self.output(skip_sum)  # [B, D, L]
        if enroll_lengths is None:
            return h.mean(dim=-1)
        conv = self.encoder.conv1d
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = encoder_frames(enroll_lengths, kernel, stride).clamp(max=h.shape[-1])
        valid = (torch.arange(h.shape[-1], device=h.device)[None, :] < frames[:, None]).to(h.dtype)
        return (h * valid[:, None, :]).sum(dim=-1) / valid.sum(dim=-1, keepdim=True).clamp(min=1)


class TDSpeakerBeam(MaskingSeparator):
    """Conv-TasNet (skip paths) with a multiplicative speaker adaptation layer in block ``adapt_layer``.

    Called as ``model(mix, enroll=..., enroll_lengths=...)`` -> ``(estimates
    [B, T, 1], {"mix_w", "masks", "embedding"})``.

    Arguments
    ---------
    encoder, decoder : torch.nn.Module
        As for :class:`modules.models.MaskingSeparator`.
    masker : modules.models.convtasnet.TCNMaskNet
        With ``C = 1``.
    auxiliary : SpeakerBeamAuxiliary
        Its ``embedding_dim`` must be the masker's ``B + Sc``.
    adapt_layer : int
        0-based index of the block whose residual and skip outputs are
        multiplied by the embedding's halves (BUT: 7, the last block of the
        first repeat of 8).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> model = TDSpeakerBeam(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     TCNMaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1, mask_nonlinear="relu"),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ...     SpeakerBeamAuxiliary(Encoder(kernel_size=16, out_channels=8), N=8, B=6, H=8, P=3, X=2, embedding_dim=12),
    ...     adapt_layer=1,
    ... )
    >>> est, features = model(torch.randn(2, 800), enroll=torch.randn(2, 600), enroll_lengths=torch.tensor([600, 500]))
    >>> est.shape, features["embedding"].shape
    (torch.Size([2, 800, 1]), torch.Size([2, 12]))
    """

    def __init__(self, encoder, masker, decoder, auxiliary, adapt_layer):
        super().__init__(encoder, masker, decoder)
        if not isinstance(masker, TCNMaskNet):
            raise TypeError(
                "TD-SpeakerBeam adapts a Conv-TasNet block's residual and skip outputs: the masker must be a "
                f"modules.models.convtasnet.TCNMaskNet (hparams/backbones/convtasnet_skip.yaml), not {type(masker)}"
            )
        if masker.C != 1:
            raise ValueError(f"TD-SpeakerBeam extracts one speaker: the masker must predict 1 mask, not {masker.C}")
        self.auxiliary = auxiliary
        self.adapt_layer = int(adapt_layer)
        n_blocks = len(masker.blocks)
        if not 0 <= self.adapt_layer < n_blocks:
            raise ValueError(f"adapt_layer={adapt_layer} is outside the masker's blocks 0..{n_blocks - 1}")
        block = masker.blocks[self.adapt_layer]
        self.split = (block.residual.out_channels, block.skip.out_channels)
        out = auxiliary.output[-1].out_channels
        if out != sum(self.split):
            raise ValueError(
                f"the auxiliary network's embedding has {out} channels; the adaptation layer needs B + Sc = "
                f"{sum(self.split)} (one half per path)"
            )

    def adapted_masks(self, mix_w, embedding):
        """``TCNMaskNet`` forward with block ``adapt_layer``'s two outputs multiplied by the embedding's halves."""
        net = self.masker
        on_residual, on_skip = torch.split(embedding, self.split, dim=1)
        x = net.bottleneck(net.input_norm(mix_w))
        skip_sum = 0
        for i, block in enumerate(net.blocks):
            if i == self.adapt_layer:
                residual, skip = block_outputs(block, x)
                x, skip = x + residual * on_residual[..., None], skip * on_skip[..., None]
            else:
                x, skip = block(x)
            skip_sum = skip_sum + skip
        scores = net.output(skip_sum)[None]  # [1, B, N, L]
        if net.mask_nonlinear == "sigmoid":
            return torch.sigmoid(scores)
        return torch.relu(scores) if net.mask_nonlinear == "relu" else torch.softmax(scores, dim=0)

    def forward(self, mix, enroll=None, enroll_lengths=None):
        """Extracts the enrolled speaker from ``mix`` ``[B, T]``; see the class docstring."""
        if enroll is None:
            raise TypeError("TD-SpeakerBeam needs `enroll` (the target speaker's enrollment utterance)")
        mix_w = self.encode(mix)
        embedding = self.auxiliary(enroll, enroll_lengths)
        masks = self.adapted_masks(mix_w, embedding)
        estimates = fit_length(self.decode(mix_w, masks), mix.shape[-1])
        return estimates, {"mix_w": mix_w, "masks": masks, "embedding": embedding}
