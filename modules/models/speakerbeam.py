"""TD-SpeakerBeam: Conv-TasNet with a multiplicative speaker adaptation layer (target speech extraction).

Paper: M. Delcroix, T. Ochiai, K. Žmolíková, K. Kinoshita, N. Tawara,
T. Nakatani, S. Araki, "Improving speaker discrimination of target speech
extraction with time-domain SpeakerBeam", ICASSP 2020 (the DPCCN paper's TSE
baseline, "TSB" in its Tables 3 and 4). Checked against the public
implementation by one of its authors (BUTSpeechFIT/speakerbeam,
``src/models/td_speakerbeam.py``, ``adapt_layers.py``, ``egs/libri2mix/local/conf.yml``;
read, not copied):

* the main network is a Conv-TasNet with one mask; after the first repeat
  of convolutional blocks (block index 7 of 8 x 3 there) the activations are
  multiplied element-wise by the speaker embedding (adaptation layer
  ``mul``), broadcast over time;
* the auxiliary network has its own encoder (same filterbank shape), a
  bottleneck and one repeat of convolutional blocks, a linear 1x1 output to
  the embedding size, and the mean over time.

Here the main network is the collection's Conv-TasNet backbone
(``hparams/backbones/convtasnet.yaml``: SpeechBrain's ``Encoder``,
``MaskNet``, ``Decoder``), so that the TSE baseline and the SS baseline of
Table 3 share every size; the auxiliary network is built from the same
SpeechBrain blocks.

Departures from the BUT implementation (each in the README's DPCCN section):

* SpeechBrain's ``MaskNet`` has no skip-connection path (Conv-TasNet as in
  its journal paper, like upstream SpeechBrain's recipes), so the embedding
  multiplies the residual stream after the first repeat (BUT: it multiplies
  the residual and the skip outputs of block 7, with an embedding twice as
  wide). Sizes are the backbone's (N 256, kernel 16, B 256, H 512, X 6, R 4
  by default; BUT: 512 filters, B 128, H 512, skip 128, X 8, R 3).
* The time average of the auxiliary network runs over the enrollment's
  valid frames only; padded frames still enter its gLN statistics and
  convolutions (BUT crops enrollments to 3 s in training, so its batches
  have none).
"""

from __future__ import annotations

import torch
from speechbrain.lobes.models.conv_tasnet import ChannelwiseLayerNorm, TemporalBlocksSequential
from speechbrain.nnet.CNN import Conv1d

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


class SpeakerBeamAuxiliary(torch.nn.Module):
    """TD-SpeakerBeam's auxiliary network: enrollment -> speaker embedding ``[B, embedding_dim]``.

    Encoder -> channel-wise layer norm -> 1x1 conv to ``B`` -> ``X`` temporal
    blocks (one repeat, dilations ``1 ... 2**(X-1)``) -> linear 1x1 conv to
    ``embedding_dim`` -> mean over the valid frames.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``[B, T] -> [B, N, L]`` (a SpeechBrain ``dual_path.Encoder`` of its own).
    N, B, H, P, X : int
        Encoder channels, bottleneck, hidden channels, kernel, blocks.
    embedding_dim : int
        Size of the embedding (the main network's bottleneck ``B``).
    norm_type : str
        ``gLN`` or ``cLN``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> aux = SpeakerBeamAuxiliary(Encoder(kernel_size=16, out_channels=8), N=8, B=6, H=8, P=3, X=2, embedding_dim=6)
    >>> aux(torch.randn(2, 800), torch.tensor([800, 400])).shape
    torch.Size([2, 6])
    """

    def __init__(self, encoder, N, B, H, P, X, embedding_dim, norm_type="gLN"):
        super().__init__()
        self.encoder = encoder
        self.norm = ChannelwiseLayerNorm(N)
        self.bottleneck = Conv1d(in_channels=N, out_channels=B, kernel_size=1, bias=False)
        self.blocks = TemporalBlocksSequential((None, None, B), H, P, 1, X, norm_type, False)
        self.output = Conv1d(in_channels=B, out_channels=embedding_dim, kernel_size=1)

    def forward(self, enroll, enroll_lengths=None):
        """``enroll [B, T_e]``, ``enroll_lengths [B]`` -> ``[B, embedding_dim]``."""
        w = self.encoder(enroll).transpose(1, 2)  # [B, L, N]
        h = self.output(self.blocks(self.bottleneck(self.norm(w))))  # [B, L, D]
        if enroll_lengths is None:
            return h.mean(dim=1)
        conv = self.encoder.conv1d
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = encoder_frames(enroll_lengths, kernel, stride).clamp(max=h.shape[1])
        valid = (torch.arange(h.shape[1], device=h.device)[None, :] < frames[:, None]).to(h.dtype)
        return (h * valid[..., None]).sum(dim=1) / valid.sum(dim=1, keepdim=True).clamp(min=1)


