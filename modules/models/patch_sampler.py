"""Patch sampler of NASS: patches of the masked encoder maps and their shared projection head.

Equation 5 of the NASS paper projects query, positive and negative patches
of the ``N x L`` encoder representations into one embedding space on the
unit sphere, with patches of size ``P = 1`` and an MLP of ``Q = 256``
features. In the authors' code (``PatchSampleF`` in
``speechbrain/lobes/models/networks.py`` of ``TzuchengChang/NASS``) a patch
is one time-frequency bin: the ``N x L`` map is treated as a one-channel
image, passed through ``Conv2d(1, 1, 3) -> ReLU -> Conv2d(1, 1, 3)`` (no
padding, so the map shrinks to ``(N - 4) x (L - 4)``), ``M`` of those bins
are drawn, and each scalar goes through ``Linear(1, Q) -> ReLU ->
Linear(Q, Q)`` and is L2-normalised. :class:`PatchSampler` implements that
(``patch="bin"``, the default) and the earlier reading of a patch as one
frame, the ``N``-dimensional column at one time position (``patch="frame"``).

One bin of the convolved map depends on the ``5 x 5`` window of the map
below it (two unpadded ``3 x 3`` convolutions), so :meth:`PatchSampler.extract`
never builds the whole masked maps ``h_k = m_k * h_x`` nor encodes the whole
clean sources: it draws the positions, gathers the ``5 x 5`` windows of the
masks and of the mixture's encoder output and multiplies them there, and
runs the encoder on the clean sources at the needed frames and filters only
(:func:`encode_windows`, :func:`encode_frames`). :meth:`PatchSampler.forward`
then reduces each window to its bin with the convolutions and embeds it. The
loss itself is :func:`modules.losses.nass_contrastive_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import Encoder as DualPathEncoder

from modules.losses.patch import sample_patch_positions

__all__ = ["BIN_WINDOW", "PATCH_KINDS", "PatchSampler", "encode_frames", "encode_windows"]

#: What a patch is: one bin of the convolved map (the authors' code), or one N-dimensional frame.
PATCH_KINDS = ("bin", "frame")

#: Side of the window of the feature map that one bin after the two unpadded 3 x 3 convolutions sees.
BIN_WINDOW = 5


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)


def _fast_conv(encoder: torch.nn.Module) -> torch.nn.Conv1d | None:
    """The ``Conv1d`` of a SpeechBrain dual-path ``Encoder`` that :func:`encode_frames` can slice, else None."""
    if not isinstance(encoder, DualPathEncoder):
        return None
    conv = encoder.conv1d
    plain = conv.in_channels == 1 and conv.groups == 1 and conv.dilation == (1,) and conv.padding in ((0,), "valid")
    return conv if plain and conv.padding_mode == "zeros" and encoder.in_channels == 1 else None


def _check_signals(signals: torch.Tensor, index: torch.Tensor, name: str) -> None:
    if signals.ndim != 3:
        raise ValueError(f"expected signals of shape [batch, n_src, time], got {tuple(signals.shape)}")
    if index.ndim < 1 or index.shape[0] != signals.shape[0] or not _is_integer(index):
        raise ValueError(
            f"expected {name} as an integer tensor [batch = {signals.shape[0]}, ...], got {index.dtype} "
            f"{tuple(index.shape)}"
        )


def _full_encoding(encoder: torch.nn.Module, signals: torch.Tensor) -> torch.Tensor:
    """``encoder`` on every source: ``[B, n_src, T] -> [B, n_src, N, L]``."""
    feats = encoder(signals.flatten(0, 1))
    if feats.ndim != 3:
        raise ValueError(f"the encoder must map [batch, time] to [batch, N, L], got {tuple(feats.shape)}")
    return feats.reshape(*signals.shape[:2], *feats.shape[1:])


def encode_frames(encoder: torch.nn.Module, signals: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Encoder output of ``signals`` at the given frames only, all filters.

    For SpeechBrain's dual-path ``Encoder`` (an unpadded strided ``Conv1d``
    from one channel, then a ReLU), frame ``l`` depends on the samples
    ``[l * stride, l * stride + kernel)`` only, so the wanted frames are one
    matrix product of the filters with as many signal windows instead of a
    pass over the whole signals. Any other encoder is run in full and the
    frames gathered.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``[batch, time]`` to ``[batch, N, L]``.
    signals : torch.Tensor
        ``[B, n_src, T]``.
    frames : torch.Tensor
        ``[B, *shape]`` long frame indices in ``[0, L)``.

    Returns
    -------
    torch.Tensor
        ``[B, n_src, *shape, N]``: ``out[b, s, ..., n]`` is
        ``encoder(signals[b, s])[n, frames[b, ...]]``.

    Raises
    ------
    ValueError
        On badly shaped inputs or an encoder that does not return ``[batch, N, L]``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> enc = Encoder(kernel_size=16, out_channels=8)
    >>> x, frames = torch.randn(2, 3, 800), torch.tensor([[0, 5, 98], [7, 7, 1]])
    >>> full = enc(x.flatten(0, 1)).reshape(2, 3, 8, -1)  # [B, n_src, N, L]
    >>> expected = torch.stack([full[b][:, :, frames[b]] for b in range(2)]).transpose(-1, -2)
    >>> torch.allclose(encode_frames(enc, x, frames), expected, atol=1e-6)
    True
    """
    _check_signals(signals, frames, "frames")
    batch, n_src, _ = signals.shape
    flat = frames.reshape(batch, -1)
    conv = _fast_conv(encoder)
    if conv is not None:
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        windows = signals.unfold(-1, kernel, stride)  # [B, n_src, L, kernel]: a view
        picked = windows.gather(2, flat[:, None, :, None].expand(-1, n_src, -1, kernel))  # [B, n_src, F, kernel]
        out = torch.relu(F.linear(picked, conv.weight[:, 0], conv.bias))  # [B, n_src, F, N]
    else:
        feats = _full_encoding(encoder, signals)  # [B, n_src, N, L]
        out = feats.gather(-1, flat[:, None, None, :].expand(-1, n_src, feats.shape[2], -1)).transpose(-1, -2)
    return out.reshape(batch, n_src, *frames.shape[1:], out.shape[-1])


