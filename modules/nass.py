"""NASS: noise-aware speech separation (noise as an extra speaker + patch-wise contrastive learning).

Paper: ``papers/nass_noise_aware_separation.txt`` (Figure 1, equations 3-8).
``NASSBrain`` extends :class:`modules.brain.SeparationBrain` through its hooks:

* noise-speaker (``noise_speaker: True``): the masker predicts ``C + 1`` masks
  and the noise is one more target. With ``noise_slot: pit`` (the paper and the
  authors' code) PIT runs over all ``C + 1`` outputs, the noise being an
  ordinary source; with ``noise_slot: fixed`` PIT runs over the ``C`` speakers
  only and the last output is always the noise, so a deployed model knows which
  output is noise. The SI-SNR loss averages over the ``G = C + 1`` sources
  (equation 7).
* patch-wise contrastive loss (equation 6, ``pcl_direction`` ``s2n``, ``n2s``,
  ``both`` or ``none``; ``pcl_weight`` = lambda, ``pcl_patches`` = M,
  ``pcl_tau`` = tau) on the masked encoder features ``h_k = m_k * h_x``, with
  the ground truth encoded by the same encoder (detached), reusing each batch
  item's PIT permutation.
* validation and test metrics count the ``C`` speakers only; the estimated
  noise is scored separately (``noise_si-snr`` columns), saved with the audio
  and drawn in the spectrogram figures.

Inference without references (:meth:`NASSBrain.separate_speakers`): with a
fixed slot the noise is the last output; with PIT slots it is picked by
:func:`pick_noise_output` (the output whose short-time energy varies least).
"""

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import Encoder as DualPathEncoder

from modules.brain import SeparationBrain
from modules.losses import nass_contrastive_loss, pairwise_si_snr, pit_si_snr_loss, sample_patch_positions
from modules.metrics import si_snr

NOISE_SLOTS = ("pit", "fixed")
PCL_DIRECTIONS = ("s2n", "n2s", "both", "none")


def frame_energy_db(signals, frame_length):
    """Short-time energy in dB of non-overlapping frames.

    Arguments
    ---------
    signals : torch.Tensor
        ``[batch, time, n_src]``.
    frame_length : int
        Samples per frame.

    Returns
    -------
    torch.Tensor
        ``[batch, n_frames, n_src]``.

    Example
    -------
    >>> frame_energy_db(torch.ones(1, 100, 2), 10).shape
    torch.Size([1, 10, 2])
    """
    frames = signals.float().unfold(1, frame_length, frame_length)  # [B, F, n, frame]
    return 10 * torch.log10(frames.square().mean(-1) + 1e-10)


def encode_frames(encoder, signals, positions):
    """Encoder output of ``signals`` at the given frames only.

    For SpeechBrain's dual-path ``Encoder`` (an unpadded strided ``Conv1d`` and a
    ReLU), frame ``l`` depends on samples ``[l * stride, l * stride + kernel)``
    only, so the ``M`` sampled frames are one matrix product of the conv weights
    with ``M`` windows instead of a pass over the whole signals. Other encoders
    are run in full and the frames gathered.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``[batch, time]`` to ``[batch, N, L]``.
    signals : torch.Tensor
        ``[batch, n_src, time]``.
    positions : torch.Tensor
        ``[batch, M]`` frame indices.

    Returns
    -------
    torch.Tensor
        ``[batch, n_src, N, M]``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> enc = Encoder(kernel_size=16, out_channels=8)
    >>> x, pos = torch.randn(2, 3, 800), torch.tensor([[0, 5, 98], [7, 7, 1]])
    >>> full = enc(x.flatten(0, 1)).reshape(2, 3, 8, -1)
    >>> expected = full.gather(-1, pos[:, None, None, :].expand(-1, 3, 8, -1))
    >>> torch.allclose(encode_frames(enc, x, pos), expected, atol=1e-6)
    True
    """
    batch, n_src, _ = signals.shape
    if isinstance(encoder, DualPathEncoder) and encoder.conv1d.in_channels == 1:
        conv = encoder.conv1d  # Conv1d(1, N, kernel, stride=kernel // 2, no padding) then ReLU
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        windows = signals.unfold(-1, kernel, stride)  # [B, n_src, L, kernel]
        picked = windows.gather(2, positions[:, None, :, None].expand(-1, n_src, -1, kernel))
        frames = torch.relu(F.linear(picked, conv.weight[:, 0], conv.bias))  # [B, n_src, M, N]
        return frames.transpose(2, 3)
    feats = encoder(signals.flatten(0, 1))
    feats = feats.reshape(batch, n_src, *feats.shape[1:])
    return feats.gather(-1, positions[:, None, None, :].expand(-1, n_src, feats.shape[2], -1))


