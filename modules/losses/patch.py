"""Patch-wise contrastive loss of NASS (equation 6), vectorised over batch, speakers and patches.

:func:`nass_contrastive_loss` works on raw patches already extracted by
:meth:`modules.models.PatchSampler.extract` (``M`` positions per batch item,
shared by every output and source) and reuses the permutation of
:func:`modules.losses.pit_si_snr_loss`. Its logits and log-softmax are
computed in float32 with autocast disabled; it never synchronises with the
host.

What a patch is (from the authors' code, ``TzuchengChang/NASS``:
``PatchSampleF`` in ``speechbrain/lobes/models/networks.py``,
``PatchNCELoss`` in ``speechbrain/nnet/patchnce.py``, their use in
``recipes/LibriMix/separation/train.py``): one time-frequency bin of the
masked encoder map ``h_k = m_k * h_x`` (``N x L``) after
``Conv2d(1, 1, 3) -> ReLU -> Conv2d(1, 1, 3)``, embedded by an MLP
``1 -> 256 -> 256`` and L2-normalised (the paper's ``r`` in
``R^{P x P x Q}`` with ``P = 1``). The query is the estimate of speaker
``t`` at ``M = 256`` bins, the positive the clean reference of ``t``
through the same encoder and front end at the same bins, the negatives the
estimated noise at the same ``M`` bins.

Where this implementation departs from the paper or the authors' code, and why:

* Permutation per batch item: the authors reorder the outputs of the whole
  batch with the PIT permutation of item 0 (``perms[0]``), which pairs the
  wrong outputs for the other items whenever their permutation differs
  (harmless only at their batch size of 1). ``perm`` is applied per item.
* Positions per batch item: the authors draw one set of ``M`` positions per
  step (``np.random.permutation`` on the host) and use it for every item;
  here each item draws its own, on the device, from a seedable generator.
* Negatives per item: with the authors' options
  (``nce_includes_all_negatives_from_minibatch: False`` with ``batch_size: 1``
  hard-coded in the loss options) a batch larger than 1 would pool the
  negatives of all items (``B * M`` per query); here the negatives of a
  query always come from its own item. Identical at batch 1.
* More patches than positions: the authors truncate ``M`` to the number of
  bins; here positions are then drawn with replacement, so ``M`` is what was
  asked for. Never the case at the recipes' sizes (``(N - 4)(L - 4)`` is
  about 250,000 bins for ``N = 256`` and 4 s at 8 kHz).
* Mean instead of sum over patches: equation 6 sums over the ``M``
  patches; the authors' code (``CrossEntropyLoss`` then ``.mean()``) and
  this function average, so the loss is ``1 / M`` of the paper's and the
  weight lambda (2) is the one tuned for the mean. The mean over the ``C``
  speakers is equation 6's ``1 / C``.
* Same-position negative: equation 6 sums over ``M`` negatives, "other"
  patches sampled on the noise map; the authors take the noise bins at the
  query's own ``M`` positions and mask the diagonal (the negative at the
  query's own position) by filling its cosine with ``-10`` before dividing
  by tau, a weight of ``exp(-10 / 0.07)`` that is exactly zero in float32
  and float16. ``mask_same_position=True`` (default) excludes that negative
  exactly (``-inf`` logit), so each query has ``M - 1`` negatives;
  ``False`` keeps all ``M``. With the mask and ``M = 1`` no negative is
  left and the loss is 0 (so is the authors').
* Directions: the authors' code has S->N only; the paper's N->S (Table 2)
  is read as query = noise estimate, positive = true noise, negatives =
  the estimate of speaker ``t`` at the same positions, one term per
  speaker averaged over ``C``; ``"both"`` is the sum of the two terms.
* Gradients: the authors detach positive and negatives after the MLP;
  here they are embedded under ``torch.no_grad`` (the same gradients
  without building their graphs), and the clean references are encoded
  without gradient in the first place.
* Numerics: logits and log-sum-exp in float32 with autocast off (the
  authors run them in float16 under autocast); embeddings are normalised
  as ``x / max(|x|, 1e-12)`` instead of ``x / (|x| + 1e-7)``, a relative
  difference of about ``1e-7``.
* ``patch="frame"`` (an option of :class:`modules.models.PatchSampler`,
  not the default) reads a patch as one ``N``-dimensional frame with an MLP
  ``N -> 256 -> 256``; it is not what the authors' code does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from modules.losses.common import autocast_off, output_dtype

__all__ = ["NASS_DIRECTIONS", "nass_contrastive_loss", "patch_nce_loss", "sample_patch_positions"]


#: Directions of the NASS contrastive loss: speech -> noise, noise -> speech, or the sum of both.
NASS_DIRECTIONS = ("s2n", "n2s", "both")


def sample_patch_positions(
    n_positions: int,
    n_patches: int,
    batch: int,
    device: torch.device | str | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random positions among ``n_positions``, drawn independently for every batch item.

    Arguments
    ---------
    n_positions : int
        Number of positions to draw from (results are in ``[0, n_positions)``),
        e.g. the flat grid of :meth:`modules.models.PatchSampler.grid_shape`.
    n_patches : int
        Number of positions ``M`` per batch item.
    batch : int
        Number of batch items.
    device : torch.device or str or None
        Device of the returned tensor (``None``: the CPU).
    generator : torch.Generator, optional
        Source of randomness (the global one by default). The numbers are
        drawn on the generator's device and the result moved to ``device``,
        so a seeded CPU generator gives the same positions on any device.

    Returns
    -------
    torch.Tensor
        ``[batch, n_patches]`` long. Without replacement (distinct positions
        in each row, a uniformly random subset in random order) when
        ``n_patches <= n_positions``: the indices of the ``M`` largest of
        ``n_positions`` uniform numbers (``topk``, linear in
        ``n_positions``); with replacement (independent uniform draws,
        ``torch.randint``) otherwise. One vectorised call for all rows.

    Raises
    ------
    ValueError
        If ``n_positions`` or ``n_patches`` is below 1 or ``batch`` is negative.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> pos = sample_patch_positions(100, 8, 2, "cpu", generator=gen)
    >>> pos.shape, pos.dtype
    (torch.Size([2, 8]), torch.int64)
    >>> [len(set(row.tolist())) for row in pos]  # distinct within each item
    [8, 8]
    >>> sample_patch_positions(3, 10, 1, "cpu").shape  # more patches than positions: with replacement
    torch.Size([1, 10])
    """
    if n_positions < 1 or n_patches < 1 or batch < 0:
        raise ValueError(
            f"expected n_positions >= 1, n_patches >= 1 and batch >= 0, got {n_positions}, {n_patches} and {batch}"
        )
    device = torch.device("cpu") if device is None else torch.device(device)
    draw_device = generator.device if generator is not None else device
    if n_patches <= n_positions:
        noise = torch.rand(batch, n_positions, generator=generator, device=draw_device)
        positions = noise.topk(n_patches, dim=-1).indices
    else:
        positions = torch.randint(n_positions, (batch, n_patches), generator=generator, device=draw_device)
    return positions.to(device)


