"""Separators behind one call: ``separator(mix, **conditioning) -> (estimates, features)``.

Every model a recipe trains through :class:`modules.brain.SeparationBrain` is a
``torch.nn.Module`` whose ``forward(mix, **conditioning)`` takes mixtures
``[B, T]`` (and, by name, whatever conditions it: an enrollment utterance, a
pretrained frontend's features) and returns

* ``estimates`` ``[B, T, n_outputs]``, as long as the input, and
* a dict of intermediate features that auxiliary losses read (may be empty).

:class:`MaskingSeparator` is the encoder / masker / decoder family of
Conv-TasNet, DPRNN and SepFormer (built from ``hparams/backbones/``). It runs in
three overridable steps, :meth:`~MaskingSeparator.encode`,
:meth:`~MaskingSeparator.mask` and :meth:`~MaskingSeparator.decode`, and has one
hook between the encoder and the masker, ``fusion``: a module called as
``fusion(mix_w, mix=mix, **conditioning)`` whose output replaces the encoder
output at the masker's input (a pretrained frontend's features summed in, a
speaker embedding multiplied in). The masks are always applied to the encoder
output itself. Its features are ``mix_w`` (encoder output ``[B, N, L]``) and
``masks`` (``[n_outputs, B, N, L]``), which NASS's contrastive loss reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MaskingSeparator", "fit_length"]


def fit_length(estimates: torch.Tensor, length: int) -> torch.Tensor:
    """Pads with zeros or trims ``[B, T', n]`` to ``T' = length``.

    Example
    -------
    >>> fit_length(torch.ones(1, 5, 2), 7).shape, fit_length(torch.ones(1, 5, 2), 3).shape
    (torch.Size([1, 7, 2]), torch.Size([1, 3, 2]))
    """
    if estimates.shape[1] < length:
        return F.pad(estimates, (0, 0, 0, length - estimates.shape[1]))
    return estimates[:, :length]


class MaskingSeparator(torch.nn.Module):
    """Encoder -> (fusion) -> masker -> masks applied to the encoder output -> decoder.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``[B, T] -> [B, N, L]`` (e.g. ``speechbrain.lobes.models.dual_path.Encoder``).
    masker : torch.nn.Module
        ``[B, N, L] -> [n_outputs, B, N, L]`` (SpeechBrain's Conv-TasNet
        ``MaskNet`` or ``Dual_Path_Model``).
    decoder : torch.nn.Module
        ``[B', N, L] -> [B', T']`` (e.g. ``speechbrain.lobes.models.dual_path.Decoder``).
    fusion : torch.nn.Module, optional
        Called as ``fusion(mix_w, mix=mix, **conditioning)``; its output is the
        masker's input. Without it, conditioning inputs are an error.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> sep = MaskingSeparator(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=3),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ... )
    >>> est, feats = sep(torch.randn(2, 800))
    >>> est.shape, feats["mix_w"].shape, feats["masks"].shape
    (torch.Size([2, 800, 3]), torch.Size([2, 8, 99]), torch.Size([3, 2, 8, 99]))
    """

    def __init__(self, encoder, masker, decoder, fusion=None):
        super().__init__()
        self.encoder = encoder
        self.masker = masker
        self.decoder = decoder
        self.fusion = fusion

    def encode(self, mix: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> [B, N, L]``."""
        return self.encoder(mix)

    def mask(self, masker_input: torch.Tensor) -> torch.Tensor:
        """``[B, N, L] -> [n_outputs, B, N, L]``."""
        return self.masker(masker_input)

    def decode(self, mix_w: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Masked encoder features ``[n, B, N, L]`` -> signals ``[B, T', n]``."""
        n_masks, batch = masks.shape[0], masks.shape[1]
        separated = self.decoder((mix_w.unsqueeze(0) * masks).flatten(0, 1))
        return separated.reshape(n_masks, batch, -1).permute(1, 2, 0)

    def forward(self, mix: torch.Tensor, **conditioning):
        """Separates ``mix`` ``[B, T]``; see the class docstring.

        Returns
        -------
        estimates : torch.Tensor
            ``[B, T, n_outputs]``.
        features : dict
            ``mix_w`` ``[B, N, L]`` and ``masks`` ``[n_outputs, B, N, L]``.
        """
        mix_w = self.encode(mix)
        if self.fusion is not None:
            masker_input = self.fusion(mix_w, mix=mix, **conditioning)
        elif conditioning:
            raise TypeError(
                f"this separator takes no conditioning inputs, got {sorted(conditioning)} (give it a `fusion` module)"
            )
        else:
            masker_input = mix_w
        masks = self.mask(masker_input)
        estimates = fit_length(self.decode(mix_w, masks), mix.shape[-1])
        return estimates, {"mix_w": mix_w, "masks": masks}
