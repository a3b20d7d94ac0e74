"""The one-and-rest separator of recursive separation (SADDEL), with an optional stop-flag head.

:class:`OneAndRestSeparator` wraps any :class:`modules.models.MaskingSeparator`
(Conv-TasNet, DPRNN, SepFormer from ``hparams/backbones/``) whose masker
predicts two masks, the one speaker and the rest, plus, with the flag head,
one more "mask" that carries the flag features. As in the one-and-rest PIT
reference implementation (fgnt/padertorch ``or_pit``: a Linear layer on extra
output channels of the separation network, averaged over time, then a
sigmoid), the flag is ``sigmoid(mean_frames(Linear(flag features)))``: the
probability that no speaker is left in the rest, trained with binary
cross-entropy (``modules.saddel``).

Departures from the reference implementation
--------------------------------------------
* The flag features are a third output of the masker, ``N`` channels (the
  encoder width) after the mask non-linearity, instead of 20 extra channels
  of the separation network's last projection before it. Any backbone whose
  masker predicts ``n`` masks gets a flag this way, without changes to it.
* The time average runs over every frame of the (padded) batch, as in the
  reference.
"""

from __future__ import annotations

from torch import nn

from modules.models.separator import fit_length

__all__ = ["OneAndRestSeparator"]


class OneAndRestSeparator(nn.Module):
    """Two outputs (one speaker, the rest) and optionally the logit of a stop flag.

    Arguments
    ---------
    separator : modules.models.MaskingSeparator
        Its masker predicts 3 masks with the flag head (one, rest, flag
        features), 2 without.
    flag_head : bool
        Predict the stop flag.
    flag_features : int, optional
        Width of the flag features (the encoder's ``N``); required with ``flag_head``.

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from modules.models import MaskingSeparator
    >>> from modules.models.convtasnet import TCNMaskNet
    >>> inner = MaskingSeparator(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     TCNMaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=3),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    ... )
    >>> model = OneAndRestSeparator(inner, flag_head=True, flag_features=8)
    >>> estimates, features = model(torch.randn(2, 800))
    >>> estimates.shape, features["flag_logit"].shape
    (torch.Size([2, 800, 2]), torch.Size([2]))
    """

    def __init__(self, separator, flag_head=True, flag_features=None):
        super().__init__()
        self.separator = separator
        self.flag_head = bool(flag_head)
        if self.flag_head:
            if flag_features is None:
                raise ValueError("the flag head needs flag_features (the encoder's number of channels)")
            self.flag = nn.Linear(int(flag_features), 1)
        else:
            self.flag = None

    @property
    def n_masks(self):
        """Masks the wrapped masker must predict."""
        return 3 if self.flag_head else 2

    def forward(self, mix):
        """Separates ``mix [B, T]`` into the one speaker and the rest.

        Returns
        -------
        estimates : torch.Tensor
            ``[B, T, 2]``: the one speaker, then the rest.
        features : dict
            ``mix_w`` ``[B, N, L]``, ``masks`` ``[2, B, N, L]`` and, with the
            flag head, ``flag_logit`` ``[B]`` (positive: no speaker left in the rest).
        """
        sep = self.separator
        mix_w = sep.encode(mix)
        masks = sep.mask(mix_w)
        if masks.shape[0] != self.n_masks:
            raise ValueError(
                f"the masker predicts {masks.shape[0]} masks; the one-and-rest separator needs {self.n_masks} "
                f"(one, rest{', flag features' if self.flag_head else ''}): set num_masks to {self.n_masks}"
            )
        estimates = fit_length(sep.decode(mix_w, masks[:2]), mix.shape[-1])
        features = {"mix_w": mix_w, "masks": masks[:2]}
        if self.flag_head:
            features["flag_logit"] = self.flag(masks[2].transpose(1, 2)).mean(dim=(1, 2))  # [B]
        return estimates, features
