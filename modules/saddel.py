"""SADDEL: joint separation and denoising by recursive one-and-rest separation, and its comparison systems.

Paper: Wu, Tuan, Lee and Tsao, "SADDEL: Joint Speech Separation and Denoising
Model based on Multitask Learning" (arXiv:2005.09966).
One separator with two outputs, one speaker and the rest, is applied
recursively to the rest (equation 1) and trained with one-and-rest PIT
(equation 2, :func:`modules.losses.orpit_si_snr_loss`) on batches that mix the
five scenarios 1sp+n, 2sp, 3sp, 2sp+n and 3sp+n, the loss averaged over the
batch's items (:mod:`modules.data.scenarios` balances the scenarios in every
batch). Where the paper is silent, the one-and-rest PIT reference
implementation (fgnt/padertorch ``contrib/examples/source_separation/or_pit``)
decides; see "Departures" below.

Brains
------
:class:`SADDELBrain`
    SADDEL itself, and the paper's bl.SS / bl.SD baselines (the same model
    trained on other scenarios: a yaml change).
:class:`CascadeBrain`
    The cascade SD -> SS: a denoiser (one output, trained towards the sum of
    the speakers) followed by the one-and-rest separator on its output,
    trained jointly.
:class:`A2PITBrain`
    Auxiliary autoencoding PIT (Luo and Mesgarani, 2020): a fixed maximum of
    outputs, the outputs left without a speaker trained towards the mixture;
    at inference an output is dropped when its SI-SNR against the mixture is
    above a threshold.

Recursion (:func:`recursive_separation`)
    The separator is applied to the rest until the stopping rule says that no
    speaker is left, at most ``max_steps`` times (4, the reference). Rules
    (``stop_rule``): ``flag`` (the learned flag of
    :class:`modules.models.OneAndRestSeparator` above ``flag_threshold``) or
    ``energy`` (the rest's energy relative to the input mixture below
    ``energy_threshold_db``). A silent input has no speaker (no step runs).
    Each step yields one speaker; the last rest is the noise (noisy input) or
    silence (clean input) and is not a speaker.

Training over recursion steps (``train_steps``)
    ``first``: one step on every scenario (the reference's first stage).
    ``oracle``: the recursion unrolled over each item's true number of
    speakers, the rest detached between steps, the sources already extracted
    removed from the candidates (the reference's fine-tuning stage, started
    from the first stage's run through ``init_from``). The flag's target at
    step ``j`` is 1 when the rest has no speaker left (``j`` equals the number
    of speakers), trained with binary cross-entropy (weight ``flag_weight``).

Test stage
    Each test mixture is separated twice, with the estimated and with the
    oracle number of steps. Per item: ``n_spk``, ``n_spk_hat``,
    ``count_correct``, SI-SNR(i) and SDR(i) with the estimated count
    (:func:`score_with_count`: estimates matched to references; a reference
    left without an estimate is scored with the mixture as its estimate, i.e.
    0 dB improvement; extra estimates are not scored, the count accuracy
    reports them) and the same with the oracle count (``oracle_*``). Beside
    ``test_results.csv``: ``test_scenarios.{csv,md}`` (the paper's Table 1
    layout, one column per scenario), ``test_count_confusion.{csv,md}`` and,
    with ``figure2: True``, ``figure2_degradation.{csv,png}`` (Figure 2:
    per-channel SI-SNR of the first step on the noisy minus on the clean
    version of each noisy multi-speaker test mixture).

Departures
----------
* Loss scale: equation 2 halved (the mean of the two terms), so the -30 dB
  loss threshold keeps its meaning; no ``1 / (K - 1)`` weight (SADDEL drops
  the reference's). The unrolled loss is the mean over an item's steps (the
  reference sums over iterations), so items with 3 speakers do not weigh 3
  times more than items with 1.
* Silent rests (the last step on a clean mixture) are trained towards
  silence with a capped level term (:mod:`modules.losses.orpit`); the
  reference uses log-MSE against zeros.
* The flag BCE is averaged over an item's steps and over the batch and added
  after the loss threshold (the reference sums it over iterations).
* In the unrolled stage every step runs on the whole batch; the items with
  fewer speakers than the step index contribute nothing to that step.
* The energy rule compares the rest with the input mixture in dB (the
  reference thresholds the rest's absolute power). On a noisy input the last
  rest is the noise, which is not silent: the energy rule is for clean input
  and stops noisy inputs only at ``max_steps``; the learned flag is the rule
  for noisy input (the recipes' default).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process

from modules.brain import AuxiliaryLoss, SeparationBrain, SeparationOutputs, score_separation
from modules.files import write_csv_atomic, write_text_atomic
from modules.losses import best_permutation, orpit_scores, orpit_si_snr_loss, pairwise_si_snr, pit_si_snr_loss

logger = logging.getLogger(__name__)

__all__ = [
    "SCENARIOS",
    "STOP_RULES",
    "A2PITBrain",
    "CascadeBrain",
    "SADDELBrain",
    "a2pit_select",
    "count_confusion",
    "degradation_histogram",
    "recursive_separation",
    "scenario_table",
    "score_with_count",
]

#: The paper's five scenarios, in the column order of its Table 1.
SCENARIOS = ("1sp+n", "2sp", "3sp", "2sp+n", "3sp+n")
STOP_RULES = ("flag", "energy")
TRAIN_STEPS = ("first", "oracle")
#: Mean-square level (about -100 dBFS) under which an input counts as silence: no speaker, no step.
SILENCE_POWER = 1e-10


# --------------------------------------------------------------------------- recursion
def _power(signal, lengths):
    """Mean square over each item's valid samples: ``[B, T] -> [B]`` float64."""
    valid = torch.arange(signal.shape[-1], device=signal.device)[None, :] < lengths[:, None]
    return (signal.to(torch.float64).square() * valid).sum(-1) / lengths.clamp(min=1).to(torch.float64)


