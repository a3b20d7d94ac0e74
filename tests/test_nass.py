"""NASS: noise-speaker, fixed noise slot, contrastive loss wiring, noise rule, recipes, parameter counts."""

import csv

import pytest
import soundfile
import speechbrain as sb
import torch
from conftest import run_recipe_cmd
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.brain import SeparationOutputs
from modules.data import collate
from modules.losses import apply_perm, pit_si_snr_loss
from modules.metrics import si_snr
from modules.models import MaskingSeparator, PatchSampler
from modules.nass import NASSBrain, pick_noise_output
from modules.recipe import REPO_ROOT, lift_training_block

NASS_HPARAMS = {
    "sample_rate": 8000,
    "noise_speaker": True,
    "noise_slot": "pit",
    "pcl_direction": "s2n",
    "pcl_weight": 2.0,
    "pcl_patches": 16,
    "pcl_tau": 0.07,
    "pcl_mask_same_position": True,
    "pcl_before_threshold": True,
}


def nass_brain(n_spks=2, patch="bin", **overrides):
    hparams = {**NASS_HPARAMS, **overrides}
    torch.manual_seed(0)
    n_masks = n_spks + int(hparams["noise_speaker"])
    separator = MaskingSeparator(
        Encoder(kernel_size=16, out_channels=8),
        MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=n_masks),
        Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
    )
    modules = {"separator": separator, "patch_sampler": PatchSampler(patch=patch, in_channels=8, features=16)}
    brain = NASSBrain(modules, hparams=hparams, run_opts={"device": "cpu"})
    brain.check_nass_hparams()
    return brain


def batch_of(n=2, length=1600, seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        s1, s2, noise = (torch.randn(length, generator=gen) for _ in range(3))
        items.append({"id": f"x{i}", "mix_sig": s1 + s2 + noise, "s1_sig": s1, "s2_sig": s2, "noise_sig": noise})
    return collate(items)


def outputs_of(estimates, targets, noise):
    """Brain outputs for hand-made signals (full-length items, every source real)."""
    batch = collate([{"id": str(i), "mix_sig": targets[i].sum(-1) + noise[i]} for i in range(targets.shape[0])])
    return SeparationOutputs(
        estimates=estimates,
        targets=targets,
        source_mask=torch.ones(targets.shape[0], targets.shape[2], dtype=torch.bool),
        noise=noise,
        noise_mask=torch.ones(targets.shape[0], dtype=torch.bool),
        lengths=torch.full((targets.shape[0],), targets.shape[1]),
        mix=targets.sum(-1) + noise,
        batch=batch,
    )


def test_noise_is_an_ordinary_source_under_pit():
    brain = nass_brain(pcl_direction="none")
    outputs = brain.compute_forward(batch_of(), sb.Stage.TRAIN)
    targets, mask = brain.training_targets(outputs)
    assert targets.shape[-1] == 3 and bool(mask.all())
    torch.testing.assert_close(targets[..., 2], outputs.noise)
    loss = brain.compute_objectives(outputs, None, sb.Stage.TRAIN)
    expected, perm = pit_si_snr_loss(outputs.estimates, targets)
    torch.testing.assert_close(loss, expected.mean())
    assert torch.equal(outputs.perm, perm)


def test_fixed_noise_slot_uses_pit_over_speakers_only():
    brain = nass_brain(noise_slot="fixed", pcl_direction="none")
    torch.manual_seed(1)
    targets = torch.randn(3, 1000, 3)  # s1, s2, noise
    estimates = targets[..., [2, 0, 1]] + 0.1 * torch.randn(3, 1000, 3)  # noise in slot 0: not allowed to move
    outputs = outputs_of(estimates, targets[..., :2], targets[..., 2])
    loss, perm = brain.pit_loss(outputs)
    assert (perm[:, 2] == 2).all()  # the noise always comes from the last output
    spk_loss, spk_perm = pit_si_snr_loss(estimates[..., :2], targets[..., :2])
    noise_loss = -si_snr(estimates[..., 2:], targets[..., 2:])[:, 0]
    torch.testing.assert_close(loss.double(), (2 * spk_loss.double() + noise_loss) / 3, rtol=1e-5, atol=1e-5)
    assert torch.equal(perm[:, :2], spk_perm)


@pytest.mark.parametrize("patch", ["bin", "frame"])
def test_contrastive_loss_reaches_masker_and_sampler(patch):
    brain = nass_brain(patch=patch)
    outputs = brain.compute_forward(batch_of(), sb.Stage.TRAIN)
    loss = brain.compute_objectives(outputs, None, sb.Stage.TRAIN)
    aux = brain.auxiliary_loss(outputs, None)
    pcl_only = aux.per_item
    assert pcl_only.shape == (2,) and bool((pcl_only > 0).all())  # per item, added before the threshold
    pcl_only.sum().backward()
    separator = brain.modules.separator
    for name, module in (
        ("masker", separator.masker),
        ("encoder", separator.encoder),
        ("sampler", brain.modules.patch_sampler),
    ):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert loss.requires_grad


def test_contrastive_term_before_or_after_the_threshold():
    """Authors: lambda * PCL joins each item's loss before the -30 dB threshold; the option adds the mean after."""
    brain = nass_brain(threshold_byloss=True, threshold=0.0)
    outputs = brain.compute_forward(batch_of(), sb.Stage.TRAIN)
    per_item, perm = brain.pit_loss(outputs)
    outputs.perm = perm
    torch.manual_seed(5)
    pcl = brain.auxiliary_loss(outputs, None).per_item.detach()  # [B], lambda included
    # a threshold between item 0's SI-SNR loss and its loss with the contrastive term
    per_item = per_item.detach()
    threshold = float(per_item[0]) + 0.5 * float(pcl[0])
    brain.hparams.threshold = threshold
    total = per_item + pcl
    kept = total > threshold
    torch.manual_seed(5)
    loss = brain.compute_objectives(outputs, None, sb.Stage.TRAIN)
    torch.testing.assert_close(loss.detach(), total[kept].mean())
    assert bool(kept[0])  # item 0 is kept because of its contrastive term
    brain.hparams.pcl_before_threshold = False
    torch.manual_seed(5)
    after = brain.compute_objectives(outputs, None, sb.Stage.TRAIN).detach()
    kept_after = (per_item > threshold).float()
    assert not bool(kept_after[0])
    expected = (per_item * kept_after).sum() / kept_after.sum().clamp(min=1) + pcl.mean()
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-4)


