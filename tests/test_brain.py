"""SeparationBrain: typed batches, separators of any shape, augmentation, threshold, Brain's own step."""

import math

import pytest
import speechbrain as sb
import torch
from speechbrain.augment.time_domain import SpeedPerturb
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.brain import SeparationBrain, SeparationOutputs, crop_batch, score_separation
from modules.data import collate
from modules.losses import pit_si_snr_loss
from modules.metrics import sdr, si_snr
from modules.models import MaskingSeparator


def tiny_separator(n_masks=2, seed=0):
    torch.manual_seed(seed)
    return MaskingSeparator(
        Encoder(kernel_size=16, out_channels=8),
        MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=n_masks),
        Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    )


class STFTMaskSeparator(torch.nn.Module):
    """A separator that is not encoder/masker/decoder: magnitude masks on an STFT."""

    def __init__(self, n_out=2, n_fft=64):
        super().__init__()
        self.n_fft, self.n_out = n_fft, n_out
        bins = n_fft // 2 + 1
        self.net = torch.nn.Sequential(torch.nn.Linear(bins, 64), torch.nn.ReLU(), torch.nn.Linear(64, bins * n_out))
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, mix):
        spec = torch.stft(mix, self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)  # [B, F, L]
        masks = torch.sigmoid(self.net(spec.abs().transpose(1, 2)))  # [B, L, F * n]
        masks = masks.reshape(*masks.shape[:2], -1, self.n_out).permute(3, 0, 2, 1)  # [n, B, F, L]
        outs = [
            torch.istft(spec * m, self.n_fft, self.n_fft // 4, window=self.window, length=mix.shape[-1]) for m in masks
        ]
        return torch.stack(outs, dim=-1), {"masks": masks}


class EnrolledSeparator(torch.nn.Module):
    """A conditioned separator: one output, gated by a summary of the enrollment utterance."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_separator(n_masks=1)
        self.gate = torch.nn.Linear(2, 1)

    def forward(self, mix, enroll, enroll_lengths):
        valid = torch.arange(enroll.shape[1], device=enroll.device)[None] < enroll_lengths[:, None]
        energy = (enroll.square() * valid).sum(1) / enroll_lengths
        gain = torch.sigmoid(self.gate(torch.stack([energy, energy.sqrt()], dim=-1)))  # [B, 1]
        est, feats = self.inner(mix)
        return est * gain[:, None, :], feats


def make_brain(separator=None, opt_class=None, run_opts=None, modules=None, **hparams):
    hparams = {"sample_rate": 8000, **hparams}
    modules = modules or {"separator": separator or tiny_separator()}
    return SeparationBrain(
        modules, opt_class=opt_class, hparams=hparams, run_opts={"device": "cpu", **(run_opts or {})}
    )


def make_items(lengths=(800,), n_sources=None, noise=True, seed=0, enroll=False):
    gen = torch.Generator().manual_seed(seed)
    n_sources = n_sources or [2] * len(lengths)
    items = []
    for i, (n, c) in enumerate(zip(lengths, n_sources)):
        sources = [torch.randn(n, generator=gen) for _ in range(c)]
        item = {"id": f"item{i}", "mix_sig": sum(sources) if sources else torch.randn(n, generator=gen)}
        for j, s in enumerate(sources):
            item[f"s{j + 1}_sig"] = s
        has_noise = noise if isinstance(noise, bool) else noise[i]
        if has_noise:
            item["noise_sig"] = 0.3 * torch.randn(n, generator=gen)
            item["mix_sig"] = item["mix_sig"] + item["noise_sig"]
        if enroll:
            item["enroll_sig"] = torch.randn(400 + 50 * i, generator=gen)
        items.append(item)
    return items


def make_batch(**kwargs):
    return collate(make_items(**kwargs))


# ----------------------------------------------------------------------------- augmentation


def test_augment_rebuilds_the_mixture_from_perturbed_sources():
    torch.manual_seed(1)
    brain = make_brain(
        use_speedperturb=True,
        speed_perturb=SpeedPerturb(orig_freq=8000, speeds=[95, 105]),
        limit_training_signal_len=True,
        training_signal_len=600,
    )
    batch = make_batch(lengths=(1000, 1000))
    new = brain.augment(batch)
    assert new.mix.shape == (2, 600) and new.sources.shape == (2, 600, 2) and new.noise.shape == (2, 600)
    torch.testing.assert_close(new.mix, new.sources.sum(-1) + new.noise)
    assert (new.lengths <= 600).all()


def test_augment_is_identity_when_disabled():
    brain = make_brain(use_speedperturb=False, limit_training_signal_len=False)
    batch = make_batch()
    assert brain.augment(batch) is batch


def test_speed_perturbation_never_changes_the_enrollment():
    torch.manual_seed(3)
    brain = make_brain(
        use_speedperturb=True,
        speed_perturb=SpeedPerturb(orig_freq=8000, speeds=[90]),
        limit_training_signal_len=True,
        training_signal_len=500,
    )
    batch = make_batch(lengths=(1000, 900), enroll=True)
    new = brain.augment(batch)
    assert new.mix.shape[1] == 500
    assert new.enroll is batch.enroll and torch.equal(new.enroll_lengths, batch.enroll_lengths)


def test_random_crops_are_drawn_per_item_inside_its_real_length():
    items = make_items(lengths=(4000, 1000, 700), noise=True, seed=2)
    batch = collate(items)
    starts = set()
    for seed in range(20):
        cropped = crop_batch(batch, 800, generator=torch.Generator().manual_seed(seed))
        assert cropped.lengths.tolist() == [800, 800, 700]
        for b, item in enumerate(items):
            n = int(cropped.lengths[b])
            mix = item["mix_sig"]
            # the window is a contiguous stretch of the item's own signal, never its padding
            found = [s for s in range(mix.shape[0] - n + 1) if torch.equal(mix[s : s + n], cropped.mix[b, :n])]
            assert found, (b, seed)
            torch.testing.assert_close(cropped.sources[b, :n, 0], item["s1_sig"][found[0] : found[0] + n])
            torch.testing.assert_close(cropped.noise[b, :n], item["noise_sig"][found[0] : found[0] + n])
            if b == 0:
                starts.add(found[0])
        assert (cropped.mix[2, 700:] == 0).all()
    assert len(starts) > 10  # item 0 gets its own start, drawn anew


# -------------------------------------------------------------------------- loss and metrics


def outputs_for(estimates, targets, lengths=None, mask=None):
    batch = collate([{"id": str(i), "mix_sig": torch.zeros(targets.shape[1])} for i in range(targets.shape[0])])
    batch = batch.replace(
        sources=targets,
        source_mask=mask if mask is not None else torch.ones(targets.shape[0], targets.shape[2], dtype=torch.bool),
    )
    batch = batch.replace(supervised=batch.source_mask.any(-1))
    return SeparationOutputs(
        estimates=estimates,
        targets=targets,
        source_mask=batch.source_mask,
        lengths=lengths if lengths is not None else torch.full((targets.shape[0],), targets.shape[1]),
        noise=None,
        noise_mask=None,
        batch=batch,
        mix=targets.sum(-1),
    )


def test_threshold_drops_items_already_separated():
    brain = make_brain(threshold_byloss=True, threshold=-30)
    torch.manual_seed(0)
    targets = torch.randn(2, 1000, 2)
    estimates = targets.clone()
    estimates[0] += 1e-3 * torch.randn(1000, 2)  # about 60 dB: below the -30 dB loss threshold
    estimates[1] += 0.5 * torch.randn(1000, 2)  # about 6 dB
    estimates.requires_grad_(True)
    loss = brain.compute_objectives(outputs_for(estimates, targets), None, sb.Stage.TRAIN)
    per_item, _ = pit_si_snr_loss(estimates, targets)
    torch.testing.assert_close(loss, per_item[1])
    loss.backward()
    assert estimates.grad[0].abs().max() == 0 and estimates.grad[1].abs().max() > 0


def test_batch_entirely_past_the_threshold_leaves_every_weight_unchanged():
    """No optimiser step at all: Adam's momentum from earlier steps must not move the weights."""
    torch.manual_seed(0)
    brain = make_brain(opt_class=lambda params: torch.optim.Adam(params, lr=1e-2), threshold_byloss=True, threshold=-30)
    brain.init_optimizers()
    brain.fit_batch(make_batch(lengths=(800,), seed=1))  # a normal step: Adam now has momentum
    assert brain.optimizer_step == 1
    before = [p.detach().clone() for p in brain.modules.parameters()]

    batch = make_batch(lengths=(800,), seed=2)

    def perfect(mix, **conditioning):  # every item separated far beyond 30 dB: nothing left to learn
        est, feats = brain.modules.separator(mix)
        return batch.sources + 0 * est, feats  # gradients exist (zeros) but must not be applied

    brain.separate = perfect
    loss = brain.fit_batch(batch)
    assert float(loss) == 0
    assert brain.optimizer_step == 1 and brain.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, brain.modules.parameters()))