def recursive_separation(
    step,
    mix,
    max_steps=4,
    stop_rule="flag",
    lengths=None,
    flag_threshold=0.5,
    energy_threshold_db=-15.0,
    oracle_counts=None,
):
    """Applies a one-and-rest separator to the rest until no speaker is left.

    Arguments
    ---------
    step : callable
        ``step(signal [b, T]) -> (estimates [b, T, 2], features)``: one
        speaker and the rest; ``features["flag_logit"]`` ``[b]`` for the flag rule.
    mix : torch.Tensor
        ``[B, T]`` mixtures (padded).
    max_steps : int
        Most steps (speakers) per item.
    stop_rule : str
        ``"flag"``: stop when the flag probability exceeds ``flag_threshold``;
        ``"energy"``: stop when the rest's energy relative to the mixture is
        below ``energy_threshold_db``. Ignored with ``oracle_counts``.
    lengths : torch.Tensor, optional
        ``[B]`` valid samples per item.
    flag_threshold : float
    energy_threshold_db : float
    oracle_counts : torch.Tensor, optional
        ``[B]`` long: run exactly this many steps per item (at most ``max_steps``).

    Returns
    -------
    dict
        ``speakers`` ``[B, T, max_steps]`` (zeros past each item's count),
        ``counts`` ``[B]`` long, ``residual`` ``[B, T]`` (the last rest; the
        mixture for an item with no step), ``flags`` ``[B, max_steps]``
        (flag probabilities, NaN where no step ran or without a flag),
        ``rest_db`` ``[B, max_steps]`` (the rests' energies relative to the
        mixture in dB, NaN where no step ran), ``capped`` ``[B]`` bool (the
        item reached ``max_steps`` without the rule saying stop: its count is
        the cap's, not the rule's).

    Example
    -------
    >>> sources = torch.randn(1, 800, 3)
    >>> def oracle_step(x):  # takes out the first source still in the input
    ...     left = [k for k in range(3) if (x[0] * sources[0, :, k]).sum() > 0.5 * sources[0, :, k].square().sum()]
    ...     one = sources[..., left[0]] if left else torch.zeros_like(x)
    ...     return torch.stack([one, x - one], -1), {}
    >>> out = recursive_separation(oracle_step, sources.sum(-1), stop_rule="energy")
    >>> out["counts"].tolist(), out["capped"].tolist()
    ([3], [False])
    """
    if oracle_counts is None and stop_rule not in STOP_RULES:
        raise ValueError(f"stop_rule must be one of {STOP_RULES}, not {stop_rule!r}")
    batch, length = mix.shape
    device = mix.device
    lengths = torch.full((batch,), length, device=device) if lengths is None else lengths.to(device)
    valid = torch.arange(length, device=device)[None, :] < lengths[:, None]
    mix_power = _power(mix, lengths)
    speakers = mix.new_zeros(batch, length, max_steps)
    flags = torch.full((batch, max_steps), math.nan, dtype=torch.float64, device=device)
    rest_db = torch.full((batch, max_steps), math.nan, dtype=torch.float64, device=device)
    counts = torch.zeros(batch, dtype=torch.long, device=device)
    residual = mix * valid
    active = mix_power > SILENCE_POWER
    if oracle_counts is not None:
        active &= oracle_counts.to(device) > 0
    for j in range(max_steps):
        index = active.nonzero()[:, 0]  # one host synchronisation per step (inference only)
        if index.numel() == 0:
            break
        estimates, features = step(residual[index])
        estimates = estimates * valid[index, :, None]
        speakers[index, :, j] = estimates[..., 0]
        residual[index] = estimates[..., 1]
        counts[index] = j + 1
        level = 10 * torch.log10(_power(estimates[..., 1], lengths[index]) / mix_power[index] + 1e-30)
        rest_db[index, j] = level
        flag = features.get("flag_logit") if isinstance(features, dict) else None
        if flag is not None:
            flags[index, j] = torch.sigmoid(flag.detach().to(torch.float64))
        if oracle_counts is not None:
            stop = oracle_counts.to(device)[index] <= j + 1
        elif stop_rule == "flag":
            if flag is None:
                raise ValueError("stop_rule 'flag' needs a separator with the flag head (flag_head: True)")
            stop = torch.sigmoid(flag.detach()) > flag_threshold
        else:
            stop = level < energy_threshold_db
        active[index[stop]] = False
    capped = active & (counts == max_steps)  # still running after the last allowed step
    return {"speakers": speakers, "counts": counts, "residual": residual, "flags": flags, "rest_db": rest_db,
            "capped": capped}  # fmt: skip