def test_noise_output_never_enters_the_speaker_metrics():
    brain = nass_brain(pcl_direction="none")
    torch.manual_seed(2)
    targets, noise = torch.randn(2, 2000, 2), torch.randn(2, 2000)
    good = torch.cat([targets + 0.1 * torch.randn_like(targets), noise[..., None]], -1)
    bad_noise = torch.cat([good[..., :2], torch.randn(2, 2000, 1)], -1)
    scores = []
    for estimates in (good, bad_noise):
        outputs = outputs_of(estimates, targets, noise)
        outputs.perm = brain.pit_loss(outputs)[1]
        scores.append([brain.test_metrics(brain.item_outputs(outputs, i)) for i in range(2)])
    for i in range(2):
        for metric in ("si-snr", "si-snr_i", "sdr", "sdr_i"):
            assert scores[0][i][metric] == pytest.approx(scores[1][i][metric], abs=1e-6)
        assert scores[0][i]["noise_si-snr"] > 15 and scores[1][i]["noise_si-snr"] < 0
    good_outputs = outputs_of(good, targets, noise)
    good_outputs.perm = brain.pit_loss(good_outputs)[1]
    expected = si_snr(apply_perm(good, good_outputs.perm)[..., :2], targets).mean(-1)
    assert [scores[0][i]["si-snr"] for i in range(2)] == pytest.approx(expected.tolist(), abs=1e-4)


def test_inference_uses_the_slot():
    mix = torch.randn(2, 1600)
    fixed = nass_brain(noise_slot="fixed", pcl_direction="none")
    estimates, _ = fixed.separate(mix)
    speakers, noise = fixed.separate_speakers(mix)
    torch.testing.assert_close(noise, estimates[..., 2])
    torch.testing.assert_close(speakers, estimates[..., :2])

    pit = nass_brain(pcl_direction="none")
    estimates, _ = pit.separate(mix)
    speakers, noise = pit.separate_speakers(mix)
    picked = pick_noise_output(estimates, 8000)
    for b in range(2):
        torch.testing.assert_close(noise[b], estimates[b, :, picked[b]])
        others = [i for i in range(3) if i != picked[b]]
        torch.testing.assert_close(speakers[b], estimates[b][:, others])