def test_validation_loss_is_speakers_negative_si_snr():
    brain = make_brain()
    targets = torch.randn(1, 1000, 2)
    estimates = targets.flip(-1) + 0.3 * torch.randn(1, 1000, 2)  # swapped outputs
    outputs = outputs_for(estimates, targets)
    loss = brain.compute_objectives(outputs, None, sb.Stage.VALID)
    assert loss.item() == pytest.approx(-si_snr(estimates.flip(-1), targets).mean().item(), abs=1e-5)


def test_mixed_count_batch_gives_each_item_its_own_pit():
    """Items with 1, 2 and 3 speakers (some with noise) in one batch: each item's PIT over its own sources."""
    torch.manual_seed(0)
    brain = make_brain(separator=tiny_separator(n_masks=3), threshold_byloss=False)
    items = make_items(lengths=(900, 700, 800), n_sources=[1, 2, 3], noise=[True, False, True], seed=4)
    batch = collate(items)
    assert batch.source_mask.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    outputs = brain.compute_forward(batch, sb.Stage.VALID)
    per_item, perm = brain.pit_loss(outputs)
    for b, item in enumerate(items):
        n, c = len(item["mix_sig"]), int(batch.source_mask[b].sum())
        estimates = outputs.estimates[b : b + 1, :n]  # this item's outputs, scored alone
        targets = torch.stack([item[f"s{j + 1}_sig"] for j in range(c)], dim=-1)[None]
        loss_alone, perm_alone = pit_si_snr_loss(estimates, targets)
        torch.testing.assert_close(per_item[b], loss_alone[0], rtol=1e-5, atol=1e-5)
        assert perm[b, :c].tolist() == perm_alone[0].tolist()


