"""DIP: frontend (size, masking, fairseq converter), adaptation layer, pretraining and downstream Brains, recipes."""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import speechbrain as sb
import torch
import torchaudio
from conftest import REPO
from speechbrain.lobes.models.dual_path import Encoder

from modules.models.dip import (
    WAV2VEC2_CONV_LAYERS,
    DIPFrontend,
    DIPFusion,
    compute_span_mask,
    conv_geometry,
    fairseq_to_dip_state_dict,
)
from modules.training import EpochCounter

TINY_CONV = [(16, 10, 5), (16, 16, 16)]  # stride 80 (200 frames per second at 16 kHz), as the tiny recipe runs
TINY_FRONTEND = {
    "conv_layers": TINY_CONV,
    "embed_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "ffn_dim": 64,
    "pos_conv_kernel": 4,
    "pos_conv_groups": 2,
    "final_dim": 16,
    "codebook_entries": 8,
}


def tiny_frontend(seed=0, **overrides):
    torch.manual_seed(seed)
    return DIPFrontend(**{**TINY_FRONTEND, **overrides})


# ----------------------------------------------------------------------------- frontend


def test_full_size_parameter_count_and_forward():
    """95.04M parameters: torchaudio's wav2vec2_base (94.37M) plus the pretraining heads, wav2vec 2.0 BASE's 95M."""
    model = DIPFrontend()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = sum(p.numel() for p in torchaudio.models.wav2vec2_base().parameters())
    heads = 768 + (512 * 640 + 640) + 640 * 128 + (256 * 256 + 256) + (768 * 256 + 256)  # mask, q proj, codebook, heads
    assert base == 94_370_944
    assert trainable == base + heads == 95_044_608
    assert abs(trainable / 95e6 - 1) < 0.001
    assert conv_geometry(WAV2VEC2_CONV_LAYERS) == (320, 400)
    assert len(model.encoder.transformer.layers) == 12
    assert model.quantizer.groups == 2 and model.quantizer.num_vars == 320
    assert model.encoder.transformer.pos_conv_embed.kernel_size == 128
    model.eval()
    with torch.no_grad():
        states = model.extract_layers(torch.randn(1, 8000))
    assert states.shape == (13, 1, 24, 768)  # 0.5 s at 16 kHz: 24 frames of 20 ms
    assert torch.isfinite(states).all()


def test_gumbel_temperature_anneals_and_survives_the_state_dict():
    model = tiny_frontend()
    assert model.quantizer.curr_temp == 2.0
    model.set_num_updates(100_000)
    assert model.quantizer.curr_temp == pytest.approx(2.0 * 0.999995**100_000)
    model.set_num_updates(10_000_000)
    assert model.quantizer.curr_temp == 0.5
    other = tiny_frontend(seed=1)
    other.load_state_dict(model.state_dict())
    assert other.num_updates == 10_000_000 and other.quantizer.curr_temp == 0.5


def reference_span_mask(rng, length, mask_prob, span, min_masks=2):
    """fairseq's rule for one utterance, in numpy (no same-count trimming)."""
    count = max(min_masks, int(mask_prob * length / span + rng.random()))
    starts = rng.choice(length - span, count, replace=False)
    mask = np.zeros(length, bool)
    for s in starts:
        mask[s : s + span] = True
    return mask


