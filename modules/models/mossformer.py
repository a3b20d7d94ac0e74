"""MossFormer: the masker of Zhao and Ma (ICASSP 2023) behind the encoder / masker / decoder call.

Paper: S. Zhao and B. Ma, "MossFormer: Pushing the Performance Limit of
Monaural Speech Separation using Gated Single-Head Transformer with
Convolution-Augmented Joint Self-Attentions", ICASSP 2023 (arXiv:2302.11824).
The conventions the paper leaves open follow the authors' public code (ModelScope
``modelscope/models/audio/separation/mossformer*.py``, the same model in FunASR
and ClearerVoice-Studio), read only; this module is our own.

Shape of the model. SpeechBrain's ``dual_path.Encoder`` (a bias-free Conv1d of
kernel ``K`` and stride ``K / 2`` with ReLU) and ``dual_path.Decoder`` (the
transposed convolution) are exactly the authors' encoder and decoder, so
:class:`MossFormerMasker` is the masker of :class:`modules.models.MaskingSeparator`
like SpeechBrain's Conv-TasNet and dual-path maskers (``hparams/backbones/mossformer.yaml``).
The masker (``[B, N, L] -> [C, B, N, L]``):

1. group norm over channels and time (``norm: ln``), a bias-free 1x1 convolution
   ``N -> D``, plus a scaled sinusoidal position code (``[sin | cos]`` times one
   learnt scalar);
2. ``R`` MossFormer blocks on the whole sequence (no chunking into a dual path:
   the joint attention below sees the full sequence), then a layer norm, a group
   norm and a residual connection around the whole stack;
3. PReLU, a 1x1 convolution ``D -> C * D`` (one slice per speaker), a gated output
   (``tanh(conv(x)) * sigmoid(conv(x))``), a bias-free 1x1 convolution ``D -> N``
   and ReLU: one mask per speaker on the encoder output.

A **MossFormer block** (:class:`MossFormerBlock`, on ``[B, L, D]``): a token
shift (the first half of the channels delayed by one frame); three
convolution-augmented projections, each ScaleNorm -> Linear -> SiLU -> (x +
depthwise convolution over time, kernel 17, no bias) -> dropout: ``to_hidden``
to ``2 E`` channels (``E = D * expansion / 2``) split into ``v`` and ``u``,
``to_qk`` to the attention dimension ``d`` and, after the joint attention,
``to_out`` from ``E`` back to ``D`` with a residual connection. ``to_qk``'s
output is offset and scaled four times (per-channel ``gamma``, ``N(0, 0.02)``,
and ``beta``, 0) into the queries and keys of the quadratic and of the linear
attention, and rotary position embeddings turn their first 32 channels (by the
absolute frame index over the whole sequence). **Joint attention**
(:func:`joint_attention`), one head, shared by ``v`` and ``u``: in
non-overlapping chunks of ``g`` frames (``group_size``; the sequence is zero
padded to a multiple of ``g``), ``relu(q_i . k_j / g)^2`` weights (then
dropout) over the frames ``j`` of ``i``'s chunk; plus a linear attention over
the full sequence, ``q_i (sum_j k_j^T x_j) / n``. With ``a(x)`` that sum, the
block's gate is ``(a(u) * v) * sigmoid(a(v) * u)``.

At the paper's large size (``N = D = 512``, ``K = 16``, ``R = 24`` blocks,
``g = 256``, ``d = 128``, expansion 4: the defaults of the authors' code) a
two-speaker model has 42.1M parameters (``tests/test_mossformer.py``): the
paper's MossFormer (L), 42.1M.

For the context-aware SIMO-SISO split the masker exposes its pieces in order
(:meth:`MossFormerMasker.embed`, the ``blocks`` list run by
:meth:`~MossFormerMasker.run_blocks`, :meth:`~MossFormerMasker.close_stack`,
:meth:`~MossFormerMasker.split_speakers`, :meth:`~MossFormerMasker.masks_from`);
:class:`MossFormerSplitMasker` is that split with the ``extract`` /
``segregate`` / ``parts`` call of :class:`modules.models.ContextAwareSeparator`.

Departures from the authors' code (also in ``docs/architecture.md``):

* ``to_out`` reads ``E = D * expansion / 2`` channels; the authors' code
  hard-codes ``2 D`` (the same at the paper's expansion of 4, an error at any
  other).
* Rotary embeddings come from SpeechBrain's RoPE (``speechbrain.nnet.attention``:
  interleaved channel pairs, frequencies ``10000^(-2i / 32)``), the convention of
  the ``rotary_embedding_torch`` package the authors use; that package stores its
  16 fixed frequencies as a (frozen) ``nn.Parameter``, counted by a plain
  parameter count, which this model does not have.
* The authors pass a padding mask to the chunked attention; zero-padded keys get
  weight ``relu(0)^2 = 0`` anyway, so it is left out (the outputs are the same).
* Only the non-causal model (the paper's) is built; there is no causal option.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import select_norm
from speechbrain.nnet.attention import _rope_rotate
from torch import nn

__all__ = [
    "BLOCK_NORMS",
    "ConvProjection",
    "MossFormerBlock",
    "MossFormerMasker",
    "MossFormerSplitMasker",
    "ScaleNorm",
    "ScaledSinusoidalEncoding",
    "joint_attention",
    "rotate_partial",
]

#: Normalisation at the input of each convolution-augmented projection.
BLOCK_NORMS = ("scalenorm", "layernorm")


class ScaleNorm(nn.Module):
    """``x / max(||x|| / sqrt(dim), eps) * g`` over the last dimension, ``g`` one learnt scalar.

    Example
    -------
    >>> norm = ScaleNorm(4)
    >>> norm(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
    tensor([[2., 0., 0., 0.]], grad_fn=<MulBackward0>)
    """

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        """``[..., dim] -> [..., dim]``."""
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.gain


def _block_norm(kind, dim):
    if kind == "scalenorm":
        return ScaleNorm(dim)
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    raise ValueError(f"block_norm must be one of {BLOCK_NORMS}, not {kind!r}")


class ConvProjection(nn.Module):
    """Norm -> Linear -> SiLU -> (x + depthwise convolution over time) -> dropout, on ``[B, L, dim_in]``.

    Arguments
    ---------
    dim_in, dim_out : int
    norm : str
        ``scalenorm`` or ``layernorm`` (:data:`BLOCK_NORMS`).
    kernel_size : int
        Odd kernel of the bias-free depthwise convolution ("same" padding).
    dropout : float

    Example
    -------
    >>> ConvProjection(8, 6, kernel_size=3)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 6])
    """

    def __init__(self, dim_in, dim_out, norm="scalenorm", kernel_size=17, dropout=0.1):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size must be odd (same padding), got {kernel_size}")
        self.norm = _block_norm(norm, dim_in)
        self.linear = nn.Linear(dim_in, dim_out)
        self.depthwise = nn.Conv1d(dim_out, dim_out, kernel_size, padding=kernel_size // 2, groups=dim_out, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        """``[B, L, dim_in] -> [B, L, dim_out]``."""
        h = F.silu(self.linear(self.norm(x)))
        h = h + self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        return self.dropout(h)


def rotate_partial(x, rotary_dim):
    """Rotary position embedding of the first ``rotary_dim`` channels of ``x`` ``[B, L, H, d]`` (the rest unchanged).

    Frame ``t``'s channel pair ``(2i, 2i + 1)`` is turned by the angle
    ``t * 10000^(-2i / rotary_dim)`` (SpeechBrain's RoPE, on the device).

    Example
    -------
    >>> x = torch.randn(1, 5, 2, 8)
    >>> y = rotate_partial(x, 4)
    >>> torch.equal(y[..., 4:], x[..., 4:]), torch.allclose(y[:, 0], x[:, 0])
    (True, True)
    """
    if rotary_dim == 0:
        return x
    turned = _rope_rotate(x[..., :rotary_dim])
    return torch.cat([turned, x[..., rotary_dim:]], dim=-1)


def joint_attention(quad_q, quad_k, lin_q, lin_k, values, group_size, dropout=None):
    """MossFormer's single-head joint attention: quadratic within chunks plus linear over the sequence.

    Arguments
    ---------
    quad_q, quad_k, lin_q, lin_k : torch.Tensor
        ``[B, n, d]`` queries and keys of the two attentions.
    values : torch.Tensor
        ``[B, n, e]`` (``v`` and ``u`` side by side: they share the weights).
    group_size : int
        Chunk length ``g`` of the quadratic attention.
    dropout : torch.nn.Module, optional
        Applied to the quadratic attention weights.

    Returns
    -------
    torch.Tensor
        ``[B, n, e]``: for frame ``i`` in chunk ``c``,
        ``sum_{j in c} relu(q_i . k_j / g)^2 x_j + lin_q_i . (sum_j lin_k_j^T x_j) / n``.

    Example
    -------
    >>> q, k = torch.randn(2, 1, 7, 4).unbind(0)
    >>> joint_attention(q, k, q, k, torch.randn(1, 7, 6), group_size=3).shape
    torch.Size([1, 7, 6])
    """
    batch, n, _ = quad_q.shape
    pad = (-n) % group_size
    if pad:  # zero keys get weight relu(0)^2 = 0: no mask is needed
        quad_q, quad_k, padded = (F.pad(t, (0, 0, 0, pad)) for t in (quad_q, quad_k, values))
    else:
        padded = values
    chunks = (n + pad) // group_size
    q = quad_q.reshape(batch, chunks, group_size, -1)
    k = quad_k.reshape(batch, chunks, group_size, -1)
    weights = F.relu(q @ k.transpose(-1, -2) / group_size) ** 2
    if dropout is not None:
        weights = dropout(weights)
    local = (weights @ padded.reshape(batch, chunks, group_size, -1)).reshape(batch, n + pad, -1)[:, :n]
    summary = lin_k.transpose(1, 2) @ values / n  # [B, d, e]
    return local + lin_q @ summary


class MossFormerBlock(nn.Module):
    """One MossFormer block: gated single-head transformer with convolution-augmented joint attention.

    Arguments
    ---------
    dim : int
        ``D``, the block's width.
    group_size : int
        Chunk length of the quadratic attention (256).
    query_key_dim : int
        Attention dimension ``d`` (128).
    expansion_factor : float
        ``to_hidden`` gives ``D * expansion_factor`` channels, half ``v``, half ``u`` (4).
    dropout : float
        Of the attention weights and of each projection (0.1).
    rotary_dim : int
        Channels of the queries and keys turned by rotary embeddings (32; even, at most ``d``).
    block_norm : str
        Norm at the input of each projection (``scalenorm``).
    shift_tokens : bool
        Delay the first half of the channels by one frame at the input (True).
    conv_kernel_size : int
        Depthwise convolution of the projections (17).

    Example
    -------
    >>> block = MossFormerBlock(8, group_size=4, query_key_dim=6, rotary_dim=4, conv_kernel_size=3)
    >>> block(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 8])
    """

    def __init__(
        self,
        dim,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        dropout=0.1,
        rotary_dim=32,
        block_norm="scalenorm",
        shift_tokens=True,
        conv_kernel_size=17,
    ):
        super().__init__()
        hidden = int(dim * expansion_factor)
        if hidden < 2 or hidden % 2:
            raise ValueError(f"dim * expansion_factor must be even (v and u halves), got {dim} * {expansion_factor}")
        if group_size < 1:
            raise ValueError(f"group_size must be positive, got {group_size}")
        if rotary_dim % 2 or not 0 <= rotary_dim <= query_key_dim:
            raise ValueError(f"rotary_dim must be even and within [0, query_key_dim={query_key_dim}], got {rotary_dim}")
        self.group_size = int(group_size)
        self.rotary_dim = int(rotary_dim)
        self.shift_tokens = shift_tokens
        projection = {"norm": block_norm, "kernel_size": conv_kernel_size, "dropout": dropout}
        self.to_hidden = ConvProjection(dim, hidden, **projection)
        self.to_qk = ConvProjection(dim, query_key_dim, **projection)
        self.qk_gamma = nn.Parameter(torch.empty(4, query_key_dim).normal_(std=0.02))
        self.qk_beta = nn.Parameter(torch.zeros(4, query_key_dim))
        self.to_out = ConvProjection(hidden // 2, dim, **projection)
        self.attn_dropout = nn.Dropout(dropout)

    @staticmethod
    def shift(x):
        """Token shift: the first ``ceil(D / 2)`` channels of ``[B, L, D]`` delayed by one frame."""
        half = (x.shape[-1] + 1) // 2
        delayed = F.pad(x[..., :half], (0, 0, 1, 0))[:, :-1]
        return torch.cat([delayed, x[..., half:]], dim=-1)

    def forward(self, x):
        """``[B, L, D] -> [B, L, D]``."""
        h = self.shift(x) if self.shift_tokens else x
        v, u = self.to_hidden(h).chunk(2, dim=-1)
        qk = self.to_qk(h).unsqueeze(-2) * self.qk_gamma + self.qk_beta  # [B, L, 4, d]
        quad_q, lin_q, quad_k, lin_k = rotate_partial(qk, self.rotary_dim).unbind(-2)
        attended = joint_attention(
            quad_q, quad_k, lin_q, lin_k, torch.cat([v, u], dim=-1), self.group_size, self.attn_dropout
        )
        att_v, att_u = attended.chunk(2, dim=-1)
        return x + self.to_out((att_u * v) * torch.sigmoid(att_v * u))


class ScaledSinusoidalEncoding(nn.Module):
    """Absolute position code ``[sin(t w_i) | cos(t w_i)] * s``, ``w_i = 10000^(-2i / dim)``, ``s`` learnt (init 1).

    Example
    -------
    >>> ScaledSinusoidalEncoding(6)(5).shape
    torch.Size([6, 5])
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = int(dim)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, length, device=None, dtype=torch.float32):
        """The code of frames ``0 .. length - 1``, ``[dim, length]``."""
        freqs = torch.exp(
            torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / self.dim)
        )
        angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs
        code = torch.cat([angles.sin(), angles.cos()], dim=-1)[:, : self.dim]
        return (code.t() * self.scale).to(dtype)