def test_training_step_is_brains_own_accumulation_and_clipping():
    """grad_accumulation_factor and max_grad_norm of speechbrain.Brain are honoured."""
    brain = make_brain(
        opt_class=lambda params: torch.optim.SGD(params, lr=1.0),
        run_opts={"grad_accumulation_factor": 2, "max_grad_norm": 1e-3},
    )
    brain.init_optimizers()
    before = [p.detach().clone() for p in brain.modules.parameters()]
    for step in (1, 2):
        brain.step = step
        brain.fit_batch(make_batch(lengths=(800,), seed=step))
        if step == 1:  # accumulating: no update yet
            assert brain.optimizer_step == 0
            assert all(torch.equal(a, p) for a, p in zip(before, brain.modules.parameters()))
    assert brain.optimizer_step == 1
    change = torch.sqrt(sum(((a - p) ** 2).sum() for a, p in zip(before, brain.modules.parameters())))
    assert 0 < change <= 1e-3 * (1 + 1e-4)  # SGD lr=1 moves by the clipped gradient norm


@pytest.mark.parametrize(
    "separator, conditioning, enroll",
    [(STFTMaskSeparator, None, False), (EnrolledSeparator, ["enroll"], True)],
    ids=["stft-mask", "conditioned"],
)
def test_other_separators_train_through_the_same_brain(separator, conditioning, enroll):
    """A model that is not encoder/masker/decoder, and one that takes an enrollment, train and test."""
    torch.manual_seed(0)
    sep = separator()
    brain = make_brain(
        separator=sep,
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        conditioning=conditioning,
    )
    brain.init_optimizers()
    n_src = 1 if enroll else 2
    before = [p.detach().clone() for p in sep.parameters()]
    losses = [float(brain.fit_batch(make_batch(lengths=(800, 800), n_sources=[n_src] * 2, enroll=enroll, seed=s)))
              for s in range(3)]  # fmt: skip
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, p) for a, p in zip(before, sep.parameters()))
    brain.on_stage_start(sb.Stage.TEST)
    brain.hparams.save_audio = False
    brain.evaluate_batch(make_batch(lengths=(700, 600), n_sources=[n_src] * 2, enroll=enroll, seed=9), sb.Stage.TEST)
    assert [r["snt_id"] for r in brain.test_rows] == ["item0", "item1"]
    assert all(r["scored"] == 1 and abs(r["si-snr"]) < 100 for r in brain.test_rows)