def pick_noise_output(estimates, sample_rate, frame_ms=20.0, top_db=60.0):
    """Index of the output that is the noise, for models whose noise slot is not fixed.

    The rule: speech switches on and off with syllables and pauses, so its
    short-time energy swings by tens of dB; background noise is steadier. The
    noise is the output whose frame energy (20 ms frames, in dB, floored
    ``top_db`` below the item's loudest frame) has the smallest standard
    deviation. ``tests/test_nass.py`` measures how often the rule is right.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[batch, time, n_outputs]``.
    sample_rate : int
    frame_ms : float
        Frame length in milliseconds.
    top_db : float
        Dynamic range kept below the loudest frame.

    Returns
    -------
    torch.Tensor
        ``[batch]`` long.

    Example
    -------
    >>> t = torch.arange(8000) / 8000
    >>> speech = torch.sin(2 * torch.pi * 200 * t) * (torch.sin(2 * torch.pi * 4 * t) > 0)
    >>> noise = 0.3 * torch.randn(8000)
    >>> pick_noise_output(torch.stack([speech, noise, speech.roll(1000)], -1)[None], 8000)
    tensor([1])
    """
    frame = max(1, int(sample_rate * frame_ms / 1000))
    energy = frame_energy_db(estimates, frame)
    floor = energy.amax(dim=(1, 2), keepdim=True) - top_db
    return energy.clamp(min=floor).std(dim=1).argmin(dim=-1)