def encode_windows(
    encoder: torch.nn.Module, signals: torch.Tensor, filters: torch.Tensor, frames: torch.Tensor
) -> torch.Tensor:
    """Encoder output of ``signals`` on small filter x frame windows only.

    Window ``m`` of item ``b`` is the grid of filters ``filters[b, m]`` by
    frames ``frames[b, m]``. For SpeechBrain's dual-path ``Encoder`` only the
    wanted filters are applied to the wanted frames' samples (one batched
    matrix product, ``R * C * kernel`` multiplications per window and
    source); any other encoder is run in full and the windows gathered.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``[batch, time]`` to ``[batch, N, L]``.
    signals : torch.Tensor
        ``[B, n_src, T]``.
    filters : torch.Tensor
        ``[B, M, R]`` long filter (row) indices in ``[0, N)``.
    frames : torch.Tensor
        ``[B, M, C]`` long frame (column) indices in ``[0, L)``.

    Returns
    -------
    torch.Tensor
        ``[B, n_src, M, R, C]``: ``out[b, s, m, r, c]`` is
        ``encoder(signals[b, s])[filters[b, m, r], frames[b, m, c]]``.

    Raises
    ------
    ValueError
        On badly shaped inputs or an encoder that does not return ``[batch, N, L]``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> enc = Encoder(kernel_size=16, out_channels=8)
    >>> x = torch.randn(1, 2, 800)
    >>> rows, cols = torch.tensor([[[1, 2, 3]]]), torch.tensor([[[10, 11]]])  # one 3 x 2 window
    >>> full = enc(x[0])  # [n_src, N, L]
    >>> torch.allclose(encode_windows(enc, x, rows, cols)[0, :, 0], full[:, 1:4, 10:12], atol=1e-6)
    True
    """
    _check_signals(signals, filters, "filters")
    _check_signals(signals, frames, "frames")
    if filters.ndim != 3 or frames.ndim != 3 or filters.shape[1] != frames.shape[1]:
        raise ValueError(
            f"expected filters [B, M, R] and frames [B, M, C], got {tuple(filters.shape)} and {tuple(frames.shape)}"
        )
    batch, n_src, _ = signals.shape
    n_win, n_cols = frames.shape[1:]
    conv = _fast_conv(encoder)
    if conv is not None:
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        windows = signals.unfold(-1, kernel, stride)  # [B, n_src, L, kernel]: a view
        index = frames.reshape(batch, 1, -1, 1).expand(-1, n_src, -1, kernel)
        picked = windows.gather(2, index).reshape(batch, n_src, n_win, n_cols, kernel)
        weights = conv.weight[:, 0][filters]  # [B, M, R, kernel]
        out = torch.matmul(weights.unsqueeze(1), picked.transpose(-1, -2))  # [B, n_src, M, R, C]
        if conv.bias is not None:
            out = out + conv.bias[filters].unsqueeze(1).unsqueeze(-1)
        return torch.relu(out)
    feats = _full_encoding(encoder, signals)  # [B, n_src, N, L]
    items = torch.arange(batch, device=signals.device)[:, None, None, None]
    # advanced indices around a slice: the indexed axes come first, [B, M, R, C, n_src]
    return feats[items, :, filters[..., :, None], frames[..., None, :]].permute(0, 4, 1, 2, 3)


