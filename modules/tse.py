"""Target speech extraction (TSE) and the cross-domain test of the DPCCN paper.

Paper: Han et al., "DPCCN: Densely-connected pyramid complex convolutional
network for robust speech separation and extraction", ICASSP 2022 (sections
2.1, 3 and 4.2.2, Tables 3 and 4).

:class:`TSEBrain` trains a separator with one output (sDPCCN,
TD-SpeakerBeam) to extract the speaker of an enrollment utterance: the
target is always source 1 of the manifest (``s1_wav``, the speaker the
enrollment ``enroll_wav`` belongs to), the loss is its negative SI-SNR, with
no permutation search (the paper: "Negative SISNR loss function is used for
both SS and TSE system training"; uPIT for SS only). Validation and test
metrics score the target speaker only, and the test stage saves the
enrollment beside the mixture, the target and the estimate.

:class:`CrossDomainMixin` writes, after the last test set of a run, the
layout of the paper's Table 3: SI-SNR / SI-SNRi on the source-domain and the
target-domain test sets and the ST-Gap, read from the per-set
``test_summary*.json`` files (yaml key ``cross_domain_table``).
A recipe yaml names its Brain (``brain_class``: :class:`CrossDomainSeparationBrain`
or :class:`CrossDomainTSEBrain`), so that one ``train.py`` serves the four
systems of Table 3.
"""

from __future__ import annotations

import json
import logging
import math
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from modules.brain import SeparationBrain
from modules.files import write_text_atomic
from modules.losses import pairwise_si_snr

__all__ = [
    "CrossDomainMixin",
    "CrossDomainSeparationBrain",
    "CrossDomainTSEBrain",
    "TSEBrain",
    "st_gap",
    "write_cross_domain_table",
]

logger = logging.getLogger(__name__)

#: Label of the main test set in ``test_summary.json`` (extra sets use their ``extra_test_sets`` name).
MAIN_TEST_SET = "test"