def test_noise_rule_on_true_mini_wham_signals(mini_root):
    """The rule picks the true noise among (s1, s2, noise) of the mini WHAM! test set."""
    folder = mini_root["wham"] / "wav8k" / "min" / "tt"
    names = sorted(p.name for p in (folder / "mix_both").glob("*.wav"))
    right = 0
    for name in names:
        sigs = [torch.tensor(soundfile.read(folder / d / name, dtype="float32")[0]) for d in ("s1", "noise", "s2")]
        right += int(pick_noise_output(torch.stack(sigs, -1)[None], 8000)[0] == 1)
    assert right == len(names)


def test_bad_switches_are_rejected():
    with pytest.raises(ValueError, match="noise_slot"):
        nass_brain(noise_slot="last")
    with pytest.raises(ValueError, match="pcl_direction"):
        nass_brain(pcl_direction="sideways")
    with pytest.raises(ValueError, match="needs the noise-speaker"):
        nass_brain(noise_speaker=False)
    brain = nass_brain(pcl_direction="none")
    brain.hparams.noise_speaker = False  # the masker still predicts 3 masks
    with pytest.raises(ValueError, match="num_masks"):
        brain.compute_objectives(brain.compute_forward(batch_of(), sb.Stage.TRAIN), None, sb.Stage.TRAIN)


# NASS paper, Table 3 (NASS rows), millions of parameters
PAPER_NASS = {("convtasnet", 2): 6.8, ("convtasnet", 3): 7.0, ("dprnn", 2): 14.9, ("dprnn", 3): 15.0,
              ("sepformer", 2): 25.9, ("sepformer", 3): 26.1}  # fmt: skip


def separator_params(method, backbone, tmp_path, **overrides):
    name = f"{backbone}_nass.yaml" if method == "nass" else f"{backbone}.yaml"
    with open(f"{REPO_ROOT}/recipes/LibriMix/{method}/hparams/{name}") as f:
        hp = load_hyperpyyaml(f, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "o"), **overrides})
    hp = lift_training_block(hp)
    return sum(p.numel() for p in hp["modules"]["separator"].parameters()) / 1e6, hp


# Upstream's Conv-TasNet (6.58M / 6.65M, 3.2 % / 3.6 % under the paper's 6.8M / 6.9M baselines)
# gains 0.066M per extra mask, while the paper's rounded figures grow by 0.1M for the 3-speaker
# NASS model: ours is 6.71M against 7.0M, 4.1 % under. The one known exception, see README.
TOLERANCE = {("convtasnet", 3): 0.045}


@pytest.mark.parametrize("backbone, n_spks", sorted(PAPER_NASS))
def test_full_size_nass_parameter_counts(tmp_path, backbone, n_spks):
    nass, hp = separator_params("nass", backbone, tmp_path, num_spks=n_spks)
    base, _ = separator_params("baseline", backbone, tmp_path, num_spks=n_spks)
    assert 0 < nass - base < 0.1
    assert nass == pytest.approx(PAPER_NASS[(backbone, n_spks)], rel=TOLERANCE.get((backbone, n_spks), 0.04))
    # the patch sampler is training-only (not part of the deployed separator): the authors' 3x3 conv front end
    # (2 x 10) and MLP 1 -> 256 -> 256
    assert sum(p.numel() for p in hp["modules"]["patch_sampler"].parameters()) == 2 * 10 + 2 * 256 + 256 * 256 + 256


NASS_CASES = [
    ("WHAM", "sepformer_nass.yaml", ()),
    ("WHAM", "convtasnet_nass.yaml", ()),
    ("WHAM", "dprnn_nass.yaml", ()),
    ("LibriMix", "sepformer_nass.yaml", ()),
    ("LibriMix", "convtasnet_nass.yaml", ("--num_spks=3",)),
    ("LibriMix", "dprnn_nass.yaml", ()),
    ("WHAM", "convtasnet_nass.yaml", ("--noise_slot=fixed", "--pcl_direction=both")),
    ("WHAM", "convtasnet_nass.yaml", ("--noise_speaker=False", "--pcl_direction=none")),
]