class MossFormerMasker(nn.Module):
    """MossFormer's masking network: ``[B, N, L] -> [C, B, N, L]`` (see the module docstring).

    Arguments
    ---------
    in_channels : int
        ``N``, the encoder's channels (512).
    out_channels : int
        ``D``, the width of the MossFormer blocks (512).
    num_spks : int
        Masks ``C`` (speakers, or speakers + 1 with a noise output).
    num_blocks : int
        MossFormer blocks ``R`` (24).
    group_size, query_key_dim, expansion_factor, attn_dropout, rotary_dim, block_norm, shift_tokens, conv_kernel_size
        Of each :class:`MossFormerBlock` (256, 128, 4, 0.1, 32, ``scalenorm``, True, 17).
    norm : str
        SpeechBrain's ``dual_path.select_norm`` kind at the input and after the stack (``ln``).
    skip_around_blocks : bool
        Residual connection around the whole stack of blocks (True).
    use_global_pos_enc : bool
        Add :class:`ScaledSinusoidalEncoding` at the input (True).

    Example
    -------
    >>> masker = MossFormerMasker(8, 12, num_spks=3, num_blocks=2, group_size=4, query_key_dim=8,
    ...                           rotary_dim=4, conv_kernel_size=3)
    >>> masker(torch.rand(2, 8, 21)).shape, len(masker.blocks)
    (torch.Size([3, 2, 8, 21]), 2)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        num_spks=2,
        num_blocks=24,
        group_size=256,
        query_key_dim=128,
        expansion_factor=4.0,
        attn_dropout=0.1,
        rotary_dim=32,
        block_norm="scalenorm",
        shift_tokens=True,
        conv_kernel_size=17,
        norm="ln",
        skip_around_blocks=True,
        use_global_pos_enc=True,
    ):
        super().__init__()
        if num_spks < 1 or num_blocks < 0:
            raise ValueError(f"need num_spks >= 1 and num_blocks >= 0, got {num_spks} and {num_blocks}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.num_spks = int(num_spks)
        self.skip_around_blocks = skip_around_blocks
        self.norm = select_norm(norm, self.in_channels, 3)
        self.conv1d = nn.Conv1d(self.in_channels, self.out_channels, 1, bias=False)
        self.pos_enc = ScaledSinusoidalEncoding(self.out_channels) if use_global_pos_enc else None
        self.blocks = nn.ModuleList(
            MossFormerBlock(
                self.out_channels,
                group_size=group_size,
                query_key_dim=query_key_dim,
                expansion_factor=expansion_factor,
                dropout=attn_dropout,
                rotary_dim=rotary_dim,
                block_norm=block_norm,
                shift_tokens=shift_tokens,
                conv_kernel_size=conv_kernel_size,
            )
            for _ in range(num_blocks)
        )
        self.blocks_norm = nn.LayerNorm(self.out_channels, eps=1e-6)
        self.stack_norm = select_norm(norm, self.out_channels, 3)
        self.prelu = nn.PReLU()
        self.speaker_conv = nn.Conv1d(self.out_channels, self.out_channels * self.num_spks, 1)
        self.output = nn.Sequential(nn.Conv1d(self.out_channels, self.out_channels, 1), nn.Tanh())
        self.output_gate = nn.Sequential(nn.Conv1d(self.out_channels, self.out_channels, 1), nn.Sigmoid())
        self.end_conv1x1 = nn.Conv1d(self.out_channels, self.in_channels, 1, bias=False)

    def embed(self, mix_w):
        """Encoder output ``[B, N, L]`` -> the stack's input ``[B, D, L]`` (norm, 1x1 conv, position code)."""
        if mix_w.dim() != 3 or mix_w.shape[1] != self.in_channels:
            raise ValueError(f"expected encoder features [B, {self.in_channels}, L], got {tuple(mix_w.shape)}")
        x = self.conv1d(self.norm(mix_w))
        if self.pos_enc is not None:
            x = x + self.pos_enc(x.shape[-1], device=x.device, dtype=x.dtype)
        return x

    def run_blocks(self, x, start=0, stop=None):
        """``self.blocks[start:stop]`` on ``[B, D, L]`` -> ``[B, D, L]``."""
        y = x.transpose(1, 2)
        for block in self.blocks[start:stop]:
            y = block(y)
        return y.transpose(1, 2)

    def close_stack(self, y, skip):
        """After the blocks: layer norm, group norm and the residual from the stack's input ``skip``."""
        y = self.stack_norm(self.blocks_norm(y.transpose(1, 2)).transpose(1, 2))
        return y + skip if self.skip_around_blocks else y

    def split_speakers(self, y):
        """``[B, D, L]`` -> one slice per speaker ``[B, C, D, L]`` (PReLU, 1x1 conv ``D -> C D``)."""
        z = self.speaker_conv(self.prelu(y))
        return z.reshape(z.shape[0], self.num_spks, self.out_channels, z.shape[-1])

    def masks_from(self, z):
        """One speaker's slice ``[B', D, L]`` -> its mask ``[B', N, L]`` (gated output, 1x1 conv, ReLU)."""
        return F.relu(self.end_conv1x1(self.output(z) * self.output_gate(z)))

    def forward(self, mix_w):
        """``[B, N, L] -> [C, B, N, L]``."""
        x = self.embed(mix_w)
        slices = self.split_speakers(self.close_stack(self.run_blocks(x), x))
        masks = self.masks_from(slices.flatten(0, 1))
        return masks.reshape(*slices.shape[:2], *masks.shape[1:]).transpose(0, 1)