def patch_nce_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float = 0.07,
    mask_same_position: bool = False,
) -> torch.Tensor:
    """PatchNCE (InfoNCE) loss of embedded patches, per batch item.

    For query patch ``i`` of source ``s`` the logits are
    ``[q_i . p_i, q_i . n_1, ..., q_i . n_K] / tau`` and the loss is the
    cross-entropy with the positive in class 0.

    Arguments
    ---------
    query : torch.Tensor
        ``[B, S, M, Q]``: ``M`` query embeddings for each of ``S`` sources.
    positive : torch.Tensor
        ``[B, S, M, Q]``: ``positive[b, s, i]`` is the positive of
        ``query[b, s, i]``.
    negatives : torch.Tensor
        ``[B, S, K, Q]``: the ``K`` negatives shared by all queries of
        ``(b, s)`` (``K = M`` in NASS).
    tau : float
        Temperature (0.07 in NASS).
    mask_same_position : bool
        Exclude negative ``i`` from the logits of query ``i`` (the diagonal
        of the query x negative similarities), for negatives drawn at the
        queries' own positions; needs ``K = M``. Default ``False``: every
        negative is kept.

    Returns
    -------
    torch.Tensor
        ``[B]``: the cross-entropy averaged over the ``M`` patches and over
        the ``S`` sources. float32 (float64 if ``query`` is float64).

    Raises
    ------
    ValueError
        On inconsistent shapes (``K != M`` with the mask included) or a
        non-positive ``tau``.

    Notes
    -----
    Embeddings are expected L2-normalised (see
    :class:`modules.models.PatchSampler`), so that the dot products are
    cosine similarities; this function does not normalise them.

    The mean over patches is that of PyTorch's ``CrossEntropyLoss`` as used
    by CUT's PatchNCE loss and by the NASS authors' code; equation 6 of the
    paper writes a sum over ``i``, ``M`` times this value. The mask gives
    the excluded logit the value ``-inf``, which the authors' ``-10 / tau``
    equals in float32 (its weight underflows to zero); the positive logit
    is never masked, so the log-sum-exp stays finite.

    The inputs are cast to float32 and the logits (one batched matrix
    product ``[B, S, M, Q] x [B, S, Q, K]`` for the negatives) and their
    log-sum-exp are computed with autocast disabled, so the function is
    safe inside a ``torch.autocast`` region. Gradients flow to all three
    inputs; detach the ones that should be constants before calling.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> q = torch.nn.functional.normalize(torch.randn(2, 3, 16, 8), dim=-1)
    >>> n = torch.nn.functional.normalize(torch.randn(2, 3, 16, 8), dim=-1)
    >>> loss = patch_nce_loss(q, q, n)  # positives identical to the queries
    >>> loss.shape
    torch.Size([2])
    >>> bool((loss < patch_nce_loss(q, n, q)).all())  # ... beat positives among the negatives
    True
    >>> bool((patch_nce_loss(q, n, q, mask_same_position=True) < patch_nce_loss(q, n, q)).all())
    True
    """
    if query.ndim != 4 or positive.ndim != 4 or negatives.ndim != 4:
        raise ValueError(
            "expected query, positive and negatives of shape [B, S, M, Q], [B, S, M, Q] and [B, S, K, Q], got "
            f"{tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}"
        )
    if (
        positive.shape != query.shape
        or negatives.shape[:2] != query.shape[:2]
        or negatives.shape[3] != query.shape[3]
        or query.shape[2] < 1
        or negatives.shape[2] < 1
    ):
        raise ValueError(
            "query and positive must have the same shape [B, S, M, Q] and negatives [B, S, K, Q] "
            f"(M, K >= 1), got {tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}"
        )
    if mask_same_position and negatives.shape[2] != query.shape[2]:
        raise ValueError(
            f"mask_same_position needs one negative per query position (K = M), got M = {query.shape[2]} "
            f"and K = {negatives.shape[2]}"
        )
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    dtype = output_dtype(query)
    with autocast_off(query.device):
        query, positive, negatives = query.to(dtype), positive.to(dtype), negatives.to(dtype)
        pos_logit = (query * positive).sum(dim=-1, keepdim=True)  # [B, S, M, 1]
        neg_logits = torch.matmul(query, negatives.transpose(-1, -2))  # [B, S, M, K]
        if mask_same_position:
            same = torch.eye(query.shape[2], dtype=torch.bool, device=query.device)
            neg_logits = neg_logits.masked_fill(same, float("-inf"))
        logits = torch.cat([pos_logit, neg_logits], dim=-1) / tau
        # cross-entropy with target class 0
        loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # [B, S, M]
    return loss.mean(dim=(1, 2))