def test_conditioning_without_the_input_is_a_clear_error():
    brain = make_brain(separator=EnrolledSeparator(), conditioning=["enroll"])
    with pytest.raises(ValueError, match="conditioned on 'enroll'"):
        brain.compute_forward(make_batch(n_sources=[1]), sb.Stage.VALID)


def test_padded_test_batch_scores_each_item_on_its_own_length():
    brain = make_brain(save_audio=False)
    brain.on_stage_start(sb.Stage.TEST)
    batch = make_batch(lengths=(900, 600), noise=False)
    with torch.no_grad():
        outputs = brain.compute_forward(batch, sb.Stage.TEST)
        brain.compute_objectives(outputs, batch, sb.Stage.TEST)
    brain.record_test_metrics(outputs)
    assert [r["snt_id"] for r in brain.test_rows] == ["item0", "item1"]
    for i, n in enumerate((900, 600)):
        est = brain.speaker_estimates(outputs)[i : i + 1, :n]
        expected = score_separation(est, outputs.targets[i : i + 1, :n], outputs.mix[i : i + 1, :n])
        row = brain.test_rows[i]
        assert [row[k] for k in expected] == pytest.approx([float(v[0]) for v in expected.values()], abs=1e-4)


def test_mixture_only_test_set_writes_separations_not_metrics(tmp_path):
    brain = make_brain(output_folder=str(tmp_path), save_audio=True, epoch_counter=None)
    brain.on_stage_start(sb.Stage.TEST)
    batch = make_batch(lengths=(800, 500), n_sources=[0, 0], noise=False)
    assert batch.sources is None and not batch.supervised.any()
    loss = brain.evaluate_batch(batch, sb.Stage.TEST)
    assert float(loss) == 0
    means = brain.write_test_results()
    assert means == {}
    rows = (tmp_path / "test_results.csv").read_text().splitlines()
    assert rows[0] == "snt_id,scored,reason" and rows[1] == "item0,0,no references (separations written)"
    assert rows[-1] == "avg,0,"
    written = sorted(p.name for p in (tmp_path / "separations").iterdir())
    assert written == ["item0_s1.wav", "item0_s2.wav", "item1_s1.wav", "item1_s2.wav"]
    assert '"n_scored": 0' in (tmp_path / "test_summary.json").read_text()


def test_score_improvements_are_relative_to_the_mixture():
    torch.manual_seed(0)
    ref = torch.randn(1, 4000, 2)
    mix = ref.sum(-1)
    est = ref + 0.1 * torch.randn_like(ref)
    scores = score_separation(est, ref, mix)
    mix_rep = mix.unsqueeze(-1).expand_as(ref)
    assert float(scores["si-snr"][0]) == pytest.approx(si_snr(est, ref).mean().item(), abs=1e-4)
    assert float(scores["si-snr_i"][0]) == pytest.approx(
        (si_snr(est, ref) - si_snr(mix_rep, ref)).mean().item(), abs=1e-4
    )
    assert float(scores["sdr"][0]) == pytest.approx(sdr(est, ref).mean().item(), abs=1e-4)
    assert float(scores["sdr_i"][0]) == pytest.approx((sdr(est, ref) - sdr(mix_rep, ref)).mean().item(), abs=1e-4)


# --------------------------------------------------------------------------- frozen modules