class TSEBrain(SeparationBrain):
    """Target speech extraction: one output trained towards source 1 with negative SI-SNR, no PIT.

    The separator is called with the yaml's ``conditioning`` (``[enroll]``:
    ``enroll`` and ``enroll_lengths`` by name). After the forward pass
    ``outputs.targets`` holds the target speaker only (``[B, T, 1]``), so
    that the validation loss, the test metrics (SI-SNR, SI-SNRi, SDR, SDRi of
    the target) and the saved references are the target's; the other
    sources stay in ``outputs.batch`` (speed perturbation rebuilds the
    mixture from all of them before that).

    Example
    -------
    >>> from modules.models.dpccn import DPCCN
    >>> from modules.data import collate
    >>> tiny = DPCCN(1, first_channels=2, dense_channels=2, deep_channels=(2, 2), tcn_channels=4, tcn_blocks=1,
    ...              tcn_layers=1, speaker_encoder=True, spk_hidden=4)
    >>> brain = TSEBrain({"separator": tiny}, hparams={"sample_rate": 8000, "conditioning": ["enroll"]},
    ...                  run_opts={"device": "cpu"})
    >>> items = [{"id": str(i), "mix_sig": torch.randn(4000), "s1_sig": torch.randn(4000), "s2_sig": torch.randn(4000),
    ...           "enroll_sig": torch.randn(3000 + 500 * i)} for i in range(2)]
    >>> outputs = brain.compute_forward(collate(items), sb.Stage.VALID)
    >>> outputs.estimates.shape, outputs.targets.shape
    (torch.Size([2, 4000, 1]), torch.Size([2, 4000, 1]))
    >>> loss, perm = brain.pit_loss(outputs)
    >>> loss.shape, perm.tolist()
    (torch.Size([2]), [[0], [0]])
    """

    def conditioning(self, batch):
        """The yaml's ``conditioning`` inputs; under ``--debug`` a missing enrollment is another utterance.

        Upstream's recipe test runs every recipe with ``--debug`` on its
        ``tests/samples``, which have no enrollment column. In such a run
        (SpeechBrain's ``run_opts["debug"]``) a batch without ``enroll`` gets
        one from another utterance of the sample set, as the recipes draw one
        without an enrollment list (:meth:`debug_enrollment`); a real run
        still stops with the error of :meth:`modules.brain.SeparationBrain.conditioning`.
        """
        wanted = "enroll" in (self._hp("conditioning", None) or [])
        if wanted and batch.enroll is None and getattr(self, "debug", False):
            enroll, lengths = self.debug_enrollment(batch)
            batch = batch.replace(enroll=enroll, enroll_lengths=lengths)
        return super().conditioning(batch)

    def debug_enrollment(self, batch):
        """Each item's enrollment for a ``--debug`` run on data without an enrollment column.

        The target (source 1) of another item of the batch; in a batch of one,
        the target of the previous batch of the run (upstream's samples: one
        mixture per split, so the training mixture's target enrolls the
        validation mixture and back); the first batch of one of a run has no
        other utterance and enrolls its own target. Logged once per run.

        Returns
        -------
        tuple
            ``(enroll [B, T_e], enroll_lengths [B])``.
        """
        if batch.sources is None:
            raise ValueError("a --debug run without enrollments draws them from the targets, and this batch has none")
        targets, lengths = batch.sources[..., 0], batch.lengths
        previous = getattr(self, "_debug_previous_target", None)
        if targets.shape[0] > 1:
            order = torch.roll(torch.arange(targets.shape[0], device=targets.device), 1)
            enroll, enroll_lengths = targets[order], lengths[order]
        elif previous is not None:
            enroll, enroll_lengths = previous[0].to(targets.device), previous[1].to(lengths.device)
        else:
            enroll, enroll_lengths = targets, lengths
        self._debug_previous_target = (targets[:1, : int(lengths[0])].detach().clone(), lengths[:1].clone())
        if not getattr(self, "_debug_enrollment_logged", False):
            logger.warning(
                "the batch has no enrollment (no enroll_wav column); --debug run: enrollments are other utterances "
                "of the data (another item's or the previous batch's target)"
            )
            self._debug_enrollment_logged = True
        return enroll, enroll_lengths

    def compute_forward(self, batch, stage):
        """The separator's forward pass; the targets are cut to the target speaker (source 1)."""
        outputs = super().compute_forward(batch, stage)
        if outputs.estimates.shape[-1] != 1:
            raise ValueError(
                f"target speech extraction needs a separator with 1 output, this one has "
                f"{outputs.estimates.shape[-1]} (num_outputs / num_masks in the yaml)"
            )
        if outputs.targets is not None:
            outputs.targets = outputs.targets[..., :1]
            outputs.source_mask = outputs.source_mask[:, :1]
        return outputs

    def pit_loss(self, outputs):
        """Per-item negative SI-SNR of the one output against the target (0 without one); identity assignment."""
        targets, mask = self.training_targets(outputs)
        scores = pairwise_si_snr(outputs.estimates, targets, lengths=outputs.lengths)[:, 0, 0]
        loss = -scores * mask[:, 0].to(scores.dtype)
        perm = torch.zeros(targets.shape[0], 1, dtype=torch.long, device=targets.device)
        return loss, perm

    def extra_test_signals(self, outputs, index):
        """The enrollment utterance, saved as ``<id>_enroll.wav`` beside the outputs."""
        batch = outputs.batch.item(index) if len(outputs.batch) > 1 else outputs.batch
        if batch.enroll is None:
            return {}
        return {"enroll": batch.enroll[0].float().cpu()}

    def separate_file(self, path, output_folder, enroll=None, **options):
        """Extracts the speaker of an enrollment file from a mixture file.

        Arguments
        ---------
        path : str
            ``MIXTURE.wav``, or ``MIXTURE.wav,ENROLLMENT.wav`` (how the
            recipes' ``--separate`` passes both).
        output_folder : str
            Where ``<mixture name>_s1.wav`` is written.
        enroll : str, optional
            The enrollment file (instead of the comma form); any rate, resampled
            to the model's (:func:`modules.inference.separate_file`).
        **options
            Further options of :func:`modules.inference.separate_file`.

        Returns
        -------
        list of str
        """
        if enroll is None:
            if "," not in path:
                raise ValueError(
                    f"{path}: target speech extraction needs an enrollment: give MIXTURE.wav,ENROLLMENT.wav"
                )
            path, enroll = path.split(",", 1)
        return super().separate_file(path, output_folder, enroll=enroll, **options)


def st_gap(source_si_snr, target_si_snr):
    """ST-Gap of the paper's Table 3: the relative SI-SNR loss from source to target domain.

    ``(SI-SNR source - SI-SNR target) / SI-SNR source``, lower is better.
    Undefined (``None``) when the source-domain SI-SNR is not positive: the
    ratio then no longer measures a degradation.

    Arguments
    ---------
    source_si_snr, target_si_snr : float
        Mean SI-SNR (dB) on the source- and the target-domain test sets.

    Returns
    -------
    float or None

    Example
    -------
    >>> round(st_gap(13.05, 5.09), 3)  # DPCCN in Table 3: 61.0 %
    0.61
    >>> st_gap(-1.0, -3.0) is None
    True
    """
    source, target = float(source_si_snr), float(target_si_snr)
    if not (math.isfinite(source) and math.isfinite(target)) or source <= 0:
        return None
    return (source - target) / source