def nass_contrastive_loss(
    est_patches: torch.Tensor,
    true_patches: torch.Tensor,
    perm: torch.Tensor,
    sampler: Callable[[torch.Tensor], torch.Tensor],
    n_spks: int,
    tau: float = 0.07,
    direction: str = "s2n",
    mask_same_position: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Patch-wise contrastive loss of NASS (equation 6), vectorised over batch, speakers and patches.

    Arguments
    ---------
    est_patches : torch.Tensor
        ``[B, n_spks + 1, M, *patch_shape]``: raw patches of the masked
        encoder maps ``h_k = m_k * h_x`` of all outputs, in output order,
        the noise-speaker included (it is an ordinary output under PIT), as
        returned by :meth:`modules.models.PatchSampler.extract`.
    true_patches : torch.Tensor
        ``[B, n_spks + 1, M, *patch_shape]``: the same positions of the
        encoded clean sources, in target order (speakers first, the noise
        last). Always treated as a constant.
    perm : torch.Tensor
        ``[B, n_spks + 1]`` long, from :func:`pit_si_snr_loss` over the
        ``n_spks + 1`` targets: ``est_patches[b, perm[b, j]]`` is the
        output matched to target ``j`` (the :func:`apply_perm` contract),
        for every item ``b``.
    sampler : callable
        Shared projection ``[..., *patch_shape] -> [..., Q]`` returning
        L2-normalised embeddings, e.g. :class:`modules.models.PatchSampler`.
    n_spks : int
        Number of speakers ``C``.
    tau : float
        Temperature (0.07 in NASS).
    direction : str
        ``"s2n"`` (the paper's default, S→N): for each speaker ``t``, the
        query is the estimate matched to ``t``, the positive the reference
        of ``t`` at the same positions and the negatives the noise estimate
        at the ``M`` positions. ``"n2s"`` (N→S): the query is the noise
        estimate, the positive the true noise and the negatives the
        estimate of speaker ``t``, one term per speaker. ``"both"``: the
        sum of the two.
    mask_same_position : bool
        Exclude, for query ``i``, the negative at its own position (as the
        authors' code); see :func:`patch_nce_loss`.
    reduction : str
        ``"mean"`` (default): the mean over batch items, a scalar;
        ``"none"``: the per-item losses ``[B]``.

    Returns
    -------
    torch.Tensor
        The loss (float32, or float64 for float64 embeddings), not yet
        weighted by lambda: the caller adds ``lambda * loss`` to the
        SI-SNR loss (equation 8). Per item it is the mean over the ``C``
        speakers of the PatchNCE cross-entropy averaged over the ``M``
        patches; ``"both"`` adds the two directions.

    Raises
    ------
    ValueError
        On inconsistent shapes, an unknown ``direction`` or ``reduction``,
        ``n_spks < 1`` or a non-positive ``tau``.

    Notes
    -----
    The module docstring lists the departures from the paper and the
    authors' code. Gradients reach ``est_patches`` only through the query
    branch (``"s2n"``: the speakers' outputs; ``"n2s"``: the noise output;
    ``"both"``: all outputs) and the sampler's parameters only through the
    query embeddings: the positive and negative embeddings are computed
    without gradient, the same as detaching them after the projection as
    the authors' code does. Everything stays on the device: no host
    synchronisation.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> from modules.models import PatchSampler
    >>> _ = torch.manual_seed(0)
    >>> enc, sampler = Encoder(kernel_size=16, out_channels=16), PatchSampler(features=32)
    >>> sources = torch.randn(2, 800, 3)  # [B, T, 2 speakers + noise]
    >>> mix_w = enc(sources.sum(-1))  # [B, N, L]
    >>> masks = torch.rand(3, *mix_w.shape, requires_grad=True)  # [S, B, N, L], output order
    >>> est, true = sampler.extract(mix_w, masks, enc, sources, n_patches=20)
    >>> perm = torch.tensor([[1, 0, 2], [2, 1, 0]])  # output perm[b, j] matches target j
    >>> loss = nass_contrastive_loss(est, true, perm, sampler, n_spks=2)
    >>> loss.shape, loss.dtype
    (torch.Size([]), torch.float32)
    >>> loss.backward()
    >>> noise_out = perm[:, 2]  # outputs matched to the noise get no gradient in S→N
    >>> bool((masks.grad[noise_out, torch.arange(2)] == 0).all())
    True
    """
    if est_patches.ndim < 3 or true_patches.shape != est_patches.shape:
        raise ValueError(
            "expected est_patches and true_patches of the same shape [batch, n_spks + 1, M, *patch_shape], got "
            f"{tuple(est_patches.shape)} and {tuple(true_patches.shape)}"
        )
    if n_spks < 1:
        raise ValueError(f"n_spks must be at least 1, got {n_spks}")
    batch, n_src, n_patches = est_patches.shape[:3]
    if n_src != n_spks + 1 or n_patches < 1:
        raise ValueError(
            f"expected patches of shape [batch, n_spks + 1 = {n_spks + 1}, M >= 1, ...], got {tuple(est_patches.shape)}"
        )
    bad_dtype = perm.dtype.is_floating_point or perm.dtype.is_complex or perm.dtype == torch.bool
    if bad_dtype or tuple(perm.shape) != (batch, n_src):
        raise ValueError(
            f"expected perm as an integer tensor of shape {(batch, n_src)}, got {perm.dtype} {tuple(perm.shape)}"
        )
    if direction not in NASS_DIRECTIONS:
        raise ValueError(f"direction must be one of {NASS_DIRECTIONS}, got {direction!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    device = est_patches.device
    perm = perm.to(device=device, dtype=torch.long)

    # Outputs reordered to the targets (speakers, then noise): est[b, j] = est_patches[b, perm[b, j]].
    est = est_patches[torch.arange(batch, device=device)[:, None], perm]
    # Reference embeddings (no gradient), only of the sources a direction compares with.
    first = n_spks if direction == "n2s" else 0
    last = n_spks if direction == "s2n" else n_src
    with torch.no_grad():
        true_emb = sampler(true_patches[:, first:last].detach())  # [B, last - first, M, Q]
    true_spk, true_noise = true_emb[:, : n_spks - first], true_emb[:, n_spks - first :]

    # Only the query branch is embedded with gradient.
    if direction == "both":
        est_emb = sampler(est)
        spk_query, noise_query = est_emb[:, :n_spks], est_emb[:, n_spks:]
        spk_keys, noise_keys = spk_query.detach(), noise_query.detach()
    elif direction == "s2n":
        spk_query = sampler(est[:, :n_spks])
        with torch.no_grad():
            noise_keys = sampler(est[:, n_spks:].detach())
    else:
        noise_query = sampler(est[:, n_spks:])
        with torch.no_grad():
            spk_keys = sampler(est[:, :n_spks].detach())

    kwargs = {"tau": tau, "mask_same_position": mask_same_position}
    terms = []
    if direction in ("s2n", "both"):
        terms.append(patch_nce_loss(spk_query, true_spk, noise_keys.expand_as(spk_query), **kwargs))
    if direction in ("n2s", "both"):
        terms.append(
            patch_nce_loss(noise_query.expand_as(spk_keys), true_noise.expand_as(spk_keys), spk_keys, **kwargs)
        )
    loss = terms[0] if len(terms) == 1 else terms[0] + terms[1]  # [B]
    return loss.mean() if reduction == "mean" else loss
