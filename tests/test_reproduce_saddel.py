"""SADDEL's Fig. 2 (per-channel SI-SNR degradation, noisy - clean version): the measurement against a float64
reference, its registry rows, and ``python -m modules.reproduce run SADDEL:fig2 --tiny`` then ``collect``."""

import csv
import json

import pytest
import torch

from modules.data import collate
from modules.reproduce import load_rows, main, select
from modules.saddel import SADDELBrain

#: The paper's means (section 4.4's text), channel -> scenario -> dB.
PAPER_FIG2 = {"ch1": {"2sp+n": -3.4822, "3sp+n": -2.3738}, "ch2": {"2sp+n": -3.9743, "3sp+n": -3.8146}}


def _si_snr64(estimate, reference):
    """SI-SNR (dB) of two 1-D signals in float64, the textbook formula (zero mean, projection)."""
    e = estimate.double() - estimate.double().mean()
    r = reference.double() - reference.double().mean()
    target = (e @ r) / (r @ r) * r
    return float(10 * torch.log10(target.square().sum() / (e - target).square().sum()))


def _reference_channels(estimates, sources):
    """Channel 1 and 2 SI-SNR of one output pair ``[T, 2]`` under the best one-and-rest assignment (a loop)."""
    best = None
    for i in range(sources.shape[-1]):
        rest = sum(sources[:, k] for k in range(sources.shape[-1]) if k != i)
        one, other = _si_snr64(estimates[:, 0], sources[:, i]), _si_snr64(estimates[:, 1], rest)
        if best is None or one + other > best[0] + best[1]:
            best = (one, other)
    return best


