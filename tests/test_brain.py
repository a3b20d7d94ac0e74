"""SeparationBrain: augmentation, loss threshold, Brain's own optimisation step, test metrics."""

import pytest
import speechbrain as sb
import torch
from speechbrain.augment.time_domain import SpeedPerturb
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.brain import SeparationBrain, _score
from modules.losses import pit_si_snr_loss
from modules.metrics import sdr, si_snr


def tiny_modules(n_masks=2):
    torch.manual_seed(0)
    return {
        "encoder": Encoder(kernel_size=16, out_channels=8),
        "masknet": MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=n_masks),
        "decoder": Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    }


def make_brain(opt_class=None, run_opts=None, **hparams):
    hparams = {"num_spks": 2, "sample_rate": 8000, **hparams}
    return SeparationBrain(
        tiny_modules(), opt_class=opt_class, hparams=hparams, run_opts={"device": "cpu", **(run_opts or {})}
    )


def make_batch(lengths=(800,), noise=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i, n in enumerate(lengths):
        s1, s2, nz = (torch.randn(n, generator=gen) for _ in range(3))
        item = {"id": f"item{i}", "mix_sig": s1 + s2 + (nz if noise else 0), "s1_sig": s1, "s2_sig": s2}
        if noise:
            item["noise_sig"] = nz
        items.append(item)
    return PaddedBatch(items)


def test_augment_rebuilds_the_mixture_from_perturbed_sources():
    torch.manual_seed(1)
    brain = make_brain(
        use_speedperturb=True,
        speed_perturb=SpeedPerturb(orig_freq=8000, speeds=[95, 105]),
        limit_training_signal_len=True,
        training_signal_len=600,
    )
    mix, _, targets, noise = brain.batch_signals(make_batch(lengths=(1000, 1000)))
    new_mix, new_targets, new_noise = brain.augment(mix, targets, noise)
    assert new_mix.shape == (2, 600) and new_targets.shape == (2, 600, 2) and new_noise.shape == (2, 600)
    torch.testing.assert_close(new_mix, new_targets.sum(-1) + new_noise)
    assert not torch.allclose(new_targets[..., 0], targets[:, : new_targets.shape[1], 0][:, :600])


def test_augment_is_identity_when_disabled():
    brain = make_brain(use_speedperturb=False, limit_training_signal_len=False)
    mix, _, targets, noise = brain.batch_signals(make_batch())
    out = brain.augment(mix, targets, noise)
    assert out[0] is mix and out[1] is targets and out[2] is noise


def outputs_for(estimates, targets):
    return {"estimates": estimates, "targets": targets}


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


def test_threshold_with_every_item_separated_gives_zero_gradient():
    brain = make_brain(threshold_byloss=True, threshold=-30)
    targets = torch.randn(2, 1000, 2)
    estimates = (targets + 1e-4 * torch.randn_like(targets)).requires_grad_(True)
    loss = brain.compute_objectives(outputs_for(estimates, targets), None, sb.Stage.TRAIN)
    loss.backward()
    assert loss.item() == 0 and estimates.grad.abs().max() == 0


def test_validation_loss_is_speakers_negative_si_snr():
    brain = make_brain()
    targets = torch.randn(1, 1000, 2)
    estimates = targets.flip(-1) + 0.3 * torch.randn(1, 1000, 2)  # swapped outputs
    outputs = outputs_for(estimates, targets)
    loss = brain.compute_objectives(outputs, None, sb.Stage.VALID)
    assert loss.item() == pytest.approx(-si_snr(estimates.flip(-1), targets).mean().item(), abs=1e-5)


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


def test_padded_test_batch_scores_each_item_on_its_own_length():
    brain = make_brain(save_audio=False)
    brain.on_stage_start(sb.Stage.TEST)
    batch = make_batch(lengths=(900, 600), noise=False)
    with torch.no_grad():
        outputs = brain.compute_forward(batch, sb.Stage.TEST)
        brain.compute_objectives(outputs, batch, sb.Stage.TEST)
    brain.record_test_metrics(batch, outputs)
    assert [r["snt_id"] for r in brain.test_rows] == ["item0", "item1"]
    for i, n in enumerate((900, 600)):
        est = brain.speaker_estimates(outputs)[i : i + 1, :n]
        expected = _score(est.float(), outputs["targets"][i : i + 1, :n], outputs["mix"][i : i + 1, :n])[0]
        row = brain.test_rows[i]
        assert [row[k] for k in ("si-snr", "si-snr_i", "sdr", "sdr_i")] == pytest.approx(expected.tolist(), abs=1e-4)


def test_score_improvements_are_relative_to_the_mixture():
    torch.manual_seed(0)
    ref = torch.randn(1, 4000, 2)
    mix = ref.sum(-1)
    est = ref + 0.1 * torch.randn_like(ref)
    scores = _score(est, ref, mix)[0]
    mix_rep = mix.unsqueeze(-1).expand_as(ref)
    assert scores[0] == pytest.approx(si_snr(est, ref).mean().item(), abs=1e-4)
    assert scores[1] == pytest.approx((si_snr(est, ref) - si_snr(mix_rep, ref)).mean().item(), abs=1e-4)
    assert scores[2] == pytest.approx(sdr(est, ref).mean().item(), abs=1e-4)
    assert scores[3] == pytest.approx((sdr(est, ref) - sdr(mix_rep, ref)).mean().item(), abs=1e-4)
