"""NASS: noise-aware speech separation (noise as an extra speaker + patch-wise contrastive learning).

Paper: Zhang et al., "Noise-Aware Speech Separation with Contrastive Learning",
ICASSP 2024, arXiv:2305.10761 (Figure 1, equations 3-8); authors' code:
github.com/TzuchengChang/NASS. ``NASSBrain`` extends :class:`modules.brain.SeparationBrain` through its hooks:

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
  item's PIT permutation. A patch is one time-frequency bin after a small
  convolutional front end, as in the paper (P = 1) and the authors' code
  (``pcl_patch: bin``), or a whole frame (``pcl_patch: frame``); see
  :mod:`modules.losses.patch` and :class:`modules.models.PatchSampler`. As in
  the authors' code, lambda * PCL is added to each item's loss before the
  -30 dB threshold (``pcl_before_threshold: True``; ``False`` adds the batch
  mean after it).
* validation and test metrics count the ``C`` speakers only; the estimated
  noise is scored separately (``noise_si-snr`` columns), saved with the audio
  and drawn in the spectrogram figures.

Inference without references (:meth:`NASSBrain.split_outputs`): with a
fixed slot the noise is the last output; with PIT slots it is picked by
:func:`pick_noise_output` (the output whose short-time energy varies least).
"""

import torch

