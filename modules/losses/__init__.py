"""Vectorised, device-agnostic training losses (``[batch, time, n_src]`` signals).

* :mod:`modules.losses.si_snr`: the one SI-SNR statistics kernel (:func:`centered_stats`),
  the pairwise SI-SNR matrix and uPIT
  (:func:`pit_si_snr_loss`), with padded samples and sources masked;
* :mod:`modules.losses.matching`: the best-assignment search over any pairwise
  score matrix (:func:`best_permutation`), shared by every PIT variant;
* :mod:`modules.losses.patch`: NASS's patch-wise contrastive loss;
* :mod:`modules.losses.orpit`: SADDEL's one-and-rest PIT;
* :mod:`modules.losses.dip`: DIP's masked predictive coding, codebook diversity and MMD;
* :mod:`modules.losses.contextual`: InfoNCE with PIT over speakers (context-aware training);
* :mod:`modules.losses.mixit`: MixIT and the thresholded-SNR PIT of MixPIT / MixCycle;

Every public name is importable from ``modules.losses``.
"""

from modules.losses.common import autocast_off, check_signals, output_dtype
from modules.losses.contextual import INFO_NCE_NEGATIVES, info_nce_pit_loss, pairwise_info_nce, pit_from_pairwise
from modules.losses.dip import (
    MMD_KERNELS,
    codebook_diversity_loss,
    contrastive_logits,
    cue_probability,
    mic_loss,
    mmd_loss,
    mpc_loss,
    mpc_nce_loss,
    sample_negative_indices,
    utterance_statistics,
)
from modules.losses.matching import MAX_EXHAUSTIVE_SRC, assignment_table, best_permutation, matched_scores
from modules.losses.mixit import MIXIT_SNR_MAX, mixit_assignments, mixit_loss, snr_pit_loss, thresholded_snr
from modules.losses.orpit import orpit_scores, orpit_si_snr_loss, rest_targets
from modules.losses.patch import NASS_DIRECTIONS, nass_contrastive_loss, patch_nce_loss, sample_patch_positions
from modules.losses.si_snr import (
    SiSnrStats,
    apply_perm,
    centered_f64,
    centered_stats,
    pairwise_si_snr,
    pit_si_snr_loss,
    si_snr_from_stats,
)

__all__ = [
    "INFO_NCE_NEGATIVES",
    "MAX_EXHAUSTIVE_SRC",
    "MIXIT_SNR_MAX",
    "MMD_KERNELS",
    "NASS_DIRECTIONS",
    "SiSnrStats",
    "apply_perm",
    "assignment_table",
    "autocast_off",
    "best_permutation",
    "centered_f64",
    "centered_stats",
    "check_signals",
    "codebook_diversity_loss",
    "contrastive_logits",
    "cue_probability",
    "info_nce_pit_loss",
    "matched_scores",
    "mic_loss",
    "mixit_assignments",
    "mixit_loss",
    "mmd_loss",
    "mpc_loss",
    "mpc_nce_loss",
    "nass_contrastive_loss",
    "orpit_scores",
    "orpit_si_snr_loss",
    "output_dtype",
    "pairwise_info_nce",
    "pairwise_si_snr",
    "patch_nce_loss",
    "pit_from_pairwise",
    "pit_si_snr_loss",
    "rest_targets",
    "sample_negative_indices",
    "sample_patch_positions",
    "si_snr_from_stats",
    "snr_pit_loss",
    "thresholded_snr",
    "utterance_statistics",
]
