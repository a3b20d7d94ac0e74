"""Patch sampler of NASS: a shared projection head for patch-wise contrastive learning.

Equation 5 of the NASS paper projects query, positive and negative patches
of encoder representations into one embedding space on the unit sphere,
with a 2-layer MLP of ``Q = 256`` features and patches of size ``P = 1``
(a patch is one frame: the ``N``-dimensional column of ``[N, L]`` encoder
features at one time position). Drawing the positions and gathering the
patches is done by :func:`modules.losses.nass_contrastive_loss`; this
module only projects them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PatchSampler"]


class PatchSampler(torch.nn.Module):
    """Shared 2-layer MLP projection followed by L2 normalisation.

    ``Linear(in_channels, features) -> ReLU -> Linear(features, features)``,
    then each output vector is scaled to unit Euclidean norm, so that dot
    products of outputs are cosine similarities.

    Arguments
    ---------
    in_channels : int
        Size of one patch: the number of encoder filters ``N`` (patch size 1).
    features : int
        Embedding size ``Q`` (256 in the paper).
    eps : float
        Lower bound of the norm in the normalisation (guards all-zero outputs).

    Notes
    -----
    The normalisation runs in float32 (float64 for float64 inputs): inside
    a ``torch.autocast`` region the MLP runs in the low-precision dtype, and
    its output is cast up before the norm is taken, so the returned
    embeddings are float32 and unit-norm to float32 accuracy. The linear
    layers keep PyTorch's default initialisation.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> sampler = PatchSampler(in_channels=64, features=256)
    >>> patches = torch.rand(2, 3, 10, 64)  # [batch, sources, M, N]
    >>> emb = sampler(patches)
    >>> emb.shape, emb.dtype
    (torch.Size([2, 3, 10, 256]), torch.float32)
    >>> bool(torch.allclose(emb.norm(dim=-1), torch.ones(2, 3, 10)))
    True
    """

    def __init__(self, in_channels: int, features: int = 256, eps: float = 1e-12):
        super().__init__()
        if in_channels < 1 or features < 1:
            raise ValueError(f"in_channels and features must be positive, got {in_channels} and {features}")
        self.in_channels = in_channels
        self.features = features
        self.eps = eps
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_channels, features),
            torch.nn.ReLU(),
            torch.nn.Linear(features, features),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Project and L2-normalise patches.

        Arguments
        ---------
        patches : torch.Tensor
            ``[..., in_channels]``: one patch per vector along the last axis.

        Returns
        -------
        torch.Tensor
            ``[..., features]`` unit-norm embeddings, float32 (float64 when
            the MLP output is float64).

        Raises
        ------
        ValueError
            If the last axis is not ``in_channels`` long.
        """
        if patches.ndim < 1 or patches.shape[-1] != self.in_channels:
            raise ValueError(f"expected patches of shape [..., {self.in_channels}], got {tuple(patches.shape)}")
        out = self.mlp(patches)
        dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
        # norm and division are not autocast ops: they run in the dtype given here.
        return F.normalize(out.to(dtype), p=2.0, dim=-1, eps=self.eps)