from modules.brain import AuxiliaryLoss, SeparationBrain
from modules.losses import nass_contrastive_loss, pairwise_si_snr, pit_si_snr_loss
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
    ``fixed``), ``pcl_direction``, ``pcl_weight``, ``pcl_patches``, ``pcl_tau``,
    ``pcl_mask_same_position``, ``pcl_before_threshold``; extra module
    ``patch_sampler`` (a :class:`modules.models.PatchSampler`, whose ``patch``
    kind, ``bin`` or ``frame``, says what a patch is) when the contrastive loss is on.
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

    def n_outputs(self, n_spks):
        """Number of masks the masker must predict for ``n_spks`` speakers."""
        return n_spks + int(self.hparams.noise_speaker)

    def _check_outputs(self, estimates, n_spks):
        if estimates.shape[-1] != self.n_outputs(n_spks):
            raise ValueError(
                f"the masker predicts {estimates.shape[-1]} masks but NASS with {n_spks} speakers and "
                f"noise_speaker={self.hparams.noise_speaker} needs {self.n_outputs(n_spks)} (set num_masks in the yaml)"
            )

    def training_targets(self, outputs):
        """Speakers, then the noise as one more source when the noise-speaker is on."""
        targets, mask = outputs.targets, outputs.source_mask
        self._check_outputs(outputs.estimates, targets.shape[-1])
        if not self.hparams.noise_speaker:
            return targets, mask
        if outputs.noise is None or not bool(outputs.noise_mask.all()):
            raise ValueError("NASS's noise-speaker needs the noise signal of every item: prepare with task: sep_noisy")
        return torch.cat([targets, outputs.noise.unsqueeze(-1)], dim=-1), torch.cat(
            [mask, outputs.noise_mask[:, None]], dim=-1
        )

    def pit_loss(self, outputs):
        """uPIT over all outputs, or over the speakers only with a fixed noise slot."""
        if not (self.hparams.noise_speaker and self.hparams.noise_slot == "fixed"):
            return super().pit_loss(outputs)
        estimates, lengths = outputs.estimates, outputs.lengths
        targets, mask = self.training_targets(outputs)
        n_spks = targets.shape[-1] - 1
        spk_loss, spk_perm = pit_si_snr_loss(
            estimates[..., :n_spks], targets[..., :n_spks], source_mask=mask[:, :n_spks], lengths=lengths
        )
        noise_loss = -pairwise_si_snr(estimates[..., n_spks:], targets[..., n_spks:], lengths=lengths)[:, 0, 0]
        n_real = mask[:, :n_spks].sum(-1).to(spk_loss.dtype)
        loss = (n_real * spk_loss + noise_loss) / (n_real + 1)
        noise_index = spk_perm.new_full((spk_perm.shape[0], 1), n_spks)
        return loss, torch.cat([spk_perm, noise_index], dim=-1)

    def auxiliary_loss(self, outputs, batch):
        """lambda times the patch-wise contrastive loss (equation 8).

        ``per_item`` (added to each item's loss before the -30 dB threshold,
        as the authors' code does) with ``pcl_before_threshold``, else the
        batch mean as ``batch`` (added after the threshold).
        """
        hp = self.hparams
        if hp.pcl_direction == "none":
            return super().auxiliary_loss(outputs, batch)
        targets, _ = self.training_targets(outputs)
        sampler = self.unwrapped("patch_sampler")
        est_patches, true_patches = sampler.extract(
            outputs.features["mix_w"],
            outputs.features["masks"],
            self.unwrapped("separator").encoder,
            targets,
            n_patches=hp.pcl_patches,
        )
        pcl = nass_contrastive_loss(
            est_patches,
            true_patches,
            outputs.perm,
            self.modules.patch_sampler,
            n_spks=targets.shape[-1] - 1,
            tau=hp.pcl_tau,
            direction=hp.pcl_direction,
            mask_same_position=hp.pcl_mask_same_position,
            reduction="none" if hp.pcl_before_threshold else "mean",
        )
        if hp.pcl_before_threshold:
            return AuxiliaryLoss(per_item=hp.pcl_weight * pcl)
        return AuxiliaryLoss(batch=hp.pcl_weight * pcl)

    def noise_estimate(self, outputs):
        """The output matched to the noise ``[B, T]`` (None without the noise-speaker)."""
        if not self.hparams.noise_speaker:
            return None
        index = outputs.perm[:, outputs.targets.shape[-1]]
        estimates = outputs.estimates
        return estimates.gather(-1, index[:, None, None].expand(-1, estimates.shape[1], 1))[..., 0]

    @torch.no_grad()
    def test_metrics(self, outputs):
        """Speaker metrics, plus the noise estimate's SI-SNR(i) and, with PIT slots, the noise rule."""
        metrics = super().test_metrics(outputs)
        if not self.hparams.noise_speaker or outputs.noise is None:
            return metrics
        noise = outputs.noise.float().unsqueeze(-1)
        noise_hat = self.noise_estimate(outputs).float().unsqueeze(-1)
        mix = outputs.mix.float().unsqueeze(-1)
        metrics["noise_si-snr"] = float(si_snr(noise_hat, noise)[0, 0])
        metrics["noise_si-snr_i"] = metrics["noise_si-snr"] - float(si_snr(mix, noise)[0, 0])
        if self.hparams.noise_slot == "pit":
            picked = pick_noise_output(outputs.estimates, self.hparams.sample_rate)
            truth = outputs.perm[:, outputs.targets.shape[-1]]
            metrics["noise_rule_correct"] = float((picked == truth).double()[0])
        return metrics

    def extra_test_signals(self, outputs, index):
        """The estimated and the true noise, saved beside the speakers."""
        if not self.hparams.noise_speaker:
            return {}
        signals = {"noise_hat": self.noise_estimate(outputs)[index].float().cpu()}
        if outputs.noise is not None:
            signals["noise"] = outputs.noise[index].float().cpu()
        return signals

    def split_outputs(self, estimates):
        """Speakers and noise without references: the fixed slot, or :func:`pick_noise_output`."""
        if not self.hparams.noise_speaker:
            return estimates, None
        n_spks = estimates.shape[-1] - 1
        if self.hparams.noise_slot == "fixed":
            return estimates[..., :n_spks], estimates[..., n_spks]
        noise_index = pick_noise_output(estimates, self.hparams.sample_rate)
        order = torch.arange(n_spks + 1, device=estimates.device).expand(estimates.shape[0], -1)
        keep = order != noise_index[:, None]
        speakers_index = order[keep].view(-1, n_spks)
        speakers = estimates.gather(-1, speakers_index[:, None, :].expand(-1, estimates.shape[1], -1))
        return speakers, estimates.gather(-1, noise_index[:, None, None].expand(-1, estimates.shape[1], 1))[..., 0]
