"""SUPERB's speech-separation downstream: a Bi-LSTM predicting phase-sensitive masks on the STFT (DIP, Table VI).

The DIP paper's Table VI ("SUPERB benchmark", LM2Mix -> Vox2Mix) trains SUPERB's
separation downstream on each frozen frontend: "the Bi-LSTM separator predicts
the PSM of input mixture to reconstruct the target reference speech". The
separation task of SUPERB is s3prl's ``downstream/separation_stft`` recipe
(its ``configs/cfg.yaml``, ``model.py``, ``loss.py``, ``expert.py``). This
module is our own implementation of that downstream, read from it:

* **Features**: the frozen frontend's hidden states, mixed by learned
  softmax weights (zeros at the start: a uniform mix), as s3prl's featurizer
  does by default (no layer normalisation of the states); a single state is
  used as it is. They are padded with zeros or trimmed at the end to the STFT's
  number of frames (s3prl's ``match_length``).
* **STFT**: ``n_fft`` 512, Hann window of 512, ``center=True``, hop equal to
  the frontend's frame stride (s3prl: ``hop_length = upstream_rate``, 320
  samples for the 16 kHz BASE models and the DIP frontend).
* **Model**: a 3-layer bidirectional LSTM, 896 units per direction, dropout
  0.5 (between LSTM layers and on its output), then one linear layer per
  speaker to the 257 frequency bins with a ReLU: an unbounded non-negative
  mask per speaker (s3prl's ``SepRNN``).
* **Separation**: each mask multiplies the mixture's complex STFT; the
  inverse STFT (same settings, cut to the mixture's length) is the estimate.
* **Loss** (:func:`psm_mse_pit_loss`): utterance-level PIT over the MSE
  between ``mask * |X|`` and the phase-sensitive target
  ``|S| max(0, cos(angle X - angle S))`` (s3prl's ``mask_type: NPSM``, the
  non-negative PSM of Kolbaek et al.), summed over bins and frames, divided by
  the item's frames and the number of speakers.

The "STFT" row of Table VI (no pretrained frontend) is ``frontend_dim=None``:
the Bi-LSTM reads the per-utterance mean/variance-normalised log magnitude of
the mixture's own STFT (hop 160, 10 ms). Departure: s3prl's spectrogram
baseline is a separate 201-bin spectrogram (25 ms window, 10 ms hop, log,
CMVN) with the mask STFT at the same 10 ms hop; here the features are the
257-bin log magnitude of the mask STFT itself, normalised per utterance.

Departures from s3prl beyond that: padded items of a batch are one padded
STFT (s3prl: each utterance on its own); the loss leaves out frames past each
item's ``1 + length // hop`` frames, which s3prl's zero-padded spectrograms do
implicitly. s3prl's test-time ``postprocess`` (zeroing a spurious tail of the
estimate) is not applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modules.losses.matching import best_permutation, matched_scores
from modules.models.dip import WAV2VEC2_CONV_LAYERS, conv_geometry, select_layers
from modules.models.separator import fit_length

__all__ = ["BiLSTMPSMSeparator", "psm_mse_pit_loss", "psm_targets", "stft_frames"]


def stft_frames(lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames of a centred STFT of ``lengths`` samples: ``1 + length // hop``."""
    return 1 + torch.div(lengths, hop_length, rounding_mode="floor")


def psm_targets(mix_spec: torch.Tensor, source_specs: torch.Tensor, mask_type: str = "npsm") -> torch.Tensor:
    """Magnitude targets ``[B, C, F, K]``: complex ``mix_spec`` ``[B, F, K]``, ``source_specs`` ``[B, C, F, K]``.

    ``am``: ``|S|``; ``psm``: ``|S| cos(angle X - angle S)``; ``npsm`` (s3prl's
    default): the PSM with negative values set to 0.

    Example
    -------
    >>> x = torch.tensor([[[1 + 0j]]]); s = torch.tensor([[[[-2 + 0j]]]])
    >>> psm_targets(x, s, "psm").item(), psm_targets(x, s, "npsm").item(), psm_targets(x, s, "am").item()
    (-2.0, 0.0, 2.0)
    """
    magnitude = source_specs.abs()
    if mask_type == "am":
        return magnitude
    cosine = torch.cos(torch.angle(mix_spec).unsqueeze(1) - torch.angle(source_specs))
    if mask_type == "psm":
        return magnitude * cosine
    if mask_type == "npsm":
        return magnitude * F.relu(cosine)
    raise ValueError(f"mask_type must be am, psm or npsm, got {mask_type!r}")


