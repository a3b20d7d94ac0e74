"""One typed batch for every separation recipe, built from manifest rows.

A dataset item is a dict with ``id``, ``mix_sig`` and any of ``s1_sig`` ...
``sK_sig`` (the clean sources), ``noise_sig``, ``enroll_sig``, ``scenario``
and further columns. :func:`collate` pads them into a
:class:`SeparationBatch`, whatever mix of items a batch holds: items with 1, 2
or 3 speakers, with or without noise, mixture-only items (real recordings,
unsupervised training data) and items with an enrollment utterance. What is
missing for an item is marked in a mask, never guessed.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import torch

__all__ = ["SeparationBatch", "collate", "source_keys"]

_SOURCE_KEY = re.compile(r"^s(\d+)_sig$")


def source_keys(item):
    """The ``s<k>_sig`` keys of an item, in source order.

    Example
    -------
    >>> source_keys({"mix_sig": 0, "s2_sig": 0, "s1_sig": 0, "noise_sig": 0})
    ['s1_sig', 's2_sig']
    """
    found = sorted((int(m.group(1)), k) for k in item if (m := _SOURCE_KEY.match(k)))
    keys = [k for _, k in found]
    if [i for i, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"source columns must be s1, s2, ... without gaps, got {keys}")
    return keys


def _pad_stack(signals, length):
    """``[len(signals), length]`` zero-padded stack of 1-D tensors."""
    out = torch.zeros(len(signals), length, dtype=signals[0].dtype)
    for i, s in enumerate(signals):
        out[i, : s.shape[0]] = s
    return out


@dataclass
class SeparationBatch:
    """A padded batch of separation examples.

    Attributes
    ----------
    ids : list of str
    mix : torch.Tensor
        ``[B, T]`` mixtures, zero-padded to the longest.
    lengths : torch.Tensor
        ``[B]`` long: valid samples of each mixture.
    sources : torch.Tensor or None
        ``[B, T, C]`` clean sources, ``C`` the largest number of sources of an
        item in the batch; ``None`` when no item has references.
    source_mask : torch.Tensor or None
        ``[B, C]`` bool, ``True`` for an item's real sources (``sources`` is
        zero where it is ``False``).
    noise : torch.Tensor or None
        ``[B, T]`` noise references (zeros for items without one); ``None``
        when no item has one.
    noise_mask : torch.Tensor or None
        ``[B]`` bool, ``True`` for items with a noise reference.
    enroll : torch.Tensor or None
        ``[B, T_e]`` enrollment utterances (target speaker extraction).
    enroll_lengths : torch.Tensor or None
        ``[B]`` long.
    supervised : torch.Tensor
        ``[B]`` bool: the item has at least one source reference.
    scenario : list of str
        Per-item scenario label (e.g. ``"2sp+n"``), ``""`` when unknown.
    extra : dict
        Further per-item values (lists), e.g. transcriptions.
    all_supervised : bool
        Every item has at least one source reference (known on the host, so
        testing it never synchronises with the device).

    Example
    -------
    >>> items = [
    ...     {"id": "a", "mix_sig": torch.ones(5), "s1_sig": torch.ones(5), "noise_sig": torch.zeros(5)},
    ...     {"id": "b", "mix_sig": torch.ones(3), "s1_sig": torch.ones(3), "s2_sig": torch.ones(3)},
    ...     {"id": "c", "mix_sig": torch.ones(4)},
    ... ]
    >>> batch = collate(items)
    >>> batch.mix.shape, batch.sources.shape, batch.lengths.tolist()
    (torch.Size([3, 5]), torch.Size([3, 5, 2]), [5, 3, 4])
    >>> batch.source_mask.tolist(), batch.noise_mask.tolist(), batch.supervised.tolist()
    ([[True, False], [True, True], [False, False]], [True, False, False], [True, True, False])
    >>> batch.n_sources.tolist()
    [1, 2, 0]
    """

    ids: list
    mix: torch.Tensor
    lengths: torch.Tensor
    sources: torch.Tensor | None = None
    source_mask: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    noise_mask: torch.Tensor | None = None
    enroll: torch.Tensor | None = None
    enroll_lengths: torch.Tensor | None = None
    supervised: torch.Tensor | None = None
    scenario: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    all_supervised: bool | None = None

    def __post_init__(self):
        if self.supervised is None:
            if self.source_mask is None:
                self.supervised = torch.zeros(len(self.ids), dtype=torch.bool)
            else:
                self.supervised = self.source_mask.any(dim=-1)
        if self.all_supervised is None:
            self.all_supervised = bool(self.supervised.all()) if len(self.ids) else False
        if not self.scenario:
            self.scenario = [""] * len(self.ids)

    def __len__(self):
        return len(self.ids)

    @property
    def batchsize(self):
        """Number of items (the name SpeechBrain's ``PaddedBatch`` uses)."""
        return len(self.ids)

    @property
    def id(self):
        """Item ids (the name SpeechBrain's ``PaddedBatch`` uses)."""
        return self.ids

    @property
    def n_sources(self):
        """``[B]`` long: number of real sources of each item (0 for mixture-only items)."""
        if self.source_mask is None:
            return torch.zeros(len(self.ids), dtype=torch.long, device=self.mix.device)
        return self.source_mask.sum(dim=-1)

    def _tensor_fields(self):
        return [f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), torch.Tensor)]

    def _map(self, fn):
        return dataclasses.replace(self, **{name: fn(getattr(self, name)) for name in self._tensor_fields()})

    def to(self, device, non_blocking=True):
        """A copy with every tensor on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        """A copy with every tensor in pinned memory (DataLoader ``pin_memory=True``)."""
        return self._map(lambda t: t.pin_memory())

    def replace(self, **changes):
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def item(self, index):
        """Item ``index`` as a batch of one, cut to its own length and sources."""
        n = int(self.lengths[index])
        changes = {"ids": [self.ids[index]], "scenario": [self.scenario[index]]}
        changes["extra"] = {k: [v[index]] for k, v in self.extra.items()}
        for name in self._tensor_fields():
            value = getattr(self, name)[index : index + 1]
            if name in ("mix", "noise", "sources"):
                value = value[:, :n]
            changes[name] = value
        if self.source_mask is not None:
            c = int(self.source_mask[index].sum())
            changes["sources"] = changes["sources"][..., :c] if c else None
            changes["source_mask"] = changes["source_mask"][:, :c] if c else None
        if self.enroll is not None:
            changes["enroll"] = changes["enroll"][:, : int(self.enroll_lengths[index])]
        changes["all_supervised"] = changes.get("sources", self.sources) is not None
        return dataclasses.replace(self, **changes)


def collate(items):
    """Pads dataset items into a :class:`SeparationBatch` (use as a DataLoader ``collate_fn``).

    Arguments
    ---------
    items : list of dict
        Items with ``id``, ``mix_sig`` and optionally ``s<k>_sig``,
        ``noise_sig``, ``enroll_sig``, ``scenario`` and other keys (kept in
        ``extra``; ``*_sig`` keys of other signals are padded into ``extra`` as
        ``(tensor [B, T], lengths [B])``).

    Returns
    -------
    SeparationBatch
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    ids = [str(it["id"]) for it in items]
    mixes = [torch.as_tensor(it["mix_sig"]) for it in items]
    lengths = torch.tensor([m.shape[0] for m in mixes], dtype=torch.long)
    length = int(lengths.max())
    batch = {"ids": ids, "mix": _pad_stack(mixes, length), "lengths": lengths}

    per_item_sources = [source_keys(it) for it in items]
    n_src = max(len(k) for k in per_item_sources)
    if n_src:
        sources = torch.zeros(len(items), length, n_src, dtype=batch["mix"].dtype)
        mask = torch.zeros(len(items), n_src, dtype=torch.bool)
        for b, (it, keys) in enumerate(zip(items, per_item_sources)):
            for j, key in enumerate(keys):
                sig = torch.as_tensor(it[key])
                sources[b, : sig.shape[0], j] = sig[:length]
                mask[b, j] = True
        batch.update(sources=sources, source_mask=mask)

    with_noise = [it.get("noise_sig") is not None for it in items]
    if any(with_noise):
        zeros = torch.zeros(0, dtype=batch["mix"].dtype)
        noises = [  # cut to the item's own mixture (a noise file may be longer, as in SpeechBrain's samples)
            torch.as_tensor(it["noise_sig"])[: m.shape[0]] if has else zeros
            for it, has, m in zip(items, with_noise, mixes)
        ]
        batch.update(noise=_pad_stack(noises, length), noise_mask=torch.tensor(with_noise))

    if any(it.get("enroll_sig") is not None for it in items):
        if not all(it.get("enroll_sig") is not None for it in items):
            raise ValueError("either every item of a batch has an enrollment utterance or none has")
        enrolls = [torch.as_tensor(it["enroll_sig"]) for it in items]
        enroll_lengths = torch.tensor([e.shape[0] for e in enrolls], dtype=torch.long)
        batch.update(enroll=_pad_stack(enrolls, int(enroll_lengths.max())), enroll_lengths=enroll_lengths)

    batch["scenario"] = [str(it.get("scenario", "") or "") for it in items]
    known = {"id", "mix_sig", "noise_sig", "enroll_sig", "scenario", *per_item_sources[0]}
    extra_keys = sorted({k for it in items for k in it} - known - {k for keys in per_item_sources for k in keys})
    extra = {}
    for key in extra_keys:
        values = [it.get(key) for it in items]
        if key.endswith("_sig") and all(isinstance(v, torch.Tensor) for v in values):
            lens = torch.tensor([v.shape[0] for v in values], dtype=torch.long)
            values = (_pad_stack(values, int(lens.max())), lens)
        extra[key] = values
    batch["extra"] = extra
    batch["all_supervised"] = bool(n_src) and all(len(k) > 0 for k in per_item_sources)
    return SeparationBatch(**batch)