class MossFormerSplitMasker(nn.Module):
    """MossFormer's masker split into a SIMO context extractor and a SISO segregator (context-aware training).

    The split of :class:`modules.models.context_aware.DualPathSplitMasker`
    applied to MossFormer, with exactly the unsplit model's parameters:

    * extractor: :meth:`MossFormerMasker.embed`, the first ``split_at`` blocks,
      then the speaker split (PReLU, ``D -> C D``), moved from after the last
      block to the middle: ``C_i`` ``[B, C, D, L]``;
    * segregator, once per speaker: the other blocks, the layer and group norm
      and the residual around them (from its input ``C_i``: the unsplit model's
      residual spans all blocks from the position-coded input), then the gated
      output, ``D -> N`` and ReLU.

    Arguments
    ---------
    masker : MossFormerMasker
        Built with ``num_spks`` = the number of speakers.
    split_at : int, optional
        Blocks in the context extractor (default: half of them).

    Example
    -------
    >>> masker = MossFormerSplitMasker(MossFormerMasker(8, 6, num_spks=2, num_blocks=2, group_size=4,
    ...                                                 query_key_dim=4, rotary_dim=2, conv_kernel_size=3))
    >>> context = masker.extract(torch.rand(3, 8, 20))
    >>> context.shape, masker.segregate(context[:, 1]).shape, masker.split_at
    (torch.Size([3, 2, 6, 20]), torch.Size([3, 8, 20]), 1)
    """

    def __init__(self, masker, split_at=None):
        super().__init__()
        if not isinstance(masker, MossFormerMasker):
            raise TypeError(f"expected a MossFormerMasker, got {type(masker).__name__}")
        self.masker = masker
        self.num_spks = masker.num_spks
        self.n_blocks = len(masker.blocks)
        self.split_at = self.n_blocks // 2 if split_at is None else int(split_at)
        if not 0 <= self.split_at <= self.n_blocks:
            raise ValueError(f"split_at must be within [0, {self.n_blocks}] (the number of blocks), got {split_at}")
        self.context_dim = masker.out_channels

    def parts(self):
        """``{"extractor": [modules], "segregator": [modules]}``."""
        m = self.masker
        first = [m.norm, m.conv1d, *([m.pos_enc] if m.pos_enc is not None else [])]
        return {
            "extractor": [*first, *m.blocks[: self.split_at], m.prelu, m.speaker_conv],
            "segregator": [*m.blocks[self.split_at :], m.blocks_norm, m.stack_norm, m.output, m.output_gate,
                           m.end_conv1x1],
        }  # fmt: skip

    def extract(self, mix_w):
        """Encoder output ``[B, N, L]`` -> contextual embeddings ``[B, C, D, L]``."""
        m = self.masker
        return m.split_speakers(m.run_blocks(m.embed(mix_w), 0, self.split_at))

    def segregate(self, context):
        """One speaker's embedding ``[B', D, L]`` -> its mask ``[B', N, L]``."""
        m = self.masker
        return m.masks_from(m.close_stack(m.run_blocks(context, self.split_at), context))