# --------------------------------------------------------------------------- scoring
def score_with_count(estimates, references, mixture):
    """Scores separated speakers whose number may differ from the references'.

    The estimates are matched to the references by the best total SI-SNR
    (:func:`modules.losses.best_permutation`). With fewer estimates than
    references, a reference left without an estimate is scored with the
    mixture as its estimate (0 dB improvement); with more, the extra
    estimates are not scored.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[T, K_hat]`` (``K_hat`` may be 0).
    references : torch.Tensor
        ``[T, K]``, ``K >= 1``.
    mixture : torch.Tensor
        ``[T]``.

    Returns
    -------
    dict of str -> float
        :data:`modules.brain.METRICS`, each averaged over the ``K`` references.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(4000, 2)
    >>> mix = refs.sum(-1)
    >>> round(score_with_count(refs[:, [1, 0]] + 0.01 * torch.randn(4000, 2), refs, mix)["si-snr"])
    40
    >>> from modules.metrics import si_snr
    >>> one = score_with_count(refs[:, 1:] + 0.01 * torch.randn(4000, 1), refs, mix)  # one speaker missed
    >>> round(one["si-snr_i"] * 2 - (40 - float(si_snr(mix[None, :, None], refs[None, :, 1:]))))
    0
    """
    n_est, n_ref = estimates.shape[-1], references.shape[-1]
    aligned = mixture[:, None].expand(-1, n_ref).clone()
    if n_est:
        pairwise = pairwise_si_snr(estimates[None].float(), references[None].float())  # [1, K_hat, K]
        if n_est >= n_ref:
            perm = best_permutation(pairwise)[0]  # estimate of each reference
            aligned = estimates[:, perm]
        else:
            ref_of = best_permutation(pairwise.transpose(1, 2))[0]  # reference of each estimate
            aligned[:, ref_of] = estimates
    scores = score_separation(aligned[None], references[None], mixture[None])
    return {name: float(value[0]) for name, value in scores.items()}


def a2pit_select(estimates, mixture, threshold_db, lengths=None, oracle_counts=None):
    """A2PIT's speaker outputs: those whose SI-SNR against the mixture is below a threshold.

    Outputs trained towards the mixture reproduce it (high SI-SNR against it);
    speaker outputs do not. At least one output is kept (the least
    mixture-like). With ``oracle_counts``, the ``K`` least mixture-like
    outputs are kept instead.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[B, T, N]``.
    mixture : torch.Tensor
        ``[B, T]``.
    threshold_db : float
    lengths : torch.Tensor, optional
    oracle_counts : torch.Tensor, optional
        ``[B]`` long.

    Returns
    -------
    order : torch.Tensor
        ``[B, N]`` long: outputs from the least to the most mixture-like.
    counts : torch.Tensor
        ``[B]`` long: how many of ``order`` are speakers.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> s = torch.randn(1, 4000, 2)
    >>> mix = s.sum(-1)
    >>> order, counts = a2pit_select(torch.stack([s[..., 1], mix, s[..., 0]], -1), mix, threshold_db=10.0)
    >>> sorted(order[0, : counts[0]].tolist()), counts.tolist()
    ([0, 2], [2])
    """
    n_out = estimates.shape[-1]
    to_mix = pairwise_si_snr(estimates, mixture.unsqueeze(-1), lengths=lengths)[..., 0]  # [B, N]
    order = to_mix.argsort(dim=-1)
    if oracle_counts is not None:
        return order, oracle_counts.to(order.device).clamp(max=n_out)
    return order, (to_mix < threshold_db).sum(-1).clamp(min=1)


def scenario_table(rows, metrics, scenarios=SCENARIOS):
    """Means of ``metrics`` per scenario, in the paper's column order.

    Arguments
    ---------
    rows : list of dict
        Test rows (``scenario``, ``scored`` and the metrics).
    metrics : sequence of str
    scenarios : sequence of str
        Column order; scenarios of the rows not listed come after, then ``all``.

    Returns
    -------
    columns : list of str
    table : dict of str -> dict of str -> float
        ``table[metric][column]`` (NaN where a scenario has no row).

    Example
    -------
    >>> rows = [{"scenario": "2sp", "scored": 1, "x": 2.0}, {"scenario": "2sp", "scored": 1, "x": 4.0},
    ...         {"scenario": "1sp+n", "scored": 1, "x": 1.0}]
    >>> columns, table = scenario_table(rows, ["x"])
    >>> columns, table["x"]["2sp"], table["x"]["all"], math.isnan(table["x"]["3sp"])
    (['1sp+n', '2sp', '3sp', '2sp+n', '3sp+n', 'all'], 3.0, 2.3333333333333335, True)
    """
    scored = [r for r in rows if r.get("scored")]
    extra = sorted({r["scenario"] for r in scored} - set(scenarios))
    columns = [*scenarios, *extra, "all"]
    table = {}
    for metric in metrics:
        table[metric] = {}
        for column in columns:
            values = [r[metric] for r in scored if metric in r and (column == "all" or r["scenario"] == column)]
            table[metric][column] = sum(values) / len(values) if values else math.nan
    return columns, table


def count_confusion(rows, max_count):
    """Confusion matrix of the speaker count: ``matrix[true][estimated]`` numbers of mixtures.

    Example
    -------
    >>> count_confusion([{"scored": 1, "n_spk": 2, "n_spk_hat": 2}, {"scored": 1, "n_spk": 2, "n_spk_hat": 3}], 3)
    {1: [0, 0, 0, 0], 2: [0, 0, 1, 1], 3: [0, 0, 0, 0]}
    """
    matrix = {k: [0] * (max_count + 1) for k in range(1, max_count + 1)}
    for row in rows:
        if row.get("scored"):
            true, hat = int(row["n_spk"]), min(int(row["n_spk_hat"]), max_count)
            matrix.setdefault(true, [0] * (max_count + 1))[hat] += 1
    return matrix


def best_constant_guess(rows):
    """The count a system that ignores its input would answer best, and its accuracy on ``rows``.

    Example
    -------
    >>> best_constant_guess([{"scored": 1, "n_spk": 2}, {"scored": 1, "n_spk": 3}, {"scored": 1, "n_spk": 3}])
    (3, 0.6666666666666666)
    >>> best_constant_guess([])
    (0, nan)
    """
    counts = [int(r["n_spk"]) for r in rows if r.get("scored")]
    if not counts:
        return 0, math.nan
    guess = max(sorted(set(counts)), key=counts.count)
    return guess, counts.count(guess) / len(counts)