class NASSBrain(SeparationBrain):
    """Noise-aware separation: see the module docstring.

    Extra hyperparameters: ``noise_speaker`` (bool), ``noise_slot`` (``pit`` or
    ``fixed``), ``pcl_direction``, ``pcl_weight``, ``pcl_patches``, ``pcl_tau``;
    extra module ``patch_sampler`` (a :class:`modules.models.PatchSampler`) when
    the contrastive loss is on.
    """

    def on_fit_start(self):
        """Checks the NASS switches before training starts."""
        self.check_nass_hparams()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Checks the NASS switches before testing."""
        self.check_nass_hparams()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)

    def check_nass_hparams(self):
        """Raises a clear ``ValueError`` for inconsistent NASS switches."""
        hp = self.hparams
        if hp.noise_slot not in NOISE_SLOTS:
            raise ValueError(f"noise_slot must be one of {NOISE_SLOTS}, not {hp.noise_slot!r}")
        if hp.pcl_direction not in PCL_DIRECTIONS:
            raise ValueError(f"pcl_direction must be one of {PCL_DIRECTIONS}, not {hp.pcl_direction!r}")
        if hp.pcl_direction != "none" and not hp.noise_speaker:
            raise ValueError("the patch-wise contrastive loss needs the noise-speaker (noise_speaker: True)")
        if hp.pcl_direction != "none" and "patch_sampler" not in self.modules:
            raise ValueError("the patch-wise contrastive loss needs a `patch_sampler` in `modules`")

    @property
    def n_outputs(self):
        """Number of masks the masker must predict."""
        return self.hparams.num_spks + int(self.hparams.noise_speaker)

    def separate(self, mix):
        """As the base brain, with a check of the number of outputs."""
        estimates, extras = super().separate(mix)
        if estimates.shape[-1] != self.n_outputs:
            raise ValueError(
                f"the masker predicts {estimates.shape[-1]} masks but NASS with num_spks={self.hparams.num_spks} "
                f"and noise_speaker={self.hparams.noise_speaker} needs {self.n_outputs} (set num_masks in the yaml)"
            )
        return estimates, extras

    def training_targets(self, outputs):
        """Speakers, then the noise as one more source when the noise-speaker is on."""
        if not self.hparams.noise_speaker:
            return outputs["targets"]
        if outputs["noise"] is None:
            raise ValueError("NASS's noise-speaker needs the noise signal: prepare the data with task: sep_noisy")
        return torch.cat([outputs["targets"], outputs["noise"].unsqueeze(-1)], dim=-1)

    def pit_loss(self, outputs):
        """uPIT over all outputs, or over the speakers only with a fixed noise slot."""
        if not (self.hparams.noise_speaker and self.hparams.noise_slot == "fixed"):
            return super().pit_loss(outputs)
        n_spks = self.hparams.num_spks
        estimates, targets = outputs["estimates"], self.training_targets(outputs)
        spk_loss, spk_perm = pit_si_snr_loss(estimates[..., :n_spks], targets[..., :n_spks])
        noise_loss = -pairwise_si_snr(estimates[..., n_spks:], targets[..., n_spks:])[:, 0, 0]
        loss = (n_spks * spk_loss + noise_loss) / (n_spks + 1)
        noise_index = spk_perm.new_full((spk_perm.shape[0], 1), n_spks)
        return loss, torch.cat([spk_perm, noise_index], dim=-1)

    def auxiliary_loss(self, outputs, batch):
        """lambda times the patch-wise contrastive loss (equation 8)."""
        hp = self.hparams
        if hp.pcl_direction == "none":
            return super().auxiliary_loss(outputs, batch)
        masks, mix_w = outputs["masks"], outputs["mix_w"]  # [C+1, B, N, L], [B, N, L]
        batch, n_feats, n_frames = mix_w.shape
        # Draw the M frames first and build h_k = m_k * h_x only there: [B, C+1, N, M]
        # instead of the whole feature maps (same loss, a fraction of the cost).
        positions = sample_patch_positions(n_frames, hp.pcl_patches, batch, mix_w.device)
        index = positions[:, None, :].expand(-1, n_feats, -1)  # [B, N, M]
        masks_at = masks.gather(-1, index.expand(masks.shape[0], -1, -1, -1))
        est_feats = (masks_at * mix_w.gather(-1, index).unsqueeze(0)).transpose(0, 1)
        sources = self.training_targets(outputs)  # [B, T, C+1]
        with torch.no_grad():  # the ground truth through the same encoder, detached
            true_feats = encode_frames(self.modules.encoder, sources.transpose(1, 2), positions)  # [B, C+1, N, M]
        every_frame = torch.arange(positions.shape[1], device=mix_w.device).expand(batch, -1)
        pcl = nass_contrastive_loss(
            est_feats,
            true_feats,
            outputs["perm"],
            self.modules.patch_sampler,
            n_spks=hp.num_spks,
            tau=hp.pcl_tau,
            direction=hp.pcl_direction,
            positions=every_frame,
        )
        return hp.pcl_weight * pcl

    def noise_estimate(self, outputs):
        """The output matched to the noise ``[B, T]`` (None without the noise-speaker)."""
        if not self.hparams.noise_speaker:
            return None
        index = outputs["perm"][:, self.hparams.num_spks]
        return outputs["estimates"].gather(-1, index[:, None, None].expand(-1, outputs["estimates"].shape[1], 1))[
            ..., 0
        ]

    @torch.no_grad()
    def test_metrics(self, outputs, items=slice(None), length=None):
        """Speaker metrics, plus the noise estimate's SI-SNR(i) and, with PIT slots, the noise rule."""
        metrics = super().test_metrics(outputs, items, length)
        if not self.hparams.noise_speaker or outputs["noise"] is None:
            return metrics
        noise = outputs["noise"][items, :length].float().unsqueeze(-1)
        noise_hat = self.noise_estimate(outputs)[items, :length].float().unsqueeze(-1)
        mix = outputs["mix"][items, :length].float().unsqueeze(-1)
        metrics["noise_si-snr"] = si_snr(noise_hat, noise)[:, 0]
        metrics["noise_si-snr_i"] = metrics["noise_si-snr"] - si_snr(mix, noise)[:, 0]
        if self.hparams.noise_slot == "pit":
            picked = pick_noise_output(outputs["estimates"][items, :length], self.hparams.sample_rate)
            truth = outputs["perm"][items, self.hparams.num_spks]
            metrics["noise_rule_correct"] = (picked == truth).double()
        return metrics

    def extra_test_signals(self, outputs, index):
        """The estimated and the true noise, saved beside the speakers."""
        if not self.hparams.noise_speaker:
            return {}
        signals = {"noise_hat": self.noise_estimate(outputs)[index].float().cpu()}
        if outputs["noise"] is not None:
            signals["noise"] = outputs["noise"][index].float().cpu()
        return signals

    @torch.no_grad()
    def separate_speakers(self, mix):
        """Separates mixtures without references: ``(speakers [B, T, C], noise [B, T] or None)``."""
        estimates, _ = self.separate(mix)
        n_spks = self.hparams.num_spks
        if not self.hparams.noise_speaker:
            return estimates, None
        if self.hparams.noise_slot == "fixed":
            return estimates[..., :n_spks], estimates[..., n_spks]
        noise_index = pick_noise_output(estimates, self.hparams.sample_rate)
        order = torch.arange(n_spks + 1, device=estimates.device).expand(estimates.shape[0], -1)
        keep = order != noise_index[:, None]
        speakers_index = order[keep].view(-1, n_spks)
        speakers = estimates.gather(-1, speakers_index[:, None, :].expand(-1, estimates.shape[1], -1))
        return speakers, estimates.gather(-1, noise_index[:, None, None].expand(-1, estimates.shape[1], 1))[..., 0]