class TDSpeakerBeam(MaskingSeparator):
    """Conv-TasNet with a multiplicative speaker adaptation layer after ``adapt_after`` temporal blocks.

    Called as ``model(mix, enroll=..., enroll_lengths=...)`` -> ``(estimates
    [B, T, 1], {"mix_w", "masks", "embedding"})``.

    Arguments
    ---------
    encoder, decoder : torch.nn.Module
        As for :class:`modules.models.MaskingSeparator`.
    masker : speechbrain.lobes.models.conv_tasnet.MaskNet
        With ``C = 1``.
    auxiliary : SpeakerBeamAuxiliary
        Its ``embedding_dim`` must be the masker's bottleneck ``B``.
    adapt_after : int
        Temporal blocks before the adaptation layer (``X``: after the first repeat).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> model = TDSpeakerBeam(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     MaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ...     SpeakerBeamAuxiliary(Encoder(kernel_size=16, out_channels=8), N=8, B=6, H=8, P=3, X=2, embedding_dim=6),
    ...     adapt_after=2,
    ... )
    >>> est, features = model(torch.randn(2, 800), enroll=torch.randn(2, 600), enroll_lengths=torch.tensor([600, 500]))
    >>> est.shape, features["embedding"].shape
    (torch.Size([2, 800, 1]), torch.Size([2, 6]))
    """

    def __init__(self, encoder, masker, decoder, auxiliary, adapt_after):
        super().__init__(encoder, masker, decoder)
        self.auxiliary = auxiliary
        self.adapt_after = int(adapt_after)
        n_blocks = len(masker.temporal_conv_net)
        if not 0 <= self.adapt_after <= n_blocks:
            raise ValueError(f"adapt_after={adapt_after} is outside the masker's 0..{n_blocks} temporal blocks")
        if masker.C != 1:
            raise ValueError(f"TD-SpeakerBeam extracts one speaker: the masker must predict 1 mask, not {masker.C}")

    def adapted_masks(self, mix_w, embedding):
        """SpeechBrain ``MaskNet`` forward with the embedding multiplied in after ``adapt_after`` blocks."""
        net = self.masker
        y = net.bottleneck_conv1x1(net.layer_norm(mix_w.transpose(1, 2)))  # [B, L, B_chan]
        for i, block in enumerate(net.temporal_conv_net.values()):
            if i == self.adapt_after:
                y = y * embedding[:, None, :]
            y = block(y)
        if self.adapt_after == len(net.temporal_conv_net):
            y = y * embedding[:, None, :]
        score = net.mask_conv1x1(y).transpose(1, 2)[None]  # [1, B, N, L]
        return torch.relu(score) if net.mask_nonlinear == "relu" else torch.softmax(score, dim=0)

    def forward(self, mix, enroll=None, enroll_lengths=None):
        """Extracts the enrolled speaker from ``mix`` ``[B, T]``; see the class docstring."""
        if enroll is None:
            raise TypeError("TD-SpeakerBeam needs `enroll` (the target speaker's enrollment utterance)")
        mix_w = self.encode(mix)
        embedding = self.auxiliary(enroll, enroll_lengths)
        masks = self.adapted_masks(mix_w, embedding)
        estimates = fit_length(self.decode(mix_w, masks), mix.shape[-1])
        return estimates, {"mix_w": mix_w, "masks": masks, "embedding": embedding}