def psm_mse_pit_loss(
    masks: torch.Tensor,
    mix_spec: torch.Tensor,
    source_specs: torch.Tensor,
    frames: torch.Tensor | None = None,
    mask_type: str = "npsm",
    source_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterance-level PIT mean squared error of masked magnitudes against phase-sensitive targets.

    Arguments
    ---------
    masks : torch.Tensor
        ``[n_est, B, F, K]`` non-negative masks (``F`` frames, ``K`` bins).
    mix_spec : torch.Tensor
        ``[B, F, K]`` complex STFT of the mixtures.
    source_specs : torch.Tensor
        ``[B, C, F, K]`` complex STFT of the references (``C <= n_est``).
    frames : torch.Tensor, optional
        ``[B]`` valid frames per item (all ``F`` when not given).
    mask_type : str
        ``am``, ``psm`` or ``npsm`` (:func:`psm_targets`).
    source_mask : torch.Tensor, optional
        ``[B, C]`` bool, ``False`` for padded references: left out of the
        matching and of the mean.

    Returns
    -------
    loss : torch.Tensor
        ``[B]``: ``min over assignments of sum_s sum_{f, k} (m_s |X| - T_s)^2``
        divided by the item's frames and its number of references (s3prl's
        per-utterance value; its batch loss is the mean over items).
    perm : torch.Tensor
        ``[B, C]``: ``masks[perm[b, j], b]`` is matched with reference ``j``.

    Example
    -------
    >>> spec = torch.polar(torch.rand(1, 2, 3, 4) + 0.5, torch.zeros(1, 2, 3, 4))  # same phases: PSM = |S|
    >>> mix = spec.sum(1); masks = (spec.abs() / mix.abs()).permute(1, 0, 2, 3)
    >>> loss, perm = psm_mse_pit_loss(masks.flip(0), mix, spec)
    >>> float(loss) < 1e-10, perm.tolist()
    (True, [[1, 0]])
    """
    if masks.dim() != 4 or mix_spec.dim() != 3 or source_specs.dim() != 4:
        raise ValueError(
            f"expected masks [n, B, F, K], mix_spec [B, F, K], source_specs [B, C, F, K], got "
            f"{tuple(masks.shape)}, {tuple(mix_spec.shape)}, {tuple(source_specs.shape)}"
        )
    if masks.shape[1:] != mix_spec.shape or source_specs.shape[2:] != mix_spec.shape[1:]:
        raise ValueError(f"shapes differ: {tuple(masks.shape)}, {tuple(mix_spec.shape)}, {tuple(source_specs.shape)}")
    if source_specs.shape[1] > masks.shape[0]:
        raise ValueError(f"{source_specs.shape[1]} references for {masks.shape[0]} masks")
    batch, n_frames = mix_spec.shape[0], mix_spec.shape[1]
    if frames is None:
        frames = torch.full((batch,), n_frames, device=mix_spec.device)
    frames = frames.to(mix_spec.device)
    valid = (torch.arange(n_frames, device=mix_spec.device)[None, :] < frames[:, None]).to(masks.dtype)  # [B, F]
    targets = psm_targets(mix_spec, source_specs, mask_type).to(masks.dtype)  # [B, C, F, K]
    estimates = (masks * mix_spec.abs().to(masks.dtype)).transpose(0, 1)  # [B, n, F, K]
    error = (estimates.unsqueeze(2) - targets.unsqueeze(1)).pow(2).sum(-1)  # [B, n, C, F]
    pairwise = (error * valid[:, None, None]).sum(-1) / frames.clamp(min=1).to(masks.dtype)[:, None, None]
    perm = best_permutation(-pairwise, source_mask)
    matched = matched_scores(pairwise, perm)  # [B, C]
    if source_mask is None:
        return matched.mean(-1), perm
    keep = source_mask.to(device=matched.device, dtype=torch.bool)
    return torch.where(keep, matched, torch.zeros_like(matched)).sum(-1) / keep.sum(-1).clamp(min=1), perm


class BiLSTMPSMSeparator(nn.Module):
    """SUPERB's separation downstream (s3prl ``SepRNN`` + STFT masking) behind the separator call.

    ``forward(mix, cues=None) -> (estimates [B, T, num_spks], features)``, the
    signature :class:`modules.brain.SeparationBrain` expects; ``cues`` are the
    frozen frontend's hidden states ``[S, B, F', D]`` that
    :class:`modules.dip.DIPBrain` passes (absent for the STFT row). Its
    :meth:`pit_loss` is the training loss the Brain uses instead of SI-SNR
    (:func:`psm_mse_pit_loss`); see the module docstring for every setting.

    Arguments
    ---------
    num_spks : int
        Masks predicted (2).
    frontend_dim : int, optional
        Width of the frontend's hidden states; ``None``: no frontend, the
        normalised log magnitude of the STFT is the input.
    layers, num_layers :
        Which hidden states the Brain passes (``frontend_layers``) and the
        frontend's transformer depth (:func:`modules.models.dip.select_layers`).
    conv_layers : sequence of (channels, kernel, stride)
        The frontend's convolutions: the STFT hop is their total stride.
    hop_length : int, optional
        STFT hop; required without a frontend (160), else the frontend's stride.
    n_fft, win_length : int
        STFT size and Hann window length (512, 512).
    hidden_size, rnn_layers, dropout :
        The Bi-LSTM (896 per direction, 3 layers, 0.5).
    mask_type : str
        Loss target: ``npsm`` (s3prl), ``psm`` or ``am``.

    Example
    -------
    >>> sep = BiLSTMPSMSeparator(frontend_dim=8, layers="all", num_layers=2, conv_layers=[(4, 10, 5), (4, 8, 4)],
    ...                          n_fft=64, win_length=64, hidden_size=6)
    >>> est, feats = sep(torch.randn(2, 800), cues=torch.randn(3, 2, 39, 8))
    >>> est.shape, feats["masks"].shape, sep.hop_length
    (torch.Size([2, 800, 2]), torch.Size([2, 2, 41, 33]), 20)
    """

    def __init__(
        self,
        num_spks=2,
        frontend_dim=None,
        layers="all",
        num_layers=12,
        conv_layers=WAV2VEC2_CONV_LAYERS,
        hop_length=None,
        n_fft=512,
        win_length=512,
        hidden_size=896,
        rnn_layers=3,
        dropout=0.5,
        mask_type="npsm",
    ):
        super().__init__()
        if mask_type not in ("am", "psm", "npsm"):
            raise ValueError(f"mask_type must be am, psm or npsm, got {mask_type!r}")
        self.has_frontend = frontend_dim is not None
        if hop_length is None:
            if not self.has_frontend:
                raise ValueError("without a frontend the STFT needs a hop_length (SUPERB's spectrogram: 160)")
            hop_length = conv_geometry(conv_layers)[0]
        self.hop_length, self.n_fft, self.win_length = int(hop_length), int(n_fft), int(win_length)
        self.num_spks, self.mask_type = int(num_spks), mask_type
        self.num_bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        if self.has_frontend:
            self.num_states = len(select_layers(layers, num_layers))
            self.layer_weights = nn.Parameter(torch.zeros(self.num_states)) if self.num_states > 1 else None
            input_dim = int(frontend_dim)
        else:
            self.num_states, self.layer_weights, input_dim = 0, None, self.num_bins
        self.rnn = nn.LSTM(input_dim, hidden_size, rnn_layers, batch_first=True, dropout=dropout, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(2 * hidden_size, self.num_bins) for _ in range(self.num_spks))

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[..., T] -> [..., F, K]`` (frames, bins), in float32."""
        shape = wav.shape[:-1]
        spec = torch.stft(wav.reshape(-1, wav.shape[-1]).float(), self.n_fft, self.hop_length, self.win_length,
                          window=self.window, center=True, return_complex=True)  # fmt: skip
        return spec.transpose(1, 2).reshape(*shape, spec.shape[2], spec.shape[1])

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`stft`: ``[..., F, K] -> [..., length]``."""
        shape = spec.shape[:-2]
        flat = spec.reshape(-1, *spec.shape[-2:]).transpose(1, 2)
        wav = torch.istft(flat, self.n_fft, self.hop_length, self.win_length, window=self.window, center=True,
                          length=length)  # fmt: skip
        return wav.reshape(*shape, length)

    def features(self, mix_spec: torch.Tensor, cues: torch.Tensor | None) -> torch.Tensor:
        """The Bi-LSTM's input ``[B, F, D]`` on the STFT's frames."""
        if not self.has_frontend:
            if cues is not None:
                raise TypeError("this Bi-LSTM separator has no frontend (frontend_dim: null) but was given cues")
            logmag = torch.log(mix_spec.abs() + 1e-8)
            mean, std = logmag.mean(1, keepdim=True), logmag.std(1, keepdim=True)
            return (logmag - mean) / (std + 1e-5)
        if cues is None:
            raise ValueError("BiLSTMPSMSeparator with a frontend needs its cues (conditioning input `cues`)")
        if cues.dim() != 4 or cues.shape[0] != self.num_states:
            raise ValueError(f"expected cues [{self.num_states}, B, F, D], got {tuple(cues.shape)} (frontend_layers?)")
        if self.layer_weights is not None:
            weights = torch.softmax(self.layer_weights.float(), 0)
            feats = torch.einsum("s,sbfd->bfd", weights, cues.float())
        else:
            feats = cues[0].float()
        n_frames = mix_spec.shape[1]
        if feats.shape[1] < n_frames:
            return F.pad(feats, (0, 0, 0, n_frames - feats.shape[1]))
        return feats[:, :n_frames]

    def forward(self, mix: torch.Tensor, cues: torch.Tensor | None = None):
        """Separates ``mix`` ``[B, T]``.

        Returns
        -------
        estimates : torch.Tensor
            ``[B, T, num_spks]``.
        features : dict
            ``masks`` ``[num_spks, B, F, K]`` and ``mix_spec`` (complex ``[B, F, K]``).
        """
        with torch.autocast(mix.device.type, enabled=False):
            mix_spec = self.stft(mix)
            hidden, _ = self.rnn(self.features(mix_spec, cues))
            hidden = self.dropout(hidden)
            masks = torch.stack([F.relu(head(hidden)) for head in self.heads])  # [n, B, F, K]
            estimates = self.istft(masks * mix_spec.unsqueeze(0), mix.shape[-1])  # [n, B, T]
        return fit_length(estimates.permute(1, 2, 0), mix.shape[-1]).to(mix.dtype), {
            "masks": masks,
            "mix_spec": mix_spec,
        }

    def pit_loss(self, features: dict, targets: torch.Tensor, source_mask=None, lengths=None):
        """:func:`psm_mse_pit_loss` of the forward's ``features`` against ``targets`` ``[B, T, C]``.

        ``lengths`` (samples per item) give each item's frames (``1 + length // hop``).
        """
        with torch.autocast(targets.device.type, enabled=False):
            source_specs = self.stft(targets.transpose(1, 2))  # [B, C, F, K]
            frames = None if lengths is None else stft_frames(lengths.to(targets.device), self.hop_length)
            return psm_mse_pit_loss(features["masks"], features["mix_spec"], source_specs, frames, self.mask_type,
                                    source_mask)  # fmt: skip
