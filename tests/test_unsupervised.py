"""MixCycle's remix step against a loop reference; the MixIT / MixCycle Brain's training step; tiny recipe runs."""

import csv

import pytest
import speechbrain as sb
import torch

from modules.data import collate
from modules.losses import mixit_loss, snr_pit_loss
from modules.training import EpochCounter
from modules.unsupervised import UnsupervisedBrain, group_outputs, mixcycle_remix, mixture_of_mixtures


def ref_remix(estimates, swaps):
    """Loop reference of the MixCycle code's shuffle: per item a swap, then pairs exchange their first sources."""
    batch = estimates.shape[0]
    shuffled = [estimates[i].flip(-1) if swaps[i] else estimates[i] for i in range(batch)]
    targets = []
    for i in range(batch):
        partner = i + 1 if i % 2 == 0 else i - 1
        if partner >= batch:  # last item of an odd batch: the one before it
            partner = i - 1
        targets.append(torch.stack([shuffled[partner][:, 0], shuffled[i][:, 1]], dim=-1))
    return torch.stack(targets)


@pytest.mark.parametrize("batch", [2, 4, 5])
def test_mixcycle_remix_matches_the_loop_reference(batch):
    estimates = torch.randn(batch, 50, 2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(batch)
    remixed, targets, lengths = mixcycle_remix(estimates, generator=gen)
    swaps = (torch.rand(batch, generator=torch.Generator().manual_seed(batch)) < 0.5).tolist()
    expected = ref_remix(estimates, swaps)
    assert lengths is None and torch.equal(targets, expected) and torch.equal(remixed, expected.sum(-1))
    if batch % 2 == 0:  # every estimate is used exactly once, and no item keeps both of its own
        used = sorted(map(tuple, targets.transpose(1, 2).reshape(-1, 50).tolist()))
        assert used == sorted(map(tuple, estimates.transpose(1, 2).reshape(-1, 50).tolist()))
        for i in range(batch):
            own = {tuple(estimates[i, :, k].tolist()) for k in range(2)}
            assert {tuple(targets[i, :, k].tolist()) for k in range(2)} != own


def test_remix_masks_padding_and_pairs_lengths():
    estimates = torch.ones(2, 6, 2)
    remixed, _, lengths = mixcycle_remix(estimates, lengths=torch.tensor([6, 3]))
    assert lengths.tolist() == [6, 6]
    assert sorted(remixed[:, 3:].sum(1).tolist()) == [3.0, 3.0]  # the short item's estimates are zero past 3
    with pytest.raises(ValueError, match="at least 2"):
        mixcycle_remix(torch.ones(1, 6, 2))
    with pytest.raises(ValueError, match="two estimates"):
        mixcycle_remix(torch.ones(2, 6, 3))


class Gains(torch.nn.Module):
    """A separator that scales the mixture by one learned gain per output (enough to test the Brain's step)."""

    def __init__(self, n_out):
        super().__init__()
        self.gains = torch.nn.Parameter(torch.linspace(0.2, 0.8, n_out))

    def forward(self, mix):
        return mix[..., None] * self.gains, None


def brain(method, n_out, **hparams):
    hparams = {"unsupervised_method": method, "sample_rate": 8000, "epoch_counter": EpochCounter(limit=1), **hparams}
    return UnsupervisedBrain(
        {"separator": Gains(n_out)}, opt_class=lambda p: torch.optim.SGD(p, lr=0.1), hparams=hparams,
        run_opts={"device": "cpu"},
    )  # fmt: skip


def mixtures(n=4, samples=400):
    gen = torch.Generator().manual_seed(0)
    return collate([{"id": str(i), "mix_sig": torch.randn(samples, generator=gen)} for i in range(n)])


def test_mixit_step_scores_mixtures_of_mixtures():
    b = brain("mixit", 4)
    batch = mixtures()
    outputs = b.compute_forward(batch, sb.Stage.TRAIN)
    mom, pairs, _ = mixture_of_mixtures(batch.mix, batch.lengths)
    assert outputs.estimates.shape == (2, 400, 4) and torch.equal(outputs.references, pairs)
    loss = b.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    torch.testing.assert_close(loss, mixit_loss(b.modules.separator(mom)[0], pairs)[0].mean())


def test_mixcycle_switches_from_mixpit_to_the_cycle_and_the_first_pass_takes_no_gradient():
    b = brain("mixcycle", 2, mixpit_epochs=1)
    batch = mixtures()
    b.on_stage_start(sb.Stage.TRAIN, epoch=1)
    assert not b.cycling and b.compute_forward(batch, sb.Stage.TRAIN).estimates.shape[0] == 2  # MixPIT: MoMs
    b.on_stage_start(sb.Stage.TRAIN, epoch=2)
    assert b.cycling
    outputs = b.compute_forward(batch, sb.Stage.TRAIN)
    assert outputs.estimates.shape == (4, 400, 2) and not outputs.references.requires_grad
    first = batch.mix[..., None] * torch.tensor([0.2, 0.8])  # the first pass's estimates
    candidates = first.permute(0, 2, 1).reshape(-1, 400)
    for i in range(4):  # each target is one of the first pass's estimates, of another mixture for one of the two
        found = [int((candidates - outputs.references[i, :, c]).abs().amax(-1).argmin()) for c in range(2)]
        assert all(torch.allclose(candidates[k], outputs.references[i, :, c]) for c, k in enumerate(found))
        assert found[0] // 2 != i and found[1] // 2 == i
    loss = b.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    torch.testing.assert_close(loss, snr_pit_loss(outputs.estimates, outputs.references)[0].mean())
    loss.backward()
    assert b.modules.separator.gains.grad is not None
    with pytest.raises(ValueError, match="unsupervised_method"):
        brain("remixit", 2)


def test_a_batch_of_one_mixture_gives_no_update():
    b = brain("mixit", 4)
    b.on_fit_start()
    before = b.modules.separator.gains.detach().clone()
    b.fit_batch(mixtures(n=1))
    assert torch.equal(b.modules.separator.gains, before) and b.skipped_steps == 1
    b.fit_batch(mixtures(n=2))
    assert not torch.equal(b.modules.separator.gains, before)


def test_group_outputs_keeps_every_speaker_non_empty():
    s = torch.randn(2, 300, 4, dtype=torch.float64)
    refs = torch.stack([s[..., 0], s[..., 1] + s[..., 2] + s[..., 3]], dim=-1)
    torch.testing.assert_close(group_outputs(s, refs), refs)
    silent = s.clone()
    silent[..., 1:] = 0  # three silent outputs: one of them still makes the second speaker's group
    grouped = group_outputs(silent, refs)
    assert torch.equal(grouped[..., 0], s[..., 0])


@pytest.mark.parametrize(("yaml", "extra"), [("mixit.yaml", ()), ("mixcycle.yaml", ("--mixpit_epochs=1",))])
def test_recipe_runs_prep_train_test(tmp_path_factory, tmp_path, yaml, extra):
    """recipes/Vox2Mix/unsupervised: prep -> MixIT / MixPIT + cycle -> test, tiny, on a mini Vox2Mix."""
    from conftest import run_recipe_cmd

    from data_prep.mini import make_mini_vox2mix

    root = make_mini_vox2mix(tmp_path_factory.mktemp("vox2mix"), seed=0, n_train=6, n_valid=2, n_test=2)
    out = tmp_path / "run"
    proc = run_recipe_cmd("Vox2Mix", "unsupervised", f"hparams/{yaml}", root / "VoxCeleb2-2Mix", out, *extra)
    with open(out / "test_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    *items, mean = rows  # the last row is the average
    assert len(items) == 2 and all(row["scored"] == "1" for row in items) and mean["scored"] == "2"
    if yaml == "mixcycle.yaml":
        assert (
            "Epoch 1: MixPIT" in proc.stderr + proc.stdout and "Epoch 2: MixCycle's cycle" in proc.stderr + proc.stdout
        )