@pytest.mark.parametrize(
    "dataset, hparams, extra", NASS_CASES, ids=[f"{d}-{h}-{'-'.join(e)}" for d, h, e in NASS_CASES]
)
def test_nass_recipe_runs(mini_root, tmp_path, dataset, hparams, extra):
    out = tmp_path / "out"
    run_recipe_cmd(dataset, "nass", f"hparams/{hparams}", mini_root[dataset.lower()], out, *extra, "--pcl_patches=32")
    with open(out / "test_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[-1]["snt_id"] == "avg"
    noise_speaker = "--noise_speaker=False" not in extra
    assert ("noise_si-snr" in rows[0]) == noise_speaker
    assert ("noise_rule_correct" in rows[0]) == (noise_speaker and "--noise_slot=fixed" not in extra)
    first = rows[0]["snt_id"]
    audio = {p.name for p in (out / "audio").iterdir()}
    assert (f"{first}_noise_hat.wav" in audio) == noise_speaker
    assert f"{first}_spectrograms.png" in audio
    n_spks = 3 if "--num_spks=3" in extra else 2
    assert {f"{first}_s{i}_hat.wav" for i in range(1, n_spks + 1)} <= audio


def test_separate_file_writes_speakers_and_noise(tmp_path):
    brain = nass_brain(noise_slot="fixed", pcl_direction="none")
    path = tmp_path / "mixture.wav"
    soundfile.write(path, torch.randn(1600).numpy() * 0.1, 8000)
    written = brain.separate_file(str(path), str(tmp_path / "out"))
    assert [p.split("/")[-1] for p in written] == ["mixture_s1.wav", "mixture_s2.wav", "mixture_noise.wav"]
    data, rate = soundfile.read(written[-1])
    _, noise = brain.separate_speakers(torch.tensor(soundfile.read(path, dtype="float32")[0])[None])
    assert rate == 8000 and data.shape == (1600,)
    assert abs(data - noise[0].numpy()).max() < 1e-3  # the fixed slot's noise, as written


def test_separate_command_uses_the_trained_run(mini_root, tmp_path):
    """`train.py <yaml> --separate FILE`: best checkpoint of the run, no references, noise from its slot."""
    import subprocess
    import sys

    from conftest import REPO, TINY

    out = tmp_path / "out"
    common = ["hparams/convtasnet_nass.yaml", f"--output_folder={out}", f"--overrides_file={TINY}", "--device=cpu"]
    run_recipe_cmd("WHAM", "nass", common[0], mini_root["wham"], out, "--noise_slot=fixed", "--N_epochs=1")
    mixture = next((mini_root["wham"] / "wav8k" / "min" / "tt" / "mix_both").glob("*.wav"))
    cmd = [sys.executable, "recipes/WHAM/nass/train.py", *common, "--noise_slot=fixed", "--separate", str(mixture)]
    proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.name for p in (out / "separated").iterdir())
    assert written == sorted(f"{mixture.stem}_{n}.wav" for n in ("s1", "s2", "noise"))

    untrained = [sys.executable, "recipes/WHAM/nass/train.py", *common[:1], f"--output_folder={tmp_path / 'none'}",
                 "--device=cpu", "--separate", str(mixture)]  # fmt: skip
    proc = subprocess.run(untrained, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: no trained checkpoint")


def test_separate_file_takes_another_sample_rate(tmp_path):
    """A 16 kHz recording into an 8 kHz model: resampled in, written back at 16 kHz, same length."""
    brain = nass_brain(noise_slot="fixed", pcl_direction="none")
    path = tmp_path / "wideband.wav"
    soundfile.write(path, 0.1 * torch.randn(3200).numpy(), 16000)
    written = brain.separate_file(str(path), str(tmp_path / "out"))
    assert len(written) == 3
    for file in written:
        info = soundfile.info(file)
        assert (info.samplerate, info.frames) == (16000, 3200)