class PatchSampler(torch.nn.Module):
    """Shared projection head of NASS's patch-wise contrastive loss, and the patch extraction.

    ``patch="bin"`` (the authors' code): a patch is one bin of the masked
    encoder map after ``Conv2d(1, 1, 3) -> ReLU -> Conv2d(1, 1, 3)``
    (unpadded), embedded by ``Linear(1, Q) -> ReLU -> Linear(Q, Q)``; the
    raw patch handed to :meth:`forward` is the ``5 x 5`` window of the map
    that the two convolutions reduce to that bin, so raw patches are
    ``[..., 5, 5]``. ``patch="frame"``: a patch is one frame, the
    ``N``-dimensional column of the map, embedded by
    ``Linear(N, Q) -> ReLU -> Linear(Q, Q)``; raw patches are ``[..., N]``.
    Each embedding is scaled to unit Euclidean norm, so that dot products
    of embeddings are cosine similarities.

    Arguments
    ---------
    patch : str
        ``"bin"`` (default) or ``"frame"``.
    features : int
        Embedding size ``Q`` (256 in the paper).
    in_channels : int, optional
        Number of encoder filters ``N``. Required for frame patches (the
        MLP's input size); optional for bin patches, where, if given,
        :meth:`extract` checks that the maps have ``N`` rows.
    eps : float
        Lower bound of the norm in the normalisation (guards all-zero outputs).

    Raises
    ------
    ValueError
        On an unknown ``patch``, a missing ``in_channels`` for frame patches,
        or non-positive sizes.

    Notes
    -----
    Parameters: bin ``2 * (9 + 1) + (Q + Q) + (Q * Q + Q)`` (66,324 for
    ``Q = 256``, the authors' 0.066M); frame ``(N * Q + Q) + (Q * Q + Q)``.
    All layers keep PyTorch's default initialisation (the authors' code
    stores an ``init_type`` but never applies it). The submodules are
    ``conv`` (bin only) and ``mlp``; a frame sampler's ``state_dict`` keeps
    the keys of the earlier frame-only sampler.

    The normalisation runs in float32 (float64 for float64 inputs): inside a
    ``torch.autocast`` region the convolutions and the MLP run in the
    low-precision dtype, their output is cast up before the norm is taken,
    and the returned embeddings are float32 and unit-norm to float32
    accuracy.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> sampler = PatchSampler()  # bin patches, Q = 256
    >>> sum(p.numel() for p in sampler.parameters())
    66324
    >>> windows = torch.rand(2, 3, 10, 5, 5)  # [batch, sources, M, 5, 5]
    >>> emb = sampler(windows)
    >>> emb.shape, emb.dtype
    (torch.Size([2, 3, 10, 256]), torch.float32)
    >>> bool(torch.allclose(emb.norm(dim=-1), torch.ones(2, 3, 10)))
    True
    >>> PatchSampler("frame", features=32, in_channels=64)(torch.rand(4, 64)).shape
    torch.Size([4, 32])
    """

    def __init__(self, patch: str = "bin", features: int = 256, in_channels: int | None = None, eps: float = 1e-12):
        super().__init__()
        if patch not in PATCH_KINDS:
            raise ValueError(
                f"patch must be one of {PATCH_KINDS}, got {patch!r} (frame patches also need in_channels=N)"
            )
        if patch == "frame" and in_channels is None:
            raise ValueError("frame patches need in_channels (the number of encoder filters N)")
        min_channels = BIN_WINDOW if patch == "bin" else 1
        if features < 1 or (in_channels is not None and in_channels < min_channels):
            raise ValueError(
                f"expected features >= 1 and in_channels >= {min_channels} for {patch} patches, got "
                f"{features} and {in_channels}"
            )
        self.patch = patch
        self.features = features
        self.in_channels = in_channels
        self.eps = eps
        if patch == "bin":
            self.conv = torch.nn.Sequential(
                torch.nn.Conv2d(1, 1, 3),
                torch.nn.ReLU(),
                torch.nn.Conv2d(1, 1, 3),
            )
        mlp_in = 1 if patch == "bin" else in_channels
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(mlp_in, features),
            torch.nn.ReLU(),
            torch.nn.Linear(features, features),
        )

    @property
    def patch_shape(self) -> tuple[int, ...]:
        """Trailing shape of one raw patch: ``(5, 5)`` for bins, ``(N,)`` for frames."""
        return (BIN_WINDOW, BIN_WINDOW) if self.patch == "bin" else (self.in_channels,)

    def extra_repr(self) -> str:
        """The options shown by ``print(module)``."""
        return f"patch={self.patch!r}, features={self.features}, in_channels={self.in_channels}"

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Embed raw patches on the unit sphere.

        Arguments
        ---------
        patches : torch.Tensor
            ``[..., *patch_shape]``: ``[..., 5, 5]`` windows of the feature
            map (bin patches) or ``[..., N]`` frames (frame patches).

        Returns
        -------
        torch.Tensor
            ``[..., features]`` unit-norm embeddings, float32 (float64 when
            the MLP output is float64).

        Raises
        ------
        ValueError
            If the trailing shape is not :attr:`patch_shape`.
        """
        shape = self.patch_shape
        if patches.ndim < len(shape) or tuple(patches.shape[patches.ndim - len(shape) :]) != shape:
            raise ValueError(
                f"expected {self.patch} patches of shape [..., {', '.join(map(str, shape))}], "
                f"got {tuple(patches.shape)}"
            )
        lead = patches.shape[: patches.ndim - len(shape)]
        if self.patch == "bin":
            bins = self.conv(patches.reshape(-1, 1, BIN_WINDOW, BIN_WINDOW))  # [K, 1, 1, 1]
            out = self.mlp(bins.reshape(-1, 1))
        else:
            out = self.mlp(patches.reshape(-1, shape[0]))
        dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
        # norm and division are not autocast ops: they run in the dtype given here.
        out = F.normalize(out.to(dtype), p=2.0, dim=-1, eps=self.eps)
        return out.reshape(*lead, self.features)

    def grid_shape(self, n_filters: int, n_frames: int) -> tuple[int, int]:
        """Rows and columns of the grid of patch positions of an ``N x L`` map.

        Bins: ``(N - 4, L - 4)``, the map after the two unpadded convolutions
        (position ``(i, j)`` is the window of filters ``i .. i + 4`` and
        frames ``j .. j + 4``). Frames: ``(1, L)``.

        Raises
        ------
        ValueError
            If the map is too small for one patch.

        Example
        -------
        >>> PatchSampler().grid_shape(256, 1000), PatchSampler("frame", in_channels=256).grid_shape(256, 1000)
        ((252, 996), (1, 1000))
        """
        if self.patch == "frame":
            if n_frames < 1:
                raise ValueError(f"expected at least one frame, got {n_frames}")
            return 1, n_frames
        if n_filters < BIN_WINDOW or n_frames < BIN_WINDOW:
            raise ValueError(
                f"bin patches need a map of at least {BIN_WINDOW} x {BIN_WINDOW} (N x L), got {n_filters} x {n_frames}"
            )
        return n_filters - BIN_WINDOW + 1, n_frames - BIN_WINDOW + 1

    def sample_positions(
        self,
        n_filters: int,
        n_frames: int,
        n_patches: int,
        batch: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Random patch positions of an ``N x L`` map, drawn independently for every batch item.

        Arguments
        ---------
        n_filters, n_frames : int
            ``N`` and ``L`` of the encoder map.
        n_patches : int
            ``M``, positions per item.
        batch : int
            Number of items.
        device : torch.device or str, optional
            Device of the result (the CPU by default).
        generator : torch.Generator, optional
            Source of randomness (see :func:`modules.losses.sample_patch_positions`).

        Returns
        -------
        torch.Tensor
            ``[batch, M]`` long flat indices into :meth:`grid_shape`
            (``row * columns + column``): a uniformly random subset of the
            grid per item when ``M`` is at most its size, independent
            uniform draws otherwise.

        Example
        -------
        >>> pos = PatchSampler().sample_positions(8, 20, 6, 2, generator=torch.Generator().manual_seed(0))
        >>> pos.shape, bool(pos.max() < 4 * 16)
        (torch.Size([2, 6]), True)
        """
        rows, cols = self.grid_shape(n_filters, n_frames)
        return sample_patch_positions(rows * cols, n_patches, batch, device, generator=generator)

    def extract(
        self,
        mix_w: torch.Tensor,
        masks: torch.Tensor,
        encoder: torch.nn.Module,
        sources: torch.Tensor,
        n_patches: int = 256,
        generator: torch.Generator | None = None,
        *,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw patches of the masked maps ``h_k = m_k * h_x`` and of the encoded clean sources.

        The ``M`` positions are drawn per batch item (:meth:`sample_positions`)
        and shared by every output and every source, so that the estimate,
        its reference and the noise estimate are compared bin by bin. Only
        the patches are computed: ``m_k * h_x`` on the gathered windows, and
        the encoder on the clean sources at the needed frames (and, for
        bins, filters) through :func:`encode_windows` / :func:`encode_frames`.

        Arguments
        ---------
        mix_w : torch.Tensor
            ``[B, N, L]``: the encoder output of the mixture, ``h_x``.
        masks : torch.Tensor
            ``[S, B, N, L]``: the masker's ``S`` masks (speakers and noise,
            in output order).
        encoder : torch.nn.Module
            The separator's encoder, ``[batch, time] -> [batch, N, L]``.
        sources : torch.Tensor
            ``[B, T, S]``: the clean targets, speakers first and the noise
            last (SpeechBrain's layout); ``encoder`` must give ``L`` frames
            for ``T`` samples.
        n_patches : int
            ``M`` (256 in NASS).
        generator : torch.Generator, optional
            Source of randomness for the positions.
        positions : torch.Tensor, optional
            ``[B, M]`` flat positions (as returned by :meth:`sample_positions`)
            to use instead of drawing them; ``n_patches`` and ``generator``
            are then ignored. Not range-checked (that would synchronise with
            the device): out-of-range values fail in the indexing.

        Returns
        -------
        est_patches : torch.Tensor
            ``[B, S, M, *patch_shape]`` in output order, differentiable with
            respect to ``masks`` and ``mix_w``.
        true_patches : torch.Tensor
            ``[B, S, M, *patch_shape]`` in target order, computed without
            gradient.

        Raises
        ------
        ValueError
            On inconsistent shapes, a map too small for one patch, ``M < 1``,
            or an ``N`` other than ``in_channels``.

        Notes
        -----
        Uses no parameter of the sampler, so under ``DistributedDataParallel``
        call it on the wrapped module (``ddp_sampler.module.extract``) and
        pass the wrapper itself to the loss, which calls it once with
        gradient (the queries) per step.

        Example
        -------
        >>> from speechbrain.lobes.models.dual_path import Encoder
        >>> enc = Encoder(kernel_size=16, out_channels=12)
        >>> sources = torch.randn(2, 800, 3)  # [B, T, S]: 2 speakers + noise
        >>> mix_w = enc(sources.sum(-1))  # [B, N, L] = [2, 12, 99]
        >>> masks = torch.rand(3, *mix_w.shape)
        >>> est, true = PatchSampler().extract(mix_w, masks, enc, sources, n_patches=16)
        >>> est.shape, true.shape, true.requires_grad
        (torch.Size([2, 3, 16, 5, 5]), torch.Size([2, 3, 16, 5, 5]), False)
        """
        if mix_w.ndim != 3 or masks.ndim != 4 or sources.ndim != 3:
            raise ValueError(
                "expected mix_w [B, N, L], masks [S, B, N, L] and sources [B, T, S], got "
                f"{tuple(mix_w.shape)}, {tuple(masks.shape)} and {tuple(sources.shape)}"
            )
        batch, n_filters, n_frames = mix_w.shape
        n_src = masks.shape[0]
        if masks.shape[1:] != mix_w.shape or sources.shape[0] != batch or sources.shape[2] != n_src:
            raise ValueError(
                "masks must be [S, *mix_w.shape] and sources [B, T, S], got "
                f"mix_w {tuple(mix_w.shape)}, masks {tuple(masks.shape)} and sources {tuple(sources.shape)}"
            )
        if self.in_channels is not None and n_filters != self.in_channels:
            raise ValueError(f"expected maps of N = in_channels = {self.in_channels} filters, got {n_filters}")
        device = mix_w.device
        _, n_cols = self.grid_shape(n_filters, n_frames)
        if positions is None:
            if n_patches < 1:
                raise ValueError(f"n_patches must be at least 1, got {n_patches}")
            positions = self.sample_positions(n_filters, n_frames, n_patches, batch, device, generator)
        elif positions.ndim != 2 or positions.shape[0] != batch or positions.shape[1] < 1 or not _is_integer(positions):
            raise ValueError(
                f"expected positions as an integer tensor [batch = {batch}, M >= 1], got {positions.dtype} "
                f"{tuple(positions.shape)}"
            )
        conv = _fast_conv(encoder)
        if conv is not None and (sources.shape[1] - conv.kernel_size[0]) // conv.stride[0] + 1 != n_frames:
            raise ValueError(
                f"the encoder gives {(sources.shape[1] - conv.kernel_size[0]) // conv.stride[0] + 1} frames for the "
                f"{sources.shape[1]} samples of sources, but mix_w has L = {n_frames}"
            )
        positions = positions.to(device=device, dtype=torch.long)
        signals = sources.transpose(1, 2)  # [B, S, T]
        items = torch.arange(batch, device=device)[:, None]
        if self.patch == "frame":
            mix_at = mix_w.transpose(1, 2)[items, positions]  # [B, M, N]
            masks_at = masks.transpose(2, 3)[:, items, positions]  # [S, B, M, N]
            est = (masks_at * mix_at).transpose(0, 1)
            with torch.no_grad():
                true = encode_frames(encoder, signals.detach(), positions)  # [B, S, M, N]
            return est, true
        offsets = torch.arange(BIN_WINDOW, device=device)
        rows = (positions // n_cols)[..., None] + offsets  # [B, M, 5] filters
        cols = (positions % n_cols)[..., None] + offsets  # [B, M, 5] frames
        index = (items[..., None, None], rows[..., :, None], cols[..., None, :])
        mix_at = mix_w[index]  # [B, M, 5, 5]
        masks_at = masks[(slice(None), *index)]  # [S, B, M, 5, 5]
        est = (masks_at * mix_at).transpose(0, 1)
        with torch.no_grad():
            true = encode_windows(encoder, signals.detach(), rows, cols)  # [B, S, M, 5, 5]
        return est, true