class _FilterSeparator(torch.nn.Module):
    """A stand-in one-and-rest separator: a random FIR filter of the input, and the input minus it.

    Its outputs are correlated with the sources (SI-SNR of a few dB, not the -50 dB of an untrained
    Conv-TasNet, where the scores' epsilon shows), and it is deterministic.
    """

    def __init__(self, taps=9, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.filter = torch.nn.Parameter(torch.randn(1, 1, taps, generator=gen) / taps**0.5)

    def forward(self, mix):
        one = torch.nn.functional.conv1d(mix[:, None], self.filter, padding=self.filter.shape[-1] // 2)[:, 0]
        return torch.stack([one, mix - one], -1), {"flag_logit": torch.zeros(mix.shape[0])}


def _brain():
    hparams = {"sample_rate": 8000, "max_steps": 4, "stop_rule": "flag", "flag_threshold": 0.5, "figure2": True}
    brain = SADDELBrain({"separator": _FilterSeparator()}, hparams=hparams, run_opts={"device": "cpu"})
    brain.modules.eval()
    return brain


def _items(seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for k, (scenario, n_spk, noisy) in enumerate([("1sp+n", 1, True), ("2sp", 2, False), ("2sp+n", 2, True),
                                                  ("3sp+n", 3, True), ("3sp+n", 3, True)]):  # fmt: skip
        n = 1600 - 120 * k  # different lengths: the batch is padded
        sources = [torch.randn(n, generator=gen) * (1 + j) for j in range(n_spk)]
        item = {"id": f"m{k}", "scenario": scenario, **{f"s{j + 1}_sig": s for j, s in enumerate(sources)}}
        item["mix_sig"] = sum(sources)
        if noisy:
            item["noise_sig"] = 0.7 * torch.randn(n, generator=gen)
            item["mix_sig"] = item["mix_sig"] + item["noise_sig"]
        items.append(item)
    return items


def test_figure2_channels_match_a_float64_loop_reference():
    """Per noisy multi-speaker item: each channel's SI-SNR on the clean and the noisy version (both against the clean
    references, best one-and-rest assignment per version) and their difference, as a float64 loop computes them;
    no Fig. 2 metrics for a clean or a one-speaker item."""
    brain, items = _brain(), _items()
    batch = collate(items)
    for index, item in enumerate(items):
        with torch.no_grad():
            metrics = brain.extra_test_metrics(batch, index)
        if item["scenario"] not in ("2sp+n", "3sp+n"):
            assert metrics == {}, item["scenario"]
            continue
        sources = torch.stack([v for k, v in sorted(item.items()) if k.startswith("s") and k.endswith("_sig")], -1)
        clean = sources.sum(-1)
        with torch.no_grad():
            for name, mixture in (("clean", clean), ("noisy", clean + item["noise_sig"])):
                estimates = brain.modules.separator(mixture[None])[0][0]
                ch1, ch2 = _reference_channels(estimates, sources)
                assert metrics[f"fig2_ch1_{name}"] == pytest.approx(ch1, abs=2e-3)
                assert metrics[f"fig2_ch2_{name}"] == pytest.approx(ch2, abs=2e-3)
        for ch in ("ch1", "ch2"):
            assert metrics[f"fig2_{ch}_degradation"] == pytest.approx(
                metrics[f"fig2_{ch}_noisy"] - metrics[f"fig2_{ch}_clean"], abs=1e-9
            )
    brain.hparams.figure2 = False
    assert brain.extra_test_metrics(batch, 3) == {}  # off: nothing measured


def test_fig2_rows_share_table_1s_run_and_carry_the_papers_means():
    """The two rows (one per channel) are runnable with Table 1's SADDEL command: the same run fills both."""
    rows = load_rows()
    fig2 = select(rows, "SADDEL:fig2")
    assert {r.label for r in fig2} == {"SADDEL channel 1", "SADDEL channel 2"}
    table1 = next(r for r in select(rows, "SADDEL:1") if r.label == "SADDEL")
    for row in fig2:
        assert row.run is not None, row.reason
        assert row.run.key() == table1.run.key()
        channel = "ch1" if row.label.endswith("1") else "ch2"
        assert row.part["metric"] == f"fig2_{channel}_degradation"
        assert row.spec["paper"] == PAPER_FIG2[channel]
        assert row.spec["match"]["figure2"] is True  # a run without the measurement does not fill it


@pytest.mark.slow
def test_run_tiny_fig2_then_collect_fills_every_row(tmp_path, capsys):
    """SADDEL Fig. 2 end to end on the mini WSJ0-mix + MUSAN that run --tiny writes (one system, both stages), then
    collected: both rows, both scenarios filled with the run's per-scenario means; a rerun runs nothing."""
    results = tmp_path / "results"
    argv = ["run", "SADDEL:fig2", "--tiny", "--seeds", "1", "--results", str(results)]
    assert main(argv) == 0
    assert main(argv) == 0
    rerun = capsys.readouterr().out.split("1 of 1 runs finished")[1]
    assert rerun.count("[done]") == 1 and "[run]" not in rerun
    assert main(["collect", "SADDEL:fig2", str(results), "--output_folder", str(tmp_path / "table")]) == 0
    with open(tmp_path / "table" / "table.csv", newline="") as f:
        lines = {line["row"]: line for line in csv.DictReader(f)}
    assert set(lines) == {"SADDEL channel 1", "SADDEL channel 2"}
    run = results / "WSJ0Mix" / "saddel" / "saddel" / "1" / "unrolled"
    summary = json.loads((run / "test_summary.json").read_text())
    with open(run / "figure2_degradation.csv", newline="") as f:
        per_item = list(csv.DictReader(f))
    for label, line in lines.items():
        channel = "ch1" if label.endswith("1") else "ch2"
        for scenario in ("2sp+n", "3sp+n"):
            assert line[f"{scenario} measured"] != "missing" and line[f"{scenario} runs"] == "1", line
            values = [float(r[f"fig2_{channel}_degradation"]) for r in per_item if r["scenario"] == scenario]
            assert values and float(line[f"{scenario} measured"]) == pytest.approx(sum(values) / len(values), abs=1e-3)
            mean = summary["scenarios"][scenario][f"fig2_{channel}_degradation"]
            assert float(line[f"{scenario} measured"]) == pytest.approx(mean, abs=1e-3)