def runs(row):
    out, n = [], 0
    for v in [*row.tolist(), False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_span_mask_statistics():
    gen = torch.Generator().manual_seed(0)
    length, draws = 400, 600
    mask = compute_span_mask(draws, length, 0.65, 10, same_count=False, generator=gen)
    rng = np.random.default_rng(0)
    reference = np.stack([reference_span_mask(rng, length, 0.65, 10) for _ in range(draws)])
    assert abs(float(mask.float().mean()) - reference.mean()) < 0.01
    assert all(r >= 10 for row in mask for r in runs(row))  # spans of 10 frames, overlapping at most
    # long utterances: about 1 - (1 - 0.065)^10 of the frames are masked (49 %)
    long = compute_span_mask(50, 4000, 0.65, 10, same_count=False, generator=gen)
    assert float(long.float().mean()) == pytest.approx(1 - (1 - 0.065) ** 10, abs=0.02)
    # span starts: as many spans as fairseq draws (0.65 * T / 10 on average), seen on non-overlapping masks
    sparse = compute_span_mask(2000, 400, 0.05, 10, same_count=False, generator=gen)
    n_runs = np.mean([len(runs(row)) for row in sparse])
    assert n_runs == pytest.approx(0.05 * 400 / 10, rel=0.1)  # overlaps are rare at this rate


def test_span_mask_lengths_and_same_count():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([100, 60, 80])
    mask = compute_span_mask(3, 100, lengths=lengths, generator=gen)
    counts = mask.sum(1)
    assert counts.unique().numel() == 1 and int(counts[0]) >= 2
    assert not mask[1, 60:].any() and not mask[2, 80:].any()


def fairseq_state_from(model):
    """A synthetic fairseq checkpoint: fairseq's key names, filled from ``model``'s tensors."""
    sd = {}
    for i, block in enumerate(model.feature_extractor.conv_layers):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = block.conv.weight
    gn = model.feature_extractor.conv_layers[0].layer_norm
    sd["feature_extractor.conv_layers.0.2.weight"], sd["feature_extractor.conv_layers.0.2.bias"] = gn.weight, gn.bias
    proj = model.encoder.feature_projection
    sd["layer_norm.weight"], sd["layer_norm.bias"] = proj.layer_norm.weight, proj.layer_norm.bias
    sd["post_extract_proj.weight"], sd["post_extract_proj.bias"] = proj.projection.weight, proj.projection.bias
    transformer = model.encoder.transformer
    conv = transformer.pos_conv_embed.conv
    sd["encoder.pos_conv.0.weight_g"] = conv.parametrizations.weight.original0
    sd["encoder.pos_conv.0.weight_v"] = conv.parametrizations.weight.original1
    sd["encoder.pos_conv.0.bias"] = conv.bias
    sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"] = (
        transformer.layer_norm.weight,
        transformer.layer_norm.bias,
    )
    for i, layer in enumerate(transformer.layers):
        for name in ("q", "k", "v", "out"):
            lin = getattr(layer.attention, f"{name}_proj")
            sd[f"encoder.layers.{i}.self_attn.{name}_proj.weight"] = lin.weight
            sd[f"encoder.layers.{i}.self_attn.{name}_proj.bias"] = lin.bias
        for ours, theirs in (
            (layer.layer_norm, "self_attn_layer_norm"),
            (layer.feed_forward.intermediate_dense, "fc1"),
            (layer.feed_forward.output_dense, "fc2"),
            (layer.final_layer_norm, "final_layer_norm"),
        ):
            sd[f"encoder.layers.{i}.{theirs}.weight"], sd[f"encoder.layers.{i}.{theirs}.bias"] = ours.weight, ours.bias
    sd["mask_emb"] = model.mask_emb
    sd["quantizer.vars"] = model.quantizer.vars
    sd["quantizer.weight_proj.weight"] = model.quantizer.weight_proj.weight
    sd["quantizer.weight_proj.bias"] = model.quantizer.weight_proj.bias
    for name in ("project_q", "final_proj"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = getattr(model, name).weight, getattr(model, name).bias
    return {k: v.detach().clone() for k, v in sd.items()}


def test_fairseq_checkpoint_converter(tmp_path):
    source = tiny_frontend(seed=3).eval()
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"model": fairseq_state_from(source), "extra_state": {"num_updates": 5}}, path)
    target = tiny_frontend(seed=4).eval()
    wav = torch.randn(2, 3000)
    with torch.no_grad():
        assert not torch.allclose(target.extract_layers(wav), source.extract_layers(wav))
        target.load_fairseq_checkpoint(path)
        torch.testing.assert_close(target.extract_layers(wav), source.extract_layers(wav))
        feats = torch.randn(2, 5, 16)
        torch.testing.assert_close(target.quantizer(feats)["x"], source.quantizer(feats)["x"])
    for name, value in source.state_dict().items():
        if name != "_extra_state":
            assert torch.equal(target.state_dict()[name], value), name
    assert target.loaded_from == str(path)
    # constructing with the path loads it too; unknown keys are an error
    built = DIPFrontend(**TINY_FRONTEND, fairseq_checkpoint=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(built.extract_layers(wav), source.extract_layers(wav))
    with pytest.raises(KeyError, match="no place"):
        fairseq_to_dip_state_dict({"decoder.weight": torch.zeros(1)})


def test_newer_fairseq_weight_norm_keys_and_prefix():
    got = fairseq_to_dip_state_dict(
        {"w2v_model.encoder.pos_conv.0.parametrizations.weight.original0": 1, "w2v_model.mask_emb": 2}
    )
    assert got == {"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0": 1, "mask_emb": 2}


# ----------------------------------------------------------------------------- adaptation layer


def backbone_kernels():
    """Encoder kernel sizes of every file of hparams/backbones/ (stride = kernel // 2), plus the DIP recipes' 32."""
    kernels = set()
    for path in (REPO / "hparams" / "backbones").glob("*.yaml"):
        found = re.search(r"^kernel_size: (\d+)", path.read_text(), flags=re.M)
        if found:
            kernels.add(int(found.group(1)))
    assert kernels, "no backbone kernel found"
    return sorted(kernels | {32})


@pytest.mark.parametrize("kernel", backbone_kernels())
@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_adaptation_frames_line_up_with_the_encoder(kernel, interpolation):
    """Each encoder frame gets the frontend's value at its own centre time, clamped at both ends."""
    stride, field = conv_geometry(TINY_CONV)
    for samples in (1600, 1601, 1619, 4000, 4321):
        encoder = Encoder(kernel_size=kernel, out_channels=4)
        mix_w = encoder(torch.randn(1, samples))
        n_frames = mix_w.shape[-1]
        assert n_frames == (samples - kernel) // (kernel // 2) + 1
        cue_frames = (samples - field) // stride + 1
        centres = torch.arange(cue_frames, dtype=torch.float64) * stride + (field - 1) / 2
        cues = torch.zeros(1, 1, cue_frames, 3, dtype=torch.float64)
        cues[0, 0, :, 0] = centres  # channel 0 carries each frontend frame's centre time
        fusion = DIPFusion(3, 4, encoder_kernel=kernel, layers=[2], num_layers=2, conv_layers=TINY_CONV,
                           interpolation=interpolation).double()  # fmt: skip
        with torch.no_grad():
            fusion.projection.weight.zero_()
            fusion.projection.bias.zero_()
            fusion.projection.weight[0, 0] = 1.0
        out = fusion(torch.zeros(1, 4, n_frames, dtype=torch.float64), cues=cues)
        assert out.shape == (1, 4, n_frames)
        enc_centres = torch.arange(n_frames, dtype=torch.float64) * (kernel // 2) + (kernel - 1) / 2
        want = enc_centres.clamp(float(centres[0]), float(centres[-1]))
        if interpolation == "nearest":
            want = centres[((want - centres[0]) / stride + 0.5).floor().long()]
        torch.testing.assert_close(out[0, 0], want, rtol=0, atol=1e-9)


def test_adaptation_layer_weights_and_errors():
    fusion = DIPFusion(8, 4, encoder_kernel=32, layers="all", num_layers=2, conv_layers=TINY_CONV)
    assert fusion.layer_weights.shape == (3,)
    cues = torch.randn(3, 2, 10, 8)
    with torch.no_grad():
        fusion.layer_weights.copy_(torch.tensor([-1e4, 1e4, -1e4]))  # all weight on state 1
    single = DIPFusion(8, 4, encoder_kernel=32, layers=[1], num_layers=2, conv_layers=TINY_CONV)
    single.projection.load_state_dict(fusion.projection.state_dict())
    torch.testing.assert_close(fusion.adapt(cues, 30), single.adapt(cues[1:2], 30))
    with pytest.raises(ValueError, match="frontend states"):
        fusion.adapt(cues[:2], 30)
    with pytest.raises(ValueError, match="cues"):
        fusion(torch.zeros(2, 4, 30))


# ----------------------------------------------------------------------------- Brains


def tiny_separator(frontend_dim=32, layers="all"):
    from speechbrain.lobes.models.conv_tasnet import MaskNet
    from speechbrain.lobes.models.dual_path import Decoder

    from modules.models import MaskingSeparator

    fusion = DIPFusion(frontend_dim, 8, encoder_kernel=32, layers=layers, num_layers=2, conv_layers=TINY_CONV)
    return MaskingSeparator(
        Encoder(kernel_size=32, out_channels=8),
        MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=2),
        Decoder(in_channels=8, out_channels=1, kernel_size=32, stride=16, bias=False),
        fusion=fusion,
    )


def separation_batch(n=2, length=3200, seed=0):
    from modules.data import collate

    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        s1, s2 = torch.randn(length, generator=gen), torch.randn(length, generator=gen)
        items.append({"id": f"x{i}", "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2})
    return collate(items)


def test_frozen_frontend_is_bit_identical_out_of_the_optimiser_and_gradient_free():
    from modules.dip import DIPBrain

    frontend = tiny_frontend(seed=5)
    frontend.loaded_from = "a pretraining run"
    before = {k: v.clone() for k, v in frontend.state_dict().items() if torch.is_tensor(v)}
    separator = tiny_separator()
    sep_before = [p.detach().clone() for p in separator.parameters()]
    hparams = {"sample_rate": 16000, "frozen_modules": ["frontend"], "frontend_layers": "all", "precision": "fp32",
               "epoch_counter": EpochCounter(limit=1)}  # fmt: skip
    brain = DIPBrain(
        {"separator": separator, "frontend": frontend},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-2),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    brain.on_fit_start()
    optimised = {id(p) for group in brain.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in frontend.parameters()}
    assert {id(p) for p in separator.parameters()} <= optimised
    brain.modules.train()  # as Brain does at each epoch start
    for step in range(3):
        brain.fit_batch(separation_batch(seed=step))
        assert not frontend.training  # dropout and layer drop stay off
    assert all(p.grad is None for p in frontend.parameters())
    cues = brain.conditioning(separation_batch().to("cpu"))["cues"]
    assert cues.shape[0] == 3 and not cues.requires_grad
    for name, value in frontend.state_dict().items():
        if torch.is_tensor(value):
            assert torch.equal(value, before[name]), name
    assert any(not torch.equal(p, q) for p, q in zip(separator.parameters(), sep_before))


def test_downstream_needs_a_frozen_and_pretrained_frontend():
    from modules.dip import DIPBrain

    modules = {"separator": tiny_separator(), "frontend": tiny_frontend()}
    with pytest.raises(ValueError, match="must be frozen"):
        DIPBrain(modules, hparams={"sample_rate": 16000}, run_opts={"device": "cpu"}).check_frontend()
    brain = DIPBrain(
        modules, hparams={"sample_rate": 16000, "frozen_modules": ["frontend"]}, run_opts={"device": "cpu"}
    )
    with pytest.raises(ValueError, match="no pretrained weights"):
        brain.check_frontend()


def test_resampled_test_set_and_separation_without_references():
    from modules.dip import DIPBrain, resample_batch

    brain = DIPBrain(
        {"separator": tiny_separator(layers=[2]), "frontend": tiny_frontend()},
        hparams={"sample_rate": 16000, "frozen_modules": ["frontend"], "frontend_layers": [2],
                 "extra_test_sets": {"realm": {"sample_rate": 8000}}},
        run_opts={"device": "cpu"},
    )  # fmt: skip
    from modules.data import collate

    batch = collate([{"id": "r", "mix_sig": torch.randn(4000)}])
    brain.test_set_name = "realm"
    outputs = brain.compute_forward(batch, sb.Stage.TEST)
    assert outputs.estimates.shape == (1, 8000, 2) and int(outputs.lengths[0]) == 8000
    up = resample_batch(separation_batch(n=1, length=800), 8000, 16000)
    assert up.sources.shape == (1, 1600, 2)
    speakers, noise = brain.separate_speakers(torch.randn(1, 3200))
    assert speakers.shape == (1, 3200, 2) and noise is None


def chirps(n, length, rate, seed):
    """Speech-like structure a contrastive model can learn: gliding harmonics under a syllable envelope."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / rate
    out = []
    for _ in range(n):
        f0 = 100 + 150 * torch.rand((), generator=gen)
        glide = 1 + 0.3 * torch.sin(2 * torch.pi * (0.5 + torch.rand((), generator=gen)) * t)
        phase = 2 * torch.pi * torch.cumsum(f0 * glide, 0) / rate
        voice = sum(torch.sin(k * phase) / k for k in range(1, 6))
        envelope = torch.sin(2 * torch.pi * (3 + 2 * torch.rand((), generator=gen)) * t).clamp(min=0)
        out.append(0.1 * voice * envelope + 0.003 * torch.randn(length, generator=gen))
    return out


def paired_batch():
    from modules.data import collate
    from modules.dip import PairedMixtures

    synthetic = [{"id": f"s{i}", "mix_sig": x} for i, x in enumerate(chirps(3, 12000, 16000, 0))]
    real = [{"id": f"r{i}", "mix_sig": x} for i, x in enumerate(chirps(2, 6000, 8000, 1))]  # 8 kHz: resampled
    pairs = PairedMixtures(synthetic, real, 16000, real_rate=8000, seed=0)
    pairs.set_epoch(1)
    return collate([pairs[i] for i in range(3)])


def test_tiny_pretraining_lowers_its_loss():
    """The Siamese MIC step on fixed mixtures: the loss and its contrastive part fall within 20 updates.

    In-process, tiny frontend, 3 + 3 mixtures of 0.75 s.
    """
    from modules.dip import DIPPretrainBrain

    torch.manual_seed(0)
    frontend = tiny_frontend(seed=6)
    hparams = {
        "sample_rate": 16000, "max_crop": 12.5, "num_negatives": 10, "cue_distractors": 10, "mmd_weight": 10.0,
        "mmd_kernel": "linear", "contrastive_temperature": 0.1, "diversity_weight": 0.1, "penalty_weight": 10.0,
        "epoch_counter": EpochCounter(limit=1),
    }  # fmt: skip
    brain = DIPPretrainBrain(
        {"frontend": frontend}, opt_class=lambda p: torch.optim.AdamW(p, lr=3e-3), hparams=hparams,
        run_opts={"device": "cpu"},
    )  # fmt: skip
    brain.on_fit_start()
    batch = paired_batch()
    assert batch.mix.shape == (3, 12000) and batch.extra["real_sig"][0].shape[1] == 12000  # real resampled to 16 kHz
    brain.modules.train()
    losses, nce = [], []
    for _ in range(20):
        brain._terms, brain._n_terms = {}, 0
        losses.append(float(brain.fit_batch(batch)))
        nce.append(float(brain._terms["nce_real"] + brain._terms["nce_synthetic"]))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert np.mean(nce[-3:]) < np.mean(nce[:3]) - 0.1, nce
    assert frontend.num_updates == 20 and frontend.quantizer.curr_temp == pytest.approx(2 * 0.999995**20)


def test_paired_mixtures_pairing_changes_per_epoch_and_is_deterministic():
    from modules.dip import PairedMixtures

    synthetic = [{"id": f"s{i}", "mix_sig": torch.zeros(2)} for i in range(10)]
    real = [{"id": f"r{i}", "mix_sig": torch.zeros(2)} for i in range(4)]
    pairs = PairedMixtures(synthetic, real, 16000, seed=3)
    pairs.set_epoch(1)
    first = [pairs[i]["real_id"] for i in range(10)]
    assert set(first) == {"r0", "r1", "r2", "r3"} and [pairs[i]["id"] for i in range(10)] == [
        f"s{i}" for i in range(10)
    ]
    pairs.set_epoch(2)
    second = [pairs[i]["real_id"] for i in range(10)]
    pairs.set_epoch(1)
    assert [pairs[i]["real_id"] for i in range(10)] == first != second


# ----------------------------------------------------------------------------- recipes

TINY_FRONTEND_OVERRIDE = (
    "--frontend={conv_layers: [[16, 10, 5], [16, 16, 16]], embed_dim: 32, num_layers: 2, num_heads: 2, "
    "ffn_dim: 64, pos_conv_kernel: 4, pos_conv_groups: 2, final_dim: 16, codebook_entries: 8}"
)
#: Pretraining has no crops or audio to save: its tiny settings (hparams/tiny.yaml is for separation recipes).
TINY_PRETRAIN = [
    "--N_epochs=1", "--precision=fp32", "--num_workers=0", "--ckpt_interval_minutes=0", "--batch_size=3",
    "--grad_accumulation_factor=1", "--min_crop=1.0", "--max_crop=1.0", "--warmup_updates=2", "--num_negatives=10",
    "--cue_distractors=10", TINY_FRONTEND_OVERRIDE,
]  # fmt: skip


def run_pretraining(recipe_file, argv):
    """What a pretraining ``pretrain.py`` does, in this process."""
    from modules.dip import DIPPretrainBrain, build_pretraining_datasets
    from modules.recipe import run_recipe

    return run_recipe(DIPPretrainBrain, recipe_file, argv=argv, dataset_builder=build_pretraining_datasets)


@pytest.fixture(scope="module")
def dip_corpora(tmp_path_factory):
    """Mini LibriMix (16 kHz, min), Vox2Mix, LRS2-2Mix and REAL-M, a few mixtures each."""
    from data_prep.mini import make_mini_librimix, make_mini_lrs2mix, make_mini_realm, make_mini_vox2mix

    root = tmp_path_factory.mktemp("dip_data")
    sizes = {"n_train": 6, "n_valid": 3, "n_test": 2}
    return {
        "librimix": make_mini_librimix(root, seed=0, sample_rates=(16000,), modes=("min",), **sizes),
        "vox2mix": make_mini_vox2mix(root, seed=0, **sizes) / "VoxCeleb2-2Mix",
        "lrs2mix": make_mini_lrs2mix(root, seed=0, **sizes),
        "realm": make_mini_realm(root, seed=0, n_train=3, n_valid=1, n_test=2),
    }


def run_pretrain_cmd(dataset, hparams, out, *extra):
    """``recipes/<dataset>/dip/pretrain.py`` as a user runs it (tiny frontend and settings)."""
    import subprocess
    import sys

    cmd = [sys.executable, f"recipes/{dataset}/dip/pretrain.py", hparams, f"--output_folder={out}", "--device=cpu",
           "--noprogressbar", *TINY_PRETRAIN, *extra]  # fmt: skip
    proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def epochs_logged(out):
    return re.findall(r"epoch: (\d+)", (Path(out) / "train_log.txt").read_text())


@pytest.fixture(scope="module")
def pretrained(dip_corpora, tmp_path_factory):
    """A tiny MIC pretraining run of hparams/mic.yaml (prep -> pretrain), from the command line."""
    out = tmp_path_factory.mktemp("dip_pretrain") / "mic"
    run_pretrain_cmd(
        "LibriMix", "hparams/mic.yaml", out, f"--data_folder={dip_corpora['librimix']}",
        f"--vox2mix_folder={dip_corpora['vox2mix']}",
    )  # fmt: skip
    return out


def test_mic_pretraining_recipe_and_resume(pretrained, dip_corpora, tmp_path):
    assert epochs_logged(pretrained) == ["1"]
    log = (pretrained / "train_log.txt").read_text()
    assert "valid loss" in log and "train mmd" in log and "temperature" in log
    ckpts = list((pretrained / "save").glob("CKPT+*"))
    assert len(ckpts) == 1 and (ckpts[0] / "frontend.ckpt").exists()
    state = torch.load(ckpts[0] / "frontend.ckpt", weights_only=True)
    updates = state["_extra_state"]["num_updates"]
    assert updates >= 1  # the Gumbel temperature's clock is saved with the weights
    # the same command with one more epoch resumes: epoch 2 only, the update count and LR schedule go on
    out = tmp_path / "resumed"
    shutil.copytree(pretrained, out)
    argv = ["hparams/mic.yaml", f"--data_folder={dip_corpora['librimix']}",
            f"--vox2mix_folder={dip_corpora['vox2mix']}", f"--output_folder={out}", "--device=cpu", "--noprogressbar",
            *[a for a in TINY_PRETRAIN if not a.startswith("--N_epochs")], "--N_epochs=2"]  # fmt: skip
    brain = run_pretraining(str(REPO / "recipes/LibriMix/dip/pretrain.py"), argv)
    assert epochs_logged(out) == ["1", "2"]
    assert brain.unwrapped("frontend").num_updates == 2 * updates
    assert brain.hparams.lr_scheduler.current_step == 2 * updates


def test_mpc_pretraining_recipe(dip_corpora, tmp_path):
    """hparams/mpc.yaml, in-process (the same steps as pretrain.py)."""
    out = tmp_path / "mpc"
    argv = ["hparams/mpc.yaml", f"--data_folder={dip_corpora['librimix']}",
            f"--vox2mix_folder={dip_corpora['vox2mix']}", f"--output_folder={out}", "--device=cpu",
            "--noprogressbar", *TINY_PRETRAIN]  # fmt: skip
    brain = run_pretraining(str(REPO / "recipes/LibriMix/dip/pretrain.py"), argv)
    assert brain.hparams.mmd_weight == 0
    info = json.loads((out / "run_info.json").read_text())  # the one runner records every run, a pretraining too
    assert info == {"brain_class": "modules.dip.DIPPretrainBrain", "recipe": "recipes/LibriMix/dip/pretrain.py"}
    assert not list(out.glob("test_results*.csv"))  # its datasets have no test set: no test stage
    assert epochs_logged(out) == ["1"] and "train mmd: 0.00" in (out / "train_log.txt").read_text()


def test_dip_plus_continues_from_a_pretraining_run(dip_corpora, pretrained, tmp_path):
    """recipes/REALM/dip/hparams/pretrain_plus.yaml: REAL-M early_collection (8 kHz) as the real branch."""
    out = tmp_path / "plus"
    argv = ["hparams/pretrain_plus.yaml", f"--data_folder={dip_corpora['realm']}",
            f"--librimix_folder={dip_corpora['librimix']}", f"--pretrained_frontend={pretrained}",
            f"--output_folder={out}", "--device=cpu", "--noprogressbar", *TINY_PRETRAIN]  # fmt: skip
    brain = run_pretraining(str(REPO / "recipes/REALM/dip/pretrain.py"), argv)
    assert "frontend" in (out / "init_from.txt").read_text() and str(pretrained) in (out / "init_from.txt").read_text()
    previous = torch.load(next((pretrained / "save").glob("CKPT+*")) / "frontend.ckpt", weights_only=True)
    assert brain.unwrapped("frontend").num_updates > previous["_extra_state"]["num_updates"]
    assert epochs_logged(out) == ["1"]


DOWNSTREAM = ["convtasnet_dip", "dprnn_dip", "sepformer_dip", "mossformer_dip", "convtasnet_baseline",
              "dprnn_baseline", "sepformer_baseline", "mossformer_baseline", "bilstm_dip", "bilstm_stft"]  # fmt: skip


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_downstream_recipe_runs(name, dip_corpora, pretrained, tmp_path):
    """prep -> train -> test at tiny size; Conv-TasNet + DIP runs the whole test stage (four test sets)."""
    from modules.dip import DIPBrain
    from modules.recipe import run_recipe

    out = tmp_path / name
    argv = [f"hparams/{name}.yaml", f"--data_folder={dip_corpora['librimix']}", f"--output_folder={out}",
            "--overrides_file=hparams/tiny.yaml", "--N_epochs=1", "--device=cpu", "--noprogressbar",
            "--training_signal_len=16000", f"--vox2mix_folder={dip_corpora['vox2mix']}",
            f"--lrs2mix_folder={dip_corpora['lrs2mix']}", f"--realm_folder={dip_corpora['realm']}"]  # fmt: skip
    if name.endswith("_dip"):
        argv += [f"--pretrained_frontend={pretrained}", TINY_FRONTEND_OVERRIDE]
    if name != "convtasnet_dip":
        argv += ["--extra_test_sets=null", "--perceptual_metrics=False"]
    brain = run_recipe(DIPBrain, str(REPO / "recipes/LibriMix/dip/train.py"), argv)
    if name.endswith("_dip"):  # stages pretrain -> separate: the pretraining is given, so only the separator runs
        assert list(brain.stage_brains) == ["separate"] and not (out / "pretrain").exists()
        out = out / "separate"
    rows = read_rows(out / "test_results.csv")
    assert rows[-1]["snt_id"] == "avg" and len(rows) == 3
    assert all(abs(float(r["si-snr_i"])) < 100 for r in rows[:-1])
    if name.endswith("_dip"):
        assert str(pretrained) in (out / "init_from.txt").read_text()  # the run records its frontend
    if name != "convtasnet_dip":
        return
    for test_set in ("vox2mix", "lrs2mix"):
        scored = read_rows(out / f"test_results_{test_set}.csv")
        assert len(scored) == 3 and {"si-snr_i", "sdr_i", "pesq", "stoi"} <= set(scored[-1]), scored[-1]
    assert {"pesq", "stoi"} <= set(rows[-1])
    summary = json.loads((out / "test_summary_realm.json").read_text())
    n_realm = len(read_rows(out / "save" / "realm_test.csv"))
    assert summary["n_scored"] == 0 and summary["n_mixtures"] == n_realm > 0
    written = sorted((out / "separations_realm").glob("*.wav"))
    assert len(written) == 2 * n_realm
    import soundfile

    assert {soundfile.info(p).samplerate for p in written} == {16000}  # REAL-M's 8 kHz brought to the model's rate


def test_separator_with_the_tiny_frontend_learns(pretrained, tmp_path):
    """Conv-TasNet (Asteroid's structure, 0.22M parameters) + the frozen tiny frontend of the pretraining fixture
    learns to separate. The figures below were measured with SpeechBrain's MaskNet (0.15M parameters), the
    recipe's Conv-TasNet before issue 21; the Asteroid-shaped one passed the same margins in one run (its own
    figures not measured).

    Mini Libri2Mix at 16 kHz (64 training mixtures, 8 unseen-speaker test mixtures), 6 epochs of 1 s crops,
    batch 4, lr 1e-3 (in-process). Observed with the same command on the 2-core machine (frontend pretrained
    for 3 tiny epochs): 1.37 dB SI-SNRi, 2.48 dB SDRi on the test mixtures, validation SI-SNR rising from
    -3.8 dB after one epoch to -0.6 dB after six; this test (1-epoch frontend) passes the margins below. A
    weak figure: a longer run would learn more, at a cost the test budget does not allow.
    """
    from data_prep.mini import make_mini_librimix
    from modules.dip import DIPBrain
    from modules.recipe import run_recipe

    corpus = make_mini_librimix(tmp_path / "data", seed=0, n_train=64, n_valid=4, n_test=8, sample_rates=(16000,),
                                modes=("min",))  # fmt: skip
    out = tmp_path / "out"
    argv = ["hparams/convtasnet_dip.yaml", f"--data_folder={corpus}", f"--output_folder={out}",
            f"--pretrained_frontend={pretrained}", "--vox2mix_folder=.", "--lrs2mix_folder=.", "--realm_folder=.",
            "--extra_test_sets=null", "--perceptual_metrics=False", "--device=cpu", "--noprogressbar",
            "--N_epochs=6", "--batch_size=4", "--precision=fp32", "--num_workers=0", "--training_signal_len=16000",
            "--ckpt_interval_minutes=0", "--n_audio_to_save=1",
            "--backbone={N_encoder_out: 64, B: 64, Sc: 64, H: 128, X: 4, R: 2}", TINY_FRONTEND_OVERRIDE]  # fmt: skip
    run_recipe(DIPBrain, str(REPO / "recipes/LibriMix/dip/train.py"), argv)
    mean = read_rows(out / "separate" / "test_results.csv")[-1]  # the pretraining is given: the separate stage only
    # Measured (in-process run; the pytest process is pinned to one thread, TEST_TORCH_THREADS=2 leaves it at
    # the default 2): 1 thread 1.41 dB SI-SNRi, 2.58 dB SDRi (margins 0.84, 1.10 dB); 2 threads 1.40 / 2.57 dB
    # (margins 0.83, 1.09 dB)
    assert float(mean["si-snr_i"]) > 1.37 - 0.8, mean
    assert float(mean["sdr_i"]) > 2.48 - 1.0, mean


def test_debug_run_keeps_a_random_frontend_with_a_warning(caplog):
    """Under ``--debug`` (upstream's recipe test) a frontend without pretrained weights is kept, with a warning;
    a real run still refuses it (test_downstream_needs_a_frozen_and_pretrained_frontend)."""
    from modules.dip import DIPBrain

    modules = {"separator": tiny_separator(), "frontend": tiny_frontend()}
    hparams = {"sample_rate": 16000, "frozen_modules": ["frontend"]}
    with caplog.at_level("WARNING", logger="modules.dip"):
        DIPBrain(modules, hparams=hparams, run_opts={"device": "cpu", "debug": True}).check_frontend()
    assert "no pretrained weights" in caplog.text and "--debug" in caplog.text
    with pytest.raises(ValueError, match="no pretrained weights"):
        DIPBrain(modules, hparams=hparams, run_opts={"device": "cpu", "debug": False}).check_frontend()