def _fmt(value):
    return "-" if isinstance(value, float) and math.isnan(value) else f"{value:.2f}"


# --------------------------------------------------------------------------- test stage shared by the brains
class _CountingTestStage:
    """Test rows with estimated and oracle counts, per-scenario tables and the count confusion matrix."""

    #: Rows of the scenario table: (row label, test-row metric).
    TABLE_ROWS = (
        ("SI-SNRi, estimated count (dB)", "si-snr_i"),
        ("SI-SNRi, oracle count (dB)", "oracle_si-snr_i"),
        ("SDRi, estimated count (dB)", "sdr_i"),
        ("SDRi, oracle count (dB)", "oracle_sdr_i"),
        ("speaker-count accuracy", "count_correct"),
        ("speaker-count accuracy, a count at the cap counted wrong", "count_correct_uncapped"),
    )
    #: Rows scored on the mixtures whose count is right only (the one-and-rest reference's rule).
    RIGHT_COUNT_ROWS = (
        ("SI-SNRi, right-count mixtures only (dB)", "si-snr_i"),
        ("SDRi, right-count mixtures only (dB)", "sdr_i"),
    )

    def separate_counted(self, batch, oracle):
        """``(speakers [B, T, n], counts [B], residual [B, T] or None, capped [B] bool)`` of a test batch.

        ``capped``: the count is the system's largest (``max_count``) because
        its rule never said stop, not because it counted.
        """
        raise NotImplementedError

    def count_rule(self):
        """How the number of speakers is decided (written in the tables)."""
        raise NotImplementedError

    def max_count(self):
        """The most speakers the system can find."""
        return int(self._hp("max_steps", 4))

    @torch.no_grad()
    def evaluate_batch(self, batch, stage):
        """Test: separates with the estimated and the oracle count and scores every item."""
        if stage != sb.Stage.TEST:
            return super().evaluate_batch(batch, stage)
        batch = batch.to(self.device)
        with self.evaluation_ctx:
            estimated, counts, residual, capped = self.separate_counted(batch, oracle=False)
            # With the right count the oracle run is the same run: separate again only when a count is wrong.
            miscounted = batch.sources is not None and bool((counts != batch.n_sources).any())
            oracle, oracle_counts, *_ = self.separate_counted(batch, oracle=True) if miscounted else (None,) * 4
        losses = []
        for i, item_id in enumerate(batch.ids):
            n = int(batch.lengths[i])
            mix = batch.mix[i, :n].float()
            k_hat = int(counts[i])
            speakers = estimated[i, :n, :k_hat].float()
            n_spk = int(batch.n_sources[i]) if batch.sources is not None else 0
            row = {"snt_id": item_id, "scenario": batch.scenario[i], "scored": int(n_spk > 0)}
            if n_spk == 0:
                self.save_separations({"estimates": speakers[None], "batch": batch.item(i)})
                row["n_spk_hat"] = k_hat
                self.test_rows.append(row)
                continue
            refs = batch.sources[i, :n, :n_spk].float()
            hit_cap = bool(capped[i])
            row.update(n_spk=n_spk, n_spk_hat=k_hat, count_correct=float(k_hat == n_spk), capped=int(hit_cap),
                       count_correct_uncapped=float(k_hat == n_spk and not hit_cap))  # fmt: skip
            scores = score_with_count(speakers, refs, mix)
            row.update(scores)
            if k_hat != n_spk:
                scores = score_with_count(oracle[i, :n, : int(oracle_counts[i])].float(), refs, mix)
            row.update({f"oracle_{name}": value for name, value in scores.items()})
            row.update(self.extra_test_metrics(batch, i))
            self.test_rows.append(row)
            losses.append(-row["si-snr"])
            self._save_counted_audio(item_id, mix, refs, speakers, residual[i, :n] if residual is not None else None)
        return torch.tensor(sum(losses) / len(losses) if losses else 0.0)

    def extra_test_metrics(self, batch, index):
        """More per-item test metrics (SADDEL: Figure 2)."""
        return {}

    def _save_counted_audio(self, item_id, mix, refs, speakers, residual):
        n_to_save = self._hp("n_audio_to_save", math.inf)
        if not self._hp("save_audio", False) or not if_main_process() or self.n_saved >= n_to_save:
            return
        folder = os.path.join(self.hparams.output_folder, "audio" + self._file_suffix)
        os.makedirs(folder, exist_ok=True)
        signals = {"mix": mix}
        signals.update({f"s{k + 1}": refs[:, k] for k in range(refs.shape[-1])})
        signals.update({f"step{k + 1}_hat": speakers[:, k] for k in range(speakers.shape[-1])})
        if residual is not None:
            signals["residual_hat"] = residual
        for name, value in signals.items():
            signal = value.float().cpu()
            peak_normalised = 0.9 * signal / signal.abs().max().clamp(min=1e-8)
            path = os.path.join(folder, f"{item_id}_{name}.wav")
            sb.dataio.dataio.write_audio(path, peak_normalised, self.hparams.sample_rate)
        self.n_saved += 1

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """The chassis' end of stage; in test, also the scenario table and the count confusion matrix."""
        super().on_stage_end(stage, stage_loss, epoch)
        if stage == sb.Stage.TEST and if_main_process():
            self.write_count_tables()

    def write_count_tables(self):
        """``test_scenarios[_<set>].{csv,md}`` and ``test_count_confusion[_<set>].{csv,md}``."""
        folder, suffix = self.hparams.output_folder, self._file_suffix
        rows = self.test_rows
        columns, table = scenario_table(rows, [m for _, m in self.TABLE_ROWS])
        n_items = {c: sum(1 for r in rows if r.get("scored") and c in ("all", r["scenario"])) for c in columns}
        csv_rows = [{"metric": label, **{c: _fmt(table[m][c]) for c in columns}} for label, m in self.TABLE_ROWS]
        csv_rows.append({"metric": "mixtures", **{c: str(n_items[c]) for c in columns}})
        right = [r for r in rows if r.get("scored") and r.get("count_correct")]
        _, right_table = scenario_table(right, [m for _, m in self.RIGHT_COUNT_ROWS], scenarios=columns[:-1])
        csv_rows += [
            {"metric": label, **{c: _fmt(right_table[m][c]) for c in columns}} for label, m in self.RIGHT_COUNT_ROWS
        ]
        n_right = {c: sum(1 for r in right if c in ("all", r["scenario"])) for c in columns}
        csv_rows.append({"metric": "mixtures with the right count", **{c: str(n_right[c]) for c in columns}})
        guess, guess_accuracy = best_constant_guess(rows)
        write_csv_atomic(os.path.join(folder, f"test_scenarios{suffix}.csv"), ["metric", *columns], csv_rows)
        lines = [
            f"Test set {self._test_label}: SI-SNRi / SDRi per scenario (the paper's Table 1 layout); "
            f"number of speakers: {self.count_rule()}",
            "",
            "Compare the paper's tables (SI-SNRi with the estimated count) with the first row: a reference left "
            "without an estimate is scored with the mixture (0 dB), extra estimates are not scored. The "
            "right-count rows score only the mixtures whose count is right (the one-and-rest reference "
            "implementation's rule), on the number of mixtures given below them. Best constant guess of the "
            f"count: {guess} speakers, accuracy {_fmt(guess_accuracy)}.",
            "",
            "| | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        lines += ["| " + " | ".join(r.values()) + " |" for r in csv_rows]
        write_text_atomic(os.path.join(folder, f"test_scenarios{suffix}.md"), "\n".join(lines) + "\n")

        max_count = max([self.max_count()] + [int(r["n_spk"]) for r in rows if r.get("scored")])
        matrix = count_confusion(rows, max_count)
        header = ["true \\ estimated", *[str(k) for k in range(max_count + 1)]]
        matrix_rows = [{header[0]: str(t), **{str(k): str(v) for k, v in enumerate(c)}} for t, c in matrix.items()]
        write_csv_atomic(os.path.join(folder, f"test_count_confusion{suffix}.csv"), header, matrix_rows)
        accuracy = table["count_correct"]["all"]
        uncapped = table["count_correct_uncapped"]["all"]
        text = [
            f"Speaker count on {self._test_label} ({self.count_rule()}): accuracy {_fmt(accuracy)}; "
            f"{_fmt(uncapped)} with a count at the cap ({self.max_count()}) counted wrong; best constant guess "
            f"({guess} speakers) {_fmt(guess_accuracy)}",
            "",
            "| " + " | ".join(header) + " |",
            "|---" * len(header) + "|",
        ]
        text += ["| " + " | ".join(r.values()) + " |" for r in matrix_rows]
        write_text_atomic(os.path.join(folder, f"test_count_confusion{suffix}.md"), "\n".join(text) + "\n")
        logger.info("Per-scenario results: %s", os.path.join(folder, f"test_scenarios{suffix}.md"))


# --------------------------------------------------------------------------- SADDEL
@dataclass
class RecursionStep:
    """One step of the recursion in training and validation (:meth:`SADDELBrain.compute_forward`).

    Attributes
    ----------
    estimates : torch.Tensor
        ``[B, T, 2]``: the step's speaker and rest.
    loss : torch.Tensor
        ``[B]``: the one-and-rest loss (:func:`modules.losses.orpit_si_snr_loss`).
    index : torch.Tensor
        ``[B]`` long: the source the step extracted.
    active : torch.Tensor
        ``[B]`` bool: the items this step counts for (their oracle number of steps reaches it).
    flag_logit : torch.Tensor or None
        ``[B]``: the stop flag's logit (None for a separator without a flag).
    flag_target : torch.Tensor
        ``[B]``: 1 where this is the item's last step.
    """

    estimates: torch.Tensor
    loss: torch.Tensor
    index: torch.Tensor
    active: torch.Tensor
    flag_logit: torch.Tensor | None
    flag_target: torch.Tensor


@dataclass
class RecursionOutputs(SeparationOutputs):
    """:class:`modules.brain.SeparationOutputs` of the recursion; ``estimates`` are the first step's.

    ``noise`` and ``noise_mask`` are those of the recursion's input (None after
    the cascade's denoiser); ``perm`` is ``[B, J]``: the source extracted at
    each step.

    Attributes
    ----------
    steps : list of RecursionStep
        The steps run (one with ``train_steps: first``).
    n_steps : torch.Tensor or None
        ``[B]``: each item's number of oracle steps.
    signal : torch.Tensor or None
        ``[B, T]``: the recursion's input (the mixture; the cascade: the denoised mixture).
    """

    steps: list = field(default_factory=list)
    n_steps: torch.Tensor | None = None
    signal: torch.Tensor | None = None


class SADDELBrain(_CountingTestStage, SeparationBrain):
    """SADDEL (and the bl.SS / bl.SD baselines): see the module docstring.

    Hyperparameters: ``train_steps`` (``first`` or ``oracle``), ``max_steps``,
    ``stop_rule`` (``flag`` or ``energy``), ``flag_threshold``,
    ``energy_threshold_db``, ``flag_weight``, ``silence_snr_max``, ``figure2``;
    module ``separator``: a :class:`modules.models.OneAndRestSeparator`.
    """

    def on_fit_start(self):
        """Checks the switches, then the chassis' start of training."""
        self.check_saddel_hparams()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Checks the switches, loads the best checkpoint, logs the counting rule."""
        self.check_saddel_hparams()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        logger.info("Number of speakers at test time: %s", self.count_rule())

    def check_saddel_hparams(self):
        """Raises a clear ``ValueError`` for inconsistent switches."""
        if self._hp("train_steps", "first") not in TRAIN_STEPS:
            raise ValueError(f"train_steps must be one of {TRAIN_STEPS}, not {self.hparams.train_steps!r}")
        if self._hp("stop_rule", "flag") not in STOP_RULES:
            raise ValueError(f"stop_rule must be one of {STOP_RULES}, not {self.hparams.stop_rule!r}")
        if self._hp("stop_rule", "flag") == "flag" and not self.has_flag:
            raise ValueError("stop_rule 'flag' needs the separator's flag head (flag_head: True)")

    @property
    def has_flag(self):
        """Whether the separator predicts the stop flag."""
        return bool(getattr(self.unwrapped("separator"), "flag_head", False))

    def count_rule(self):
        """The stopping rule of this run, in words."""
        rule = self._hp("stop_rule", "flag")
        max_steps = self._hp("max_steps", 4)
        if rule == "flag":
            threshold = self._hp("flag_threshold", 0.5)
            return f"learned flag > {threshold} (at most {max_steps} steps)"
        threshold_db = self._hp("energy_threshold_db", -15.0)
        return f"rest energy < {threshold_db} dB of the mixture (at most {max_steps} steps)"

    # ------------------------------------------------------------ recursion input
    def recursion_input(self, batch):
        """The recursion's input and the noise in it: ``(signal [B, T], noise, noise_mask)``."""
        return batch.mix, batch.noise, batch.noise_mask

    def _step(self, signal):
        return self.separate(signal)

    # ------------------------------------------------------------ training and validation
    def compute_forward(self, batch, stage):
        """Training and validation: the recursion over the oracle steps of ``train_steps``."""
        if not hasattr(batch, "mix"):
            raise TypeError(f"expected a SeparationBatch (collate_fn=modules.data.collate), got {type(batch).__name__}")
        batch = batch.to(self.device)
        if stage == sb.Stage.TRAIN:
            if batch.sources is None:
                raise ValueError(f"training batch {batch.ids} has no source references")
            batch = self.augment(batch)
        elif batch.sources is None:
            raise ValueError(f"validation batch {batch.ids} has no references: validation needs them")
        signal, noise, noise_mask = self.recursion_input(batch)
        counts = batch.n_sources
        if self._hp("train_steps", "first") == "first":
            n_steps = torch.ones_like(counts)
            max_steps = 1
        else:
            n_steps = counts.clamp(max=self._hp("max_steps", 4))
            max_steps = int(n_steps.max())  # one host synchronisation per batch
        valid = torch.arange(signal.shape[-1], device=self.device)[None, :] < batch.lengths[:, None]
        used = torch.zeros_like(batch.source_mask)
        residual, steps = signal, []
        for j in range(max_steps):
            active = (n_steps > j) & batch.supervised
            # Under DDP the wrapped module runs once per update; later steps use the module itself, their
            # gradients add up in the same backward pass (one accumulation per parameter).
            separator = self.modules.separator if j == 0 else self.unwrapped("separator")
            estimates, features = separator(residual if j == 0 else residual.detach())
            candidates = batch.source_mask & ~used & active[:, None]
            loss, index = orpit_si_snr_loss(
                estimates,
                batch.sources,
                candidates,
                noise,
                noise_mask,
                batch.lengths,
                silence_snr_max=self._hp("silence_snr_max", 30.0),
            )
            used = used | (F.one_hot(index, used.shape[-1]).bool() & active[:, None])
            steps.append(
                RecursionStep(
                    estimates=estimates,
                    loss=loss,
                    index=index,
                    active=active,
                    flag_logit=features.get("flag_logit"),
                    flag_target=(counts == j + 1).to(estimates.dtype),
                )
            )
            residual = estimates[..., 1] * valid
        return RecursionOutputs.from_batch(
            steps[0].estimates, batch, steps=steps, n_steps=n_steps, signal=signal, noise=noise, noise_mask=noise_mask
        )

    def pit_loss(self, outputs):
        """Per item: the one-and-rest loss averaged over its steps; and the source extracted at each step."""
        steps = outputs.steps
        active = torch.stack([s.active for s in steps], -1).to(steps[0].loss.dtype)  # [B, J]
        losses = torch.stack([s.loss for s in steps], -1)
        loss = (losses * active).sum(-1) / active.sum(-1).clamp(min=1)
        return loss, torch.stack([s.index for s in steps], -1)

    def flag_loss(self, outputs):
        """Binary cross-entropy of the stop flag, averaged over each item's steps and the items: 0-d."""
        steps = outputs.steps
        if not self.has_flag or steps[0].flag_logit is None:
            return steps[0].estimates.new_zeros(())
        logits = torch.stack([s.flag_logit for s in steps], -1)  # [B, J]
        targets = torch.stack([s.flag_target for s in steps], -1)
        active = torch.stack([s.active for s in steps], -1).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
        per_item = (bce * active).sum(-1) / active.sum(-1).clamp(min=1)
        items = active.amax(-1)
        return (per_item * items).sum() / items.sum().clamp(min=1)

    def auxiliary_loss(self, outputs, batch):
        """``flag_weight`` times the flag's BCE, added to the batch loss after the loss threshold."""
        return AuxiliaryLoss(batch=self._hp("flag_weight", 1.0) * self.flag_loss(outputs))

    def compute_objectives(self, outputs, batch, stage):
        """Training: the chassis' objective with :meth:`pit_loss` and the flag. Validation: minus the
        one-and-rest SI-SNR (mean of the two outputs' SI-SNR over the steps), and the flag's accuracy."""
        if stage == sb.Stage.TRAIN:
            return super().compute_objectives(outputs, batch, stage)
        loss, perm = self.pit_loss(outputs)
        outputs.perm = perm
        weight = outputs.batch.supervised.to(loss.dtype)
        if self.has_flag:
            for s in outputs.steps:
                hit = ((s.flag_logit > 0).to(s.flag_target.dtype) == s.flag_target) & s.active
                self._flag_hits += float(hit.sum())
                self._flag_total += float(s.active.sum())
        return (loss * weight).sum() / weight.sum().clamp(min=1)

    def on_stage_start(self, stage, epoch=None):
        """Resets the flag accuracy counters, then the chassis' start of stage."""
        self._flag_hits, self._flag_total = 0.0, 0.0
        super().on_stage_start(stage, epoch)

    def valid_stats(self, stage_loss):
        """``si-snr`` (one-and-rest SI-SNR, the best-checkpoint key) and ``flag_accuracy``."""
        stats = super().valid_stats(stage_loss)
        if self._flag_total:
            stats["flag_accuracy"] = self._flag_hits / self._flag_total
        return stats

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def separate_counted(self, batch, oracle):
        """Recursion on a test batch, with the stop rule or the oracle count."""
        signal, _, _ = self.recursion_input(batch)
        out = recursive_separation(
            self._step,
            signal,
            max_steps=self._hp("max_steps", 4),
            stop_rule=self._hp("stop_rule", "flag"),
            lengths=batch.lengths,
            flag_threshold=self._hp("flag_threshold", 0.5),
            energy_threshold_db=self._hp("energy_threshold_db", -15.0),
            oracle_counts=batch.n_sources if oracle else None,
        )
        return out["speakers"], out["counts"], out["residual"], out["capped"]

    @torch.no_grad()
    def separate_speakers(self, mix, **conditioning):
        """Speakers ``[B, T, max count]`` (zeros past an item's count) and the last rest (the noise, or silence)."""
        batch = _MixOnly(mix)
        speakers, counts, residual, _ = self.separate_counted(batch, oracle=False)
        return speakers[..., : max(1, int(counts.max()))], residual

    # ------------------------------------------------------------ Figure 2
    def extra_test_metrics(self, batch, index):
        """With ``figure2``: SI-SNR of the first step's two outputs on the clean and the noisy version."""
        if not self._hp("figure2", False) or batch.noise is None or not bool(batch.noise_mask[index]):
            return {}
        n_spk = int(batch.n_sources[index])
        if n_spk < 2:
            return {}
        n = int(batch.lengths[index])
        sources = batch.sources[index : index + 1, :n, :n_spk]
        clean = sources.sum(-1)
        noisy = clean + batch.noise[index : index + 1, :n]
        metrics = {}
        for name, mixture in (("clean", clean), ("noisy", noisy)):
            signal = self.recursion_input(_MixOnly(mixture))[0]
            estimates, _ = self.separate(signal)
            one, rest, _ = orpit_scores(estimates, sources)  # both scored against the clean targets
            best = int((one + rest).argmax(-1))
            metrics[f"fig2_ch1_{name}"] = float(one[0, best])
            metrics[f"fig2_ch2_{name}"] = float(rest[0, best])
        for ch in ("ch1", "ch2"):
            metrics[f"fig2_{ch}_degradation"] = metrics[f"fig2_{ch}_noisy"] - metrics[f"fig2_{ch}_clean"]
        return metrics

    def write_count_tables(self):
        """The tables, and Figure 2 when asked for."""
        super().write_count_tables()
        if self._hp("figure2", False):
            self.write_figure2()

    def write_figure2(self):
        """``figure2_degradation[_<set>].csv`` and ``.png``: per-channel SI-SNR degradation (noisy - clean)."""
        rows = [r for r in self.test_rows if "fig2_ch1_degradation" in r]
        folder, suffix = self.hparams.output_folder, self._file_suffix
        header = ["snt_id", "scenario"] + [f"fig2_{c}_{k}" for c in ("ch1", "ch2") for k in ("clean", "noisy")]
        header += ["fig2_ch1_degradation", "fig2_ch2_degradation"]
        table = [{k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in header} for r in rows]
        write_csv_atomic(os.path.join(folder, f"figure2_degradation{suffix}.csv"), header, table)
        if rows:
            degradation_histogram(
                os.path.join(folder, f"figure2_degradation{suffix}.png"),
                {
                    scenario: (
                        [r["fig2_ch1_degradation"] for r in rows if r["scenario"] == scenario],
                        [r["fig2_ch2_degradation"] for r in rows if r["scenario"] == scenario],
                    )
                    for scenario in sorted({r["scenario"] for r in rows})
                },
            )


def degradation_histogram(path, data, bins=20):
    """Figure 2 of the paper: histograms of the per-channel SI-SNR degradation (noisy - clean input).

    Arguments
    ---------
    path : str
        Output PNG file.
    data : dict of str -> (list of float, list of float)
        Scenario -> (channel 1 degradations, channel 2 degradations) in dB.
    bins : int

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "fig2.png")
    >>> degradation_histogram(path, {"2sp+n": ([-3.0, -4.0, -2.5], [-4.0, -5.0, -3.5])})
    >>> os.path.getsize(path) > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 3.5), squeeze=False)
    for ax, (scenario, channels) in zip(axes[0], data.items()):
        for values, label in zip(channels, ("channel 1 (one speaker)", "channel 2 (rest)")):
            mean = sum(values) / len(values) if values else math.nan
            ax.hist(values, bins=bins, alpha=0.5, label=f"{label}, mean {mean:.2f} dB")
        ax.set_title(f"{scenario}: SI-SNR degradation, noisy - clean")
        ax.set_xlabel("dB")
        ax.set_ylabel("mixtures")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class _MixOnly:
    """The fields of a batch the recursion reads, for mixtures without references."""

    def __init__(self, mix):
        self.mix = mix
        self.lengths = torch.full((mix.shape[0],), mix.shape[-1], device=mix.device)
        self.noise = self.noise_mask = self.sources = None
        self.n_sources = None


# --------------------------------------------------------------------------- cascade SD -> SS
class CascadeBrain(SADDELBrain):
    """The cascade SD -> SS (paper section 4.1.3): module ``denoiser`` then the one-and-rest ``separator``.

    The denoiser (a separator with one output) is trained towards the sum of
    the speakers (negative SI-SNR), the separator recursively on its output
    with one-and-rest PIT against the clean speakers (the rests hold no
    noise: it was removed), both at once ("simultaneously trained to minimize
    the overall loss"): each item's loss is the mean of the two.
    """

    def denoise(self, mix):
        """``[B, T] -> [B, T]``: the denoiser's speech estimate."""
        estimates, _ = self.modules.denoiser(mix)
        return estimates[..., 0]

    def recursion_input(self, batch):
        """The denoised mixture; no noise in it."""
        return self.denoise(batch.mix), None, None

    def pit_loss(self, outputs):
        """Mean of the separator's one-and-rest loss and the denoiser's negative SI-SNR."""
        ss_loss, perm = super().pit_loss(outputs)
        speech = (outputs.targets * outputs.source_mask[:, None, :]).sum(-1)
        sd_loss = -pairwise_si_snr(outputs.signal.unsqueeze(-1), speech.unsqueeze(-1), lengths=outputs.lengths)[:, 0, 0]
        return 0.5 * (ss_loss + sd_loss.to(ss_loss.dtype)), perm


# --------------------------------------------------------------------------- A2PIT
class A2PITBrain(_CountingTestStage, SeparationBrain):
    """Auxiliary autoencoding PIT (Luo and Mesgarani, 2020), the paper's A2PIT comparison.

    The separator has ``num_outputs`` outputs (the largest number of
    speakers). uPIT runs over all of them, the outputs left without a speaker
    being trained towards the mixture itself (autoencoding), so an item with
    ``K`` speakers has ``num_outputs - K`` mixture targets. At inference an
    output is a speaker when its SI-SNR against the mixture is below
    ``a2pit_threshold_db`` (:func:`a2pit_select`; at least one is kept).
    Validation scores the speakers only.
    """

    def count_rule(self):
        """The selection rule, in words."""
        return f"outputs with SI-SNR to the mixture < {self.hparams.a2pit_threshold_db} dB (at least one)"

    def max_count(self):
        """The number of outputs."""
        return int(self.hparams.num_outputs)

    def training_targets(self, outputs):
        """The speakers, then the mixture for every output left without one: ``([B, T, N], all True)``."""
        targets, mask = outputs.targets, outputs.source_mask
        n_out = outputs.estimates.shape[-1]
        if targets.shape[-1] > n_out:
            raise ValueError(f"A2PIT has {n_out} outputs but a training item has {targets.shape[-1]} speakers")
        pad = n_out - targets.shape[-1]
        targets = F.pad(targets, (0, pad))
        mask = F.pad(mask, (0, pad))
        full = torch.where(mask[:, None, :], targets, outputs.mix.unsqueeze(-1).to(targets.dtype))
        return full, torch.ones_like(mask)

    def pit_loss(self, outputs):
        """uPIT over the speakers and the mixture targets."""
        targets, mask = self.training_targets(outputs)
        return pit_si_snr_loss(outputs.estimates, targets, source_mask=mask, lengths=outputs.lengths)

    @torch.no_grad()
    def separate_counted(self, batch, oracle):
        """The outputs A2PIT keeps, least mixture-like first."""
        estimates, _ = self.separate(batch.mix)
        order, counts = a2pit_select(
            estimates,
            batch.mix,
            self.hparams.a2pit_threshold_db,
            lengths=batch.lengths,
            oracle_counts=batch.n_sources if oracle else None,
        )
        speakers = estimates.gather(-1, order[:, None, :].expand(-1, estimates.shape[1], -1))
        return speakers, counts, None, torch.zeros_like(counts, dtype=torch.bool)  # a threshold: no cap

    @torch.no_grad()
    def separate_speakers(self, mix, **conditioning):
        """The kept outputs ``[B, T, max count]`` (zeros past an item's count); no noise output."""
        speakers, counts, *_ = self.separate_counted(_MixOnly(mix), oracle=False)
        keep = torch.arange(speakers.shape[-1], device=mix.device)[None, :] < counts[:, None]
        return (speakers * keep[:, None, :])[..., : int(counts.max())], None