def _summary_path(output_folder, test_set):
    name = "test_summary.json" if test_set == MAIN_TEST_SET else f"test_summary_{test_set}.json"
    return os.path.join(output_folder, name)


def write_cross_domain_table(output_folder, spec):
    """Writes ``st_gap.md`` and ``st_gap.json``: the row of the paper's Table 3 for this run.

    Arguments
    ---------
    output_folder : str
        The run's folder, holding ``test_summary*.json``.
    spec : dict
        ``task`` (``SS`` or ``TSE``), ``system`` (row name), ``source`` and
        ``target``, each ``{set: <test set label>, title: <column title>}``;
        the label of the main test set is ``test``, an extra set's is its
        ``extra_test_sets`` name.

    Returns
    -------
    dict
        What ``st_gap.json`` holds.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> for name, value in (("test_summary.json", 13.05), ("test_summary_aishell2mix.json", 5.09)):
    ...     summary = {"si-snr": value, "si-snr_i": value, "n_scored": 3}
    ...     _ = open(os.path.join(out, name), "w").write(json.dumps(summary))
    >>> spec = {"task": "SS", "system": "DPCCN", "source": {"set": "test", "title": "Libri2Mix"},
    ...         "target": {"set": "aishell2mix", "title": "Aishell2Mix"}}
    >>> table = write_cross_domain_table(out, spec)
    >>> round(table["st_gap"], 3)
    0.61
    >>> print(open(os.path.join(out, "st_gap.md")).read().splitlines()[-1])
    | SS | DPCCN | 13.05 / 13.05 | 5.09 / 5.09 | ↓ 61.0% |
    """
    sides = {}
    for side in ("source", "target"):
        test_set, title = spec[side]["set"], spec[side]["title"]
        path = _summary_path(output_folder, test_set)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cross_domain_table: no results of test set {test_set!r} ({path} is missing)")
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        if "si-snr" not in summary:
            raise ValueError(f"cross_domain_table: test set {test_set!r} has no SI-SNR ({path}: no references?)")
        sides[side] = {
            "set": test_set,
            "title": title,
            "si-snr": summary["si-snr"],
            "si-snr_i": summary["si-snr_i"],
            "n_scored": summary.get("n_scored"),
        }
    gap = st_gap(sides["source"]["si-snr"], sides["target"]["si-snr"])
    table = {"task": spec["task"], "system": spec["system"], **sides, "st_gap": gap}
    src, tgt = sides["source"], sides["target"]
    gap_text = "n/a (source SI-SNR <= 0)" if gap is None else f"↓ {100 * gap:.1f}%"
    text = (
        f"SI-SNR / SI-SNRi (dB), {src['title']} -> {tgt['title']}; "
        "ST-Gap = (SI-SNR source - SI-SNR target) / SI-SNR source (the paper's Table 3)\n\n"
        f"| Task | System | {src['title']} | {tgt['title']} | ST-Gap |\n|---|---|---|---|---|\n"
        f"| {spec['task']} | {spec['system']} | {src['si-snr']:.2f} / {src['si-snr_i']:.2f} | "
        f"{tgt['si-snr']:.2f} / {tgt['si-snr_i']:.2f} | {gap_text} |\n"
    )
    write_text_atomic(
        os.path.join(output_folder, "st_gap.json"), json.dumps(table, indent=2, ensure_ascii=False) + "\n"
    )
    write_text_atomic(os.path.join(output_folder, "st_gap.md"), text)
    return table


class CrossDomainMixin:
    """Writes the cross-domain table (:func:`write_cross_domain_table`) after the run's last test set.

    Reads ``cross_domain_table`` (the ``spec`` of :func:`write_cross_domain_table`)
    and ``extra_test_sets`` from the hparams; without ``cross_domain_table``
    nothing is written.
    """

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """The Brain's stage end; after the last test set, the cross-domain table."""
        super().on_stage_end(stage, stage_loss, epoch)
        spec = self._hp("cross_domain_table", None)
        if stage != sb.Stage.TEST or not spec or not if_main_process():
            return
        labels = [MAIN_TEST_SET, *(self._hp("extra_test_sets", None) or {})]
        if self._test_label == labels[-1]:
            table = write_cross_domain_table(self.hparams.output_folder, spec)
            logger.info(
                "Cross-domain table written to %s (ST-Gap %s)",
                os.path.join(self.hparams.output_folder, "st_gap.md"),
                "n/a" if table["st_gap"] is None else f"{100 * table['st_gap']:.1f}%",
            )


class CrossDomainSeparationBrain(CrossDomainMixin, SeparationBrain):
    """Speech separation (uPIT) with the cross-domain table at the end of the test stage."""


class CrossDomainTSEBrain(CrossDomainMixin, TSEBrain):
    """Target speech extraction with the cross-domain table at the end of the test stage."""