def test_frozen_module_is_bit_identical_out_of_optimiser_and_checkpoint(tmp_path):
    from modules.checkpoints import CrashSafeCheckpointer

    torch.manual_seed(0)
    frozen = torch.nn.Linear(4, 4)

    class Fused(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_separator()

        def forward(self, mix):
            return self.inner(mix)

    sep = Fused()
    checkpointer = CrashSafeCheckpointer(tmp_path / "save")
    brain = SeparationBrain(
        {"separator": sep, "frontend": frozen},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        hparams={"sample_rate": 8000, "frozen_modules": ["frontend"]},
        run_opts={"device": "cpu"},
        checkpointer=checkpointer,
    )
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    brain.init_optimizers()
    optimised = {id(p) for group in brain.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in frozen.parameters())
    assert all(not p.requires_grad for p in frozen.parameters())
    brain.modules.train()
    brain.fit_batch(make_batch(seed=3))
    assert not frozen.training  # kept in eval mode although Brain switched everything to train
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert all(p.grad is None for p in frozen.parameters())
    ckpt = checkpointer.save_checkpoint(meta={"si-snr": 1.0})
    assert "frontend" not in ckpt.paramfiles and "separator" in ckpt.paramfiles


def test_frozen_modules_must_exist():
    with pytest.raises(ValueError, match="frozen_modules"):
        make_brain(frozen_modules=["frontend"])


# --------------------------------------------------------------- faults never poison a run


def test_test_averages_stay_finite_with_a_silent_reference_and_a_nan_output(tmp_path, caplog):
    """One silent reference and one NaN output: means over the others, counts and reasons written."""
    import csv
    import json

    brain = make_brain(output_folder=str(tmp_path), save_audio=False, epoch_counter=None)
    brain.on_stage_start(sb.Stage.TEST)
    items = make_items(lengths=(800, 800, 800), seed=5)
    items[1]["s2_sig"] = torch.zeros(800)  # a silent reference that slipped through preparation
    items[1]["mix_sig"] = items[1]["s1_sig"] + items[1]["noise_sig"]
    for item in items:
        brain.evaluate_batch(collate([item]), sb.Stage.TEST)
    real_separate = brain.separate

    def nan_output(mix, **conditioning):
        est, feats = real_separate(mix, **conditioning)
        return est * float("nan"), feats

    brain.separate = nan_output
    brain.evaluate_batch(collate(make_items(lengths=(800,), seed=6)), sb.Stage.TEST)
    with caplog.at_level("WARNING"):
        means = brain.write_test_results()
    assert all(math.isfinite(v) for v in means.values())
    with open(tmp_path / "test_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_id = {r["snt_id"]: r for r in rows}
    assert by_id["avg"]["scored"] == "2"
    assert rows[1]["scored"] == "0" and rows[1]["reason"].startswith("silent reference s2")
    assert rows[3]["scored"] == "0" and rows[3]["reason"] == "non-finite separator output"
    expected = (float(rows[0]["si-snr"]) + float(rows[2]["si-snr"])) / 2
    assert float(by_id["avg"]["si-snr"]) == pytest.approx(expected, abs=1e-3)
    summary = json.loads((tmp_path / "test_summary.json").read_text())
    assert (summary["n_mixtures"], summary["n_scored"], summary["n_excluded"]) == (4, 2, 2)
    assert "item1 (silent reference s2" in caplog.text and "non-finite separator output" in caplog.text


def test_nonfinite_training_batch_names_the_item_and_the_tensor(caplog):
    torch.manual_seed(0)
    brain = make_brain(opt_class=lambda params: torch.optim.Adam(params, lr=1e-3))
    brain.init_optimizers()
    before = [p.detach().clone() for p in brain.modules.parameters()]
    items = make_items(lengths=(800, 800), seed=7)
    items[1]["id"] = "bad_file_17"
    items[1]["s2_sig"] = items[1]["s2_sig"].clone()
    items[1]["s2_sig"][100:200] = float("nan")
    with caplog.at_level("WARNING"):
        brain.fit_batch(collate(items))
    assert "non-finite target sources in item(s) ['bad_file_17']" in caplog.text
    assert brain.skipped_steps == 1 and brain.optimizer_step == 0
    assert all(torch.equal(a, p) for a, p in zip(before, brain.modules.parameters()))
