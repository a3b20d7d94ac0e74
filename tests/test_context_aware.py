"""Context-aware two-stage training: split separators, SSL teachers and taps, frame alignment, group stage,
teacher cache, stage hand-off and resume, every recipe yaml at tiny size, and a learning run.

Recipe runs happen in this process (``modules.recipe.run_recipe``, the function ``train.py``
calls) to save the interpreter start-up of each run; the resume test runs the command line itself.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import speechbrain as sb
import torch
import yaml
from conftest import REPO, TINY
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder, SBRNNBlock, SBTransformerBlock

from modules.context_aware import (
    GroupStageBrain,
    SegregateBrain,
    contextual_taps,
    grid_crop,
)
from modules.data import available_test_sets, collate
from modules.models.context_aware import (
    ContextAwareSeparator,
    ContextPredictor,
    ConvTasNetSplitMasker,
    DualPathSplitMasker,
    aligned_kernel,
    count_parameters,
)
from modules.models.ssl import (
    PAPER_LAYERS,
    SSLTeacher,
    build_ssl_model,
    build_teacher,
    load_ssl_checkpoint,
    ssl_frame_lengths,
)
from modules.recipe import lift_training_block, run_recipe

RECIPE = str(REPO / "recipes" / "LibriMix" / "context_aware" / "train.py")
HPARAMS = REPO / "recipes" / "LibriMix" / "context_aware" / "hparams"
SSL_NAMES = ("hubert", "wavlm", "wav2vec2")


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Random-weight tiny teachers saved as torchaudio-format state dicts (and their models)."""
    folder = tmp_path_factory.mktemp("ssl")
    found = {}
    for name in SSL_NAMES:
        torch.manual_seed(hash(name) % 1000)
        model = build_ssl_model(name, "tiny")
        path = folder / f"{name}_tiny.pth"
        torch.save(model.state_dict(), path)
        found[name] = (str(path), model)
    return found


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Mini LibriMix at 16 kHz (clean, min), mini LRS2Mix and mini REAL-M."""
    from data_prep.mini import make_mini_librimix, make_mini_lrs2mix, make_mini_realm

    root = tmp_path_factory.mktemp("mini16k")
    return {
        "librimix": make_mini_librimix(root, seed=0, n_train=4, n_valid=1, n_test=2, sample_rates=(16000,),
                                       modes=("min",), n_spks=(2,), mix_types=("mix_clean",)),
        "lrs2mix": make_mini_lrs2mix(root, seed=0, n_train=1, n_valid=1, n_test=2),
        "realm": make_mini_realm(root, seed=0, n_train=1, n_valid=1, n_test=1),
    }  # fmt: skip


def sources_batch(n_items=2, length=16000, seed=0, lengths=None):
    """A batch of random two-source mixtures with (fake) source paths for the cache keys."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n_items):
        n = lengths[i] if lengths else length
        s1, s2 = torch.randn(n, generator=gen) * 0.1, torch.randn(n, generator=gen) * 0.1
        items.append({"id": f"u{i}", "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2,
                      "s1_wav": f"/data/s1/u{seed}_{i}.wav", "s2_wav": f"/data/s2/u{seed}_{i}.wav"})  # fmt: skip
    return collate(items)


TINY_CONVTASNET = {"N_encoder_out": 32, "B": 32, "Sc": 32, "H": 64, "X": 2, "R": 1}


def group_brain(tmp_path, checkpoint, **overrides):
    """A GroupStageBrain built from the recipe's group yaml (tiny sizes)."""
    values = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "ssl_loader": "torchaudio",
        "ssl_size": "tiny",
        "ssl_checkpoint": checkpoint,
        "backbone": TINY_CONVTASNET,
        "training_signal_len": 8000,
        "precision": "fp32",
        "teacher_cache_folder": str(tmp_path / "teacher_cache"),  # not the default, under the working folder
        **overrides,
    }
    with open(HPARAMS / "group_convtasnet.yaml") as f:
        hparams = lift_training_block(load_hyperpyyaml(f, values))
    return GroupStageBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                           run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"])  # fmt: skip


# --------------------------------------------------------------------------------------- SSL teachers
@pytest.mark.parametrize("name", SSL_NAMES)
def test_layer_taps_are_the_builders_outputs(tiny_checkpoints, name):
    _, model = tiny_checkpoints[name]
    teacher = SSLTeacher(model, {"mel": "cnn", "first": 1, **{k: v for k, v in PAPER_LAYERS[name].items()}})
    wav = torch.randn(2, 8000)
    out = teacher(wav)
    layers, _ = model.extract_features(wav)
    cnn, _ = model.feature_extractor(wav, None)
    assert len(layers) == 12
    torch.testing.assert_close(out["mel"], cnn)
    torch.testing.assert_close(out["first"], layers[0])  # layer 1 is the first transformer layer's output
    phoneme, word = PAPER_LAYERS[name]["phoneme"], PAPER_LAYERS[name]["word"]
    assert (phoneme, word) == ((6, 8) if name == "wav2vec2" else (11, 9))
    torch.testing.assert_close(out["phoneme"], layers[phoneme - 1])
    torch.testing.assert_close(out["word"], layers[word - 1])
    assert not torch.allclose(out["word"], layers[word])  # not off by one
    with pytest.raises(ValueError, match="1-based"):
        SSLTeacher(model, {"word": 0})


def hf_state_dict(model, prefix, wavlm):
    """A HuggingFace-named state dict (transformers' module names) made from a torchaudio model."""
    renames = {
        "encoder.feature_projection.": "feature_projection.",
        "encoder.transformer.": "encoder.",
        "conv.parametrizations.weight.original0": "conv.weight_g",
        "conv.parametrizations.weight.original1": "conv.weight_v",
        "attention.attention.out_proj": "attention.out_proj",
    }
    state = {}
    for original, value in model.state_dict().items():
        key = original
        for old, new in renames.items():
            key = key.replace(old, new)
        if wavlm and "attention.attention.in_proj" in key:  # nn.MultiheadAttention -> q/k/v_proj
            kind = key.rsplit(".", 1)[1].replace("in_proj_", "")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                state[prefix + key.replace("attention.attention.in_proj_" + kind, f"attention.{name}.{kind}")] = part
            continue
        state[prefix + key] = value
    state[prefix + "masked_spec_embed"] = torch.zeros(16)  # HF's mask embedding, not part of the backbone
    return state


@pytest.mark.parametrize("name, prefix", [("hubert", ""), ("wavlm", "wavlm."), ("wav2vec2", "wav2vec2.")])
def test_checkpoints_load_from_torchaudio_and_huggingface_files(tiny_checkpoints, tmp_path, name, prefix):
    path, model = tiny_checkpoints[name]
    wav = torch.randn(1, 6000)
    expected = model.extract_features(wav)[0][PAPER_LAYERS[name]["word"] - 1]
    teacher = build_teacher(name, path, ["word"], size="tiny")
    torch.testing.assert_close(teacher(wav)["word"], expected)
    hf_path = tmp_path / "pytorch_model.bin"
    torch.save(hf_state_dict(model, prefix, wavlm=name == "wavlm"), hf_path)
    from_hf = build_teacher(name, str(hf_path), ["word"], size="tiny", checkpoint_format="auto")
    torch.testing.assert_close(from_hf(wav)["word"], expected)


def test_checkpoint_errors(tiny_checkpoints, tmp_path):
    path, _ = tiny_checkpoints["hubert"]
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_teacher("hubert", None, ["word"])  # the paper's size needs its weights
    # the tiny test size without weights: the same seeded random teacher every time (smoke runs, benchmarks)
    wav = torch.randn(1, 4000)
    first, second = (build_teacher("hubert", None, ["word"], size="tiny")(wav)["word"] for _ in range(2))
    torch.testing.assert_close(first, second)
    with pytest.raises(ValueError, match="does not fit"):
        load_ssl_checkpoint(build_ssl_model("wavlm", "tiny"), path)  # a HuBERT file into a WavLM
    fairseq = tmp_path / "hubert.pt"
    torch.save({"cfg": {}, "model": {"encoder.layers.0.self_attn.k_proj.weight": torch.ones(1)}}, fairseq)
    with pytest.raises(ValueError, match="fairseq"):
        load_ssl_checkpoint(build_ssl_model("hubert", "tiny"), str(fairseq))
    assert build_teacher("hubert", None, []).tap_dims == {}  # the signal target needs no teacher


def test_full_size_ssl_models():
    """The paper's base models: 94.4M parameters, 12 layers, CNN 512 / transformer 768 features."""
    counts = {name: count_parameters(build_ssl_model(name, "base")) for name in SSL_NAMES}
    assert counts == {"hubert": 94_370_944, "wavlm": 94_381_168, "wav2vec2": 94_370_944}
    teacher = SSLTeacher(build_ssl_model("hubert", "base"), PAPER_LAYERS["hubert"])
    out = teacher(torch.randn(1, 4000))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"mel": (1, 12, 512), "phoneme": (1, 12, 768),
                                                           "word": (1, 12, 768)}  # fmt: skip


# ------------------------------------------------------------------------------------------ split models
def convtasnet_split(N=8, B=6, X=2, R=2, split_at=None):
    return ContextAwareSeparator(
        Encoder(kernel_size=32, out_channels=N),
        ConvTasNetSplitMasker(MaskNet(N=N, B=B, H=8, P=3, X=X, R=R, C=1), num_spks=2, split_at=split_at),
        Decoder(in_channels=N, out_channels=1, kernel_size=32, stride=16, bias=False),
    )


def dual_path_split(block="rnn", N=8, D=6, layers=2):
    def make():
        if block == "rnn":
            return SBRNNBlock(input_size=D, hidden_channels=4, num_layers=1, bidirectional=True)
        return SBTransformerBlock(num_layers=1, d_model=D, nhead=2, d_ffn=8, use_positional_encoding=True)

    model = Dual_Path_Model(N, D, make(), make(), num_layers=layers, K=20, num_spks=2,
                            linear_layer_after_inter_intra=block == "rnn")  # fmt: skip
    return ContextAwareSeparator(
        Encoder(kernel_size=32, out_channels=N),
        DualPathSplitMasker(model),
        Decoder(in_channels=N, out_channels=1, kernel_size=32, stride=16, bias=False),
    )


@pytest.mark.parametrize("make", [convtasnet_split, dual_path_split, lambda: dual_path_split("transformer")],
                         ids=["convtasnet", "dprnn", "sepformer"])  # fmt: skip
def test_segregator_is_one_siso_call_per_speaker(make):
    torch.manual_seed(0)
    sep = make().eval()
    mix = torch.randn(2, 1600)
    est, feats = sep(mix)
    context, masks = feats["context"], feats["masks"]
    assert est.shape == (2, 1600, 2) and context.shape[:2] == (2, 2) and masks.shape == (2, 2, 8, 99)
    assert (masks >= 0).all()
    with torch.no_grad():
        for spk in range(2):  # the shared segregator on one speaker's embedding alone
            alone = sep.masker.segregate(context[:, spk])
            torch.testing.assert_close(masks[spk], alone, rtol=1e-5, atol=1e-6)
            decoded = sep.decoder(feats["mix_w"] * alone)[:, :1600]
            torch.testing.assert_close(est[..., spk], decoded, rtol=1e-5, atol=1e-6)
        swapped = sep.segregate(context.flip(1))  # relabelled embeddings -> relabelled masks
        torch.testing.assert_close(swapped, masks.flip(0), rtol=1e-5, atol=1e-6)
    group_est, group_feats = sep(mix, context_only=True)
    assert group_est is None and "masks" not in group_feats
    parts = sep.parts()
    assert count_parameters([m for ms in parts.values() for m in ms]) == count_parameters(sep)
    assert count_parameters(parts["extractor"]) > 0 and count_parameters(parts["segregator"]) > 0


def test_split_points():
    sep = convtasnet_split(X=3, R=2)
    assert sep.masker.split_at == 3 and sep.masker.n_blocks == 6
    assert len(sep.parts()["extractor"]) == 2 + 3 + 1 and len(sep.parts()["segregator"]) == 3 + 1
    assert convtasnet_split(X=8, R=3).masker.split_at == 12  # Asteroid's 8 x 3 blocks: split inside repeat 2
    dual = dual_path_split(layers=6)
    assert dual.masker.split_at == 3
    with pytest.raises(ValueError, match="split_at"):
        convtasnet_split(split_at=5)
    with pytest.raises(ValueError, match="num_masks: 1"):
        ConvTasNetSplitMasker(MaskNet(N=8, B=6, H=8, P=3, X=1, R=1, C=2), num_spks=2)


def recipe_model(name, folder, **overrides):
    """A recipe yaml's separator (and hparams), its output folder in ``folder``."""
    with open(HPARAMS / name) as f:
        hparams = load_hyperpyyaml(f, {"data_folder": "/data", "output_folder": str(folder), **overrides})
    return hparams["modules"]["separator"], hparams


def test_full_size_convtasnet_split_and_unsplit(tmp_path):
    """The recipes' Conv-TasNet (Asteroid's structure and LibriMix sizes, kernel 32 / stride 16): 5.07M unsplit
    (Asteroid's count, tests/test_asteroid_separators.py), 5.13M split.

    The split one has a ``D -> 2D`` SIMO head (``D = B + Sc``: the residual path and the skip sum) and a PReLU,
    and an ``Sc -> N`` mask convolution where the unsplit one has ``Sc -> 2N``. The paper states no counts.
    """
    split, _ = recipe_model("convtasnet.yaml", tmp_path / "split")
    unsplit, _ = recipe_model("baseline_convtasnet.yaml", tmp_path / "unsplit")
    n, b, sc = 512, 128, 128
    d = b + sc
    assert (count_parameters(unsplit), count_parameters(split)) == (5_066_929, 5_131_954)
    assert count_parameters(split) - count_parameters(unsplit) == 2 * d * d + 1 - (sc * n + n)
    parts = {k: count_parameters(v) for k, v in split.parts().items()}
    assert parts == {"encoder": 16384, "extractor": 2_615_449, "segregator": 2_483_737, "decoder": 16384}
    assert split.masker.split_at == 12 and split.masker.n_blocks == 24 and split.masker.context_dim == d
    assert split.encoder.conv1d.kernel_size == (32,) and split.encoder.conv1d.stride == (16,)
    assert split.decoder.kernel_size == (32,) and split.decoder.stride == (16,)
    with torch.no_grad():
        est, feats = split.eval()(torch.randn(1, 4000))  # > 128 frames: the dilation-128 blocks see real frames
    assert est.shape == (1, 4000, 2) and torch.isfinite(est).all() and feats["context"].shape == (1, 2, d, 249)


@pytest.mark.parametrize("name, count", [("dprnn", 3_654_913), ("sepformer", 25_687_553)])
def test_full_size_dual_path_split_keeps_the_unsplit_parameters(tmp_path, name, count):
    """DPRNN (Asteroid's structure and sizes) and SepFormer (SpeechBrain's): the split moves the speaker split,
    adds nothing."""
    split, hparams = recipe_model(f"{name}.yaml", tmp_path)
    unsplit = hparams["backbone"]["separator"]  # the backbone's unsplit separator over the same masker
    assert count_parameters(split) == count_parameters(unsplit) == count
    assert split.masker.split_at == split.masker.n_blocks // 2
    assert split.encoder.conv1d.kernel_size == (32,) and split.decoder.stride == (16,)


# ---------------------------------------------------------------------------------------- frame alignment
def test_predictor_frames_are_the_ssl_frames_for_every_length(tiny_checkpoints):
    _, model = tiny_checkpoints["hubert"]
    encoder = Encoder(kernel_size=32, out_channels=4)
    predictor = ContextPredictor(4, {"word": 3})
    assert aligned_kernel(32, 16) == (predictor.kernel, predictor.stride) == (24, 20)
    for n in [*range(400, 1400, 7), 16000, 16001, 48000 - 1, 48000]:
        frames = ssl_frame_lengths(n)
        with torch.no_grad():
            _, ssl_lengths = model.feature_extractor(torch.zeros(1, n), torch.tensor([n]))
            mix_w = encoder(torch.zeros(1, n))
            pred = predictor(mix_w[:, None], mix_w, n)["word"]
        assert pred.shape[1] == frames == int(ssl_lengths[0]) == int(ssl_frame_lengths(torch.tensor([n]))[0]), n
    assert ssl_frame_lengths(399) == 0


def test_predicted_frame_sees_exactly_the_ssl_frames_samples():
    """Output frame t of encoder + predictor depends on samples [320 t, 320 t + 400) and no others."""
    torch.manual_seed(0)
    encoder = Encoder(kernel_size=32, out_channels=4)
    predictor = ContextPredictor(4, {"word": 3})
    n = 2000
    for t in range(ssl_frame_lengths(n)):
        x = torch.rand(1, n, requires_grad=True)
        mix_w = encoder(x)
        predictor(mix_w[:, None], mix_w, n)["word"][0, t].sum().backward()
        support = (x.grad[0] != 0).nonzero()[:, 0]
        assert int(support.min()) == 320 * t and int(support.max()) == 320 * t + 399, t


# ------------------------------------------------------------------------------------------- group stage
def test_grid_crop_starts_on_the_ssl_grid():
    batch = sources_batch(3, lengths=[20000, 9000, 3000])
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        cropped = grid_crop(batch, 8000, generator=gen)
        starts = cropped.extra["crop_start"]
        assert (starts % 320 == 0).all() and int(starts[2]) == 0
        assert cropped.lengths.tolist() == [8000, 8000, 3000]
        for b in range(3):
            s = int(starts[b])
            n = int(cropped.lengths[b])
            torch.testing.assert_close(cropped.sources[b, :n], batch.sources[b, s : s + n])
            assert s + n <= int(batch.lengths[b])
        assert cropped.extra["full_sources"] is batch.sources


def test_group_stage_trains_the_extractor_only(tiny_checkpoints, tmp_path):
    path, _ = tiny_checkpoints["hubert"]
    brain = group_brain(tmp_path, path, teacher_cache=False)
    teacher_before = {k: v.clone() for k, v in brain.modules.teacher.state_dict().items()}
    separator = brain.modules.separator
    parts = separator.parts()
    before = {part: [p.detach().clone() for m in parts[part] for p in m.parameters()] for part in parts}
    brain.on_fit_start()
    assert all(id(p) not in {id(q) for q in brain.optimizer.param_groups[0]["params"]}
               for p in brain.modules.teacher.parameters())  # fmt: skip
    batch = sources_batch(2, length=12000)
    for _ in range(3):
        brain.fit_batch(batch)
    assert not brain.modules.teacher.training
    for key, value in brain.modules.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert all(p.grad is None for p in brain.modules.teacher.parameters())
    after = {part: [p.detach() for m in parts[part] for p in m.parameters()] for part in parts}
    changed = {part: any(not torch.equal(a, b) for a, b in zip(after[part], before[part])) for part in parts}
    assert changed == {"encoder": True, "extractor": True, "segregator": False, "decoder": False}


def test_hybrid_objective_is_the_weighted_sum_under_one_assignment(tiny_checkpoints, tmp_path):
    path, _ = tiny_checkpoints["hubert"]
    brain = group_brain(tmp_path, path, teacher_cache=False, loss_weights={"signal": 0.5, "mel": 1.0,
                                                                            "phoneme": 2.0, "word": 1.0})  # fmt: skip
    batch = sources_batch(2, length=6000)
    outputs = brain.compute_forward(batch, sb.Stage.VALID)
    terms = brain.pairwise_terms(outputs)
    assert sorted(terms) == ["mel", "phoneme", "signal", "word"]
    loss = brain.compute_objectives(outputs, batch, sb.Stage.VALID)
    total = 0.5 * terms["signal"] + terms["mel"] + 2 * terms["phoneme"] + terms["word"]
    per_perm = torch.stack([total[:, [0, 1], [0, 1]].mean(-1), total[:, [1, 0], [0, 1]].mean(-1)], -1)
    torch.testing.assert_close(loss, per_perm.min(-1).values.mean())
    stats = brain.valid_stats(loss.detach())
    assert set(stats) == {"loss", "signal", "mel", "phoneme", "word"}
    assert brain.modules.predictor.signal is not None


@pytest.mark.parametrize("target", ["signal", "mel", "phoneme", "word"])
def test_each_target_trains(tiny_checkpoints, tmp_path, target):
    path, _ = tiny_checkpoints["wav2vec2"]
    brain = group_brain(tmp_path, path, target=target, ssl_model="wav2vec2", teacher_cache=False)
    assert sorted(brain.modules.predictor.heads) == contextual_taps(target)
    batch = sources_batch(2, length=9000)
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    assert torch.isfinite(loss) and loss.requires_grad
    if target == "signal":
        assert outputs.estimates.shape == (2, 8000, 2)
        assert type(brain.modules.teacher).__name__ == "NoTeacher"
    else:
        assert outputs.estimates is None


def test_teacher_targets_are_the_whole_utterances_frames(tiny_checkpoints, tmp_path):
    path, model = tiny_checkpoints["hubert"]
    brain = group_brain(tmp_path, path, teacher_cache=False)
    batch = sources_batch(2, lengths=[15000, 7000])
    cropped = grid_crop(batch, 6000, generator=torch.Generator().manual_seed(3))
    n_frames = ssl_frame_lengths(6000)
    targets, frame_mask = brain.teacher_targets(cropped, n_frames)
    assert frame_mask.sum(-1).tolist() == [n_frames, n_frames]
    for b, n in enumerate((15000, 7000)):
        layers, _ = model.extract_features(batch.sources[b, :n].T)
        first = int(cropped.extra["crop_start"][b]) // 320
        expected = layers[8][:, first : first + n_frames].transpose(0, 1)
        torch.testing.assert_close(targets["word"][b], expected)


def test_cache_returns_a_fresh_teacher_pass(tiny_checkpoints, tmp_path):
    path, _ = tiny_checkpoints["hubert"]
    cached_brain = group_brain(tmp_path, path, teacher_cache=True)
    fresh_brain = group_brain(tmp_path / "fresh", path, teacher_cache=False)
    batch = sources_batch(2, lengths=[16000, 12000], seed=5)
    gen = torch.Generator().manual_seed(0)
    n_frames = ssl_frame_lengths(8000)
    first = cached_brain.teacher_targets(grid_crop(batch, 8000, generator=gen), n_frames)  # fills the cache
    assert cached_brain.cache.misses == 12 and cached_brain.cache.hits == 0  # 2 items x 2 sources x 3 taps
    for _ in range(3):  # other crops of the same utterances: from the cache only
        crop = grid_crop(batch, 8000, generator=gen)
        got, mask = cached_brain.teacher_targets(crop, n_frames)
        expected, expected_mask = fresh_brain.teacher_targets(crop, n_frames)
        assert torch.equal(mask, expected_mask)
        for tap in expected:
            torch.testing.assert_close(got[tap], expected[tap], rtol=2e-3, atol=2e-3)  # float16 storage
    assert cached_brain.cache.hits == 3 * 12 and cached_brain.cache.misses == 12
    assert first[0]["word"].abs().sum() > 0
    stored = [torch.load(p, weights_only=True) for p in cached_brain.cache.folder.rglob("*.pt")]
    assert sorted(e["layer"] for e in stored) == ["11"] * 4 + ["9"] * 4 + ["cnn"] * 4  # per utterance and layer
    assert stored[0]["targets"].dtype == torch.float16


def test_systems_of_one_teacher_share_the_cache_and_other_teachers_do_not_collide(tiny_checkpoints, tmp_path):
    """Two runs of other systems (target, separator size, output folder) with the same teacher and cache folder:
    the second reads the first's entries and never runs the teacher; other weights or another model: misses."""
    path, _ = tiny_checkpoints["hubert"]
    shared = str(tmp_path / "shared_cache")
    batch = sources_batch(2, lengths=[16000, 12000], seed=7)
    crop = grid_crop(batch, 8000, generator=torch.Generator().manual_seed(0))
    n_frames = ssl_frame_lengths(8000)
    first = group_brain(tmp_path / "sys6", path, target="hybrid", teacher_cache_folder=shared)
    expected, _ = first.teacher_targets(crop, n_frames)
    assert first.cache.misses == 12 and first.cache.hits == 0
    smaller = {**TINY_CONVTASNET, "H": 32}
    second = group_brain(tmp_path / "sys5", path, target="word", backbone=smaller, teacher_cache_folder=shared)
    second.modules.teacher.forward = None  # a hit must not run the teacher
    got, _ = second.teacher_targets(crop, n_frames)
    assert second.cache.hits == 4 and second.cache.misses == 0  # 2 items x 2 sources, the word tap
    torch.testing.assert_close(got["word"], expected["word"])
    assert second.cache.folder == first.cache.folder
    assert (first.cache.teacher_folder / "teacher.json").is_file()
    others = {"wav2vec2": tiny_checkpoints["wav2vec2"][0], "hubert, other weights": str(tmp_path / "retrained.pth")}
    torch.manual_seed(99)
    torch.save(build_ssl_model("hubert", "tiny").state_dict(), others["hubert, other weights"])
    for name, checkpoint in others.items():
        model = "wav2vec2" if name == "wav2vec2" else "hubert"
        other = group_brain(tmp_path / name, checkpoint, target="word", ssl_model=model, ssl_layers={"word": 9},
                            teacher_cache_folder=shared)  # fmt: skip
        assert other.cache.teacher_folder != first.cache.teacher_folder, name
        other.teacher_targets(crop, n_frames)
        assert other.cache.hits == 0 and other.cache.misses == 4, name
    folders = sorted(p.name for p in (tmp_path / "shared_cache").iterdir())
    assert len(folders) == 3 and all((tmp_path / "shared_cache" / f / "teacher.json").is_file() for f in folders)


def test_default_cache_folder_is_one_for_every_system():
    """The group yamls' default cache folder is one fixed folder (not under a run's output folder)."""
    values = set()
    for path in sorted(HPARAMS.glob("group_*.yaml")):
        line = next(x for x in path.read_text().splitlines() if x.startswith("teacher_cache_folder:"))
        values.add(line.split("#")[0].split(":", 1)[1].strip())
    assert values == {"results/LibriMix/context_aware/teacher_cache"}


def test_tiny_teacher_without_a_checkpoint_is_one_seeded_random_model():
    """``ssl_size: tiny`` with no checkpoint (smoke runs, benchmarks): the same random weights in every run."""
    torch.manual_seed(1)
    a = build_teacher("hubert", None, ["word"], size="tiny", loader="torchaudio")
    torch.manual_seed(2)
    b = build_teacher("hubert", None, ["word"], size="tiny", loader="torchaudio")
    assert a.identity == b.identity and "random" in a.identity
    audio = torch.randn(1, 8000)
    torch.testing.assert_close(a(audio)["word"], b(audio)["word"])
    assert build_teacher("wav2vec2", None, ["word"], size="tiny", loader="torchaudio").identity != a.identity
    with pytest.raises(FileNotFoundError, match="SSL checkpoint not found"):
        build_teacher("hubert", None, ["word"], size="base", loader="torchaudio")


def test_cache_is_refused_where_sources_are_not_the_files(tiny_checkpoints, tmp_path):
    path, _ = tiny_checkpoints["hubert"]
    with pytest.raises(ValueError, match="speed perturbation"):
        group_brain(tmp_path, path, teacher_cache=True, use_speedperturb=True)
    with pytest.raises(ValueError, match="teacher_context"):
        group_brain(tmp_path, path, teacher_cache=True, teacher_context="crop")


def test_available_test_sets():
    sets = available_test_sets(a={"manifest": "m", "data_folder": "d"}, b={"data_folder": None},
                               c={"manifest": "m", "data_folder": "d", "requires": None})  # fmt: skip
    assert list(sets) == ["a"]


# --------------------------------------------------------------------------------------------- recipes
def recipe_argv(corpora, out, name, *extra, checkpoint=None, epochs=1):
    argv = [f"hparams/{name}", f"--data_folder={corpora['librimix']}", f"--output_folder={out}",
            f"--overrides_file={TINY}", "--device=cpu", "--noprogressbar", f"--N_epochs={epochs}",
            f"--lrs2mix_folder={corpora['lrs2mix']}", f"--realm_folder={corpora['realm']}",
            "--n_audio_to_save=1"]  # fmt: skip
    if checkpoint:
        argv += ["--ssl_loader=torchaudio", "--ssl_size=tiny", f"--ssl_checkpoint={checkpoint}",
                 f"--teacher_cache_folder={out.parent / 'teacher_cache'}"]  # fmt: skip
    return [*argv, *extra]


def run_context_aware(recipe, argv):
    """What the recipe's ``train.py`` does; the brains of the stages run, in order."""
    brain = run_recipe(SegregateBrain, recipe, argv)
    return list(getattr(brain, "stage_brains", {"": brain}).values())


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_tested(folder, n_test=2):
    rows = read_rows(folder / "test_results.csv")
    assert len(rows) == n_test + 1 and rows[-1]["snt_id"] == "avg"
    assert {"si-snr_i", "sdr_i"} <= set(rows[0])
    assert len(read_rows(folder / "test_results_lrs2mix.csv")) == 3
    assert len(read_rows(folder / "test_results_dev.csv")) == 2
    realm = sorted(p.name for p in (folder / "separations_realm").iterdir())
    assert len(realm) == 2 * (len(read_rows(folder / "test_results_realm.csv")) - 1) and realm[0].endswith("_s1.wav")
    table = (folder / "results_table.md").read_text()
    assert "Dev SI-SDRi" in table and " - " not in table.splitlines()[2]


SYSTEMS = ["convtasnet.yaml", "dprnn.yaml", "sepformer.yaml", "mossformer.yaml"]
DUAL_PATH = ("dprnn", "sepformer")  # tiny sizes have one dual-path block: two, to split


@pytest.mark.parametrize("name", SYSTEMS)
def test_system_yaml_runs_both_stages(corpora, tiny_checkpoints, tmp_path, name):
    out = tmp_path / "out"
    extra = ["--backbone={num_layers: 2}"] if name.startswith(DUAL_PATH) else []  # tiny dual-path: 1 block each
    brains = run_context_aware(RECIPE, recipe_argv(corpora, out, name, *extra,
                                                   checkpoint=tiny_checkpoints["hubert"][0]))  # fmt: skip
    assert [type(b).__name__ for b in brains] == ["GroupStageBrain", "SegregateBrain"]
    group_log = (out / "group" / "train_log.txt").read_text()
    assert "valid loss" in group_log and "valid word" in group_log
    assert (out / "segregate" / "init_from.txt").read_text().startswith("separator\t" + str(out / "group" / "save"))
    check_tested(out / "segregate")
    stage = yaml.safe_load((out / "segregate" / "stage_overrides.yaml").read_text())
    assert stage["init_from"] == str(out / "group") and "ssl_checkpoint" not in stage
    for stage in ("group", "segregate"):  # the frozen teacher is in no checkpoint
        assert not list((out / stage / "save").rglob("teacher*"))
    if name == "convtasnet.yaml":  # --separate: the system's final model separates files
        mixture = next((corpora["librimix"] / "Libri2Mix" / "wav16k" / "min" / "test" / "mix_clean").glob("*.wav"))
        argv = recipe_argv(corpora, out, name, checkpoint=tiny_checkpoints["hubert"][0])
        run_context_aware(RECIPE, [*argv, "--separate", str(mixture)])
        written = sorted(p.name for p in (out / "segregate" / "separated").iterdir())
        assert written == [f"{mixture.stem}_s1.wav", f"{mixture.stem}_s2.wav"]


@pytest.mark.parametrize("name", [f"baseline_{s}" for s in SYSTEMS])
def test_baseline_yaml_runs(corpora, tmp_path, name):
    out = tmp_path / "out"
    extra = ["--backbone={num_layers: 2}"] if name.removeprefix("baseline_").startswith(DUAL_PATH) else []
    brains = run_context_aware(RECIPE, recipe_argv(corpora, out, name, *extra))
    assert len(brains) == 1 and not (out / "group").exists()
    assert type(brains[0].modules.separator).__name__ == "MaskingSeparator"
    check_tested(out)


def test_table_rows_as_overrides(corpora, tiny_checkpoints, tmp_path):
    """Sys. 1 (no group stage), Sys. 2 (signal, no teacher), Sys. 8 (WavLM, HuggingFace-format file)."""
    out = tmp_path / "sys1"
    brains = run_context_aware(RECIPE, recipe_argv(corpora, out, "convtasnet.yaml", "--target=none"))
    assert len(brains) == 1 and not (out / "group").exists() and not (out / "segregate" / "init_from.txt").exists()
    assert type(brains[0].modules.separator).__name__ == "ContextAwareSeparator"

    out = tmp_path / "sys2"
    brains = run_context_aware(RECIPE, recipe_argv(corpora, out, "convtasnet.yaml", "--target=signal",
                                                   "--stages=group"))  # fmt: skip
    assert type(brains[0].modules.teacher).__name__ == "NoTeacher"
    assert "valid signal" in (out / "group" / "train_log.txt").read_text()

    _, model = tiny_checkpoints["wavlm"]
    hf = tmp_path / "wavlm_hf.bin"
    torch.save(hf_state_dict(model, "", wavlm=True), hf)
    out = tmp_path / "sys8"
    argv = recipe_argv(corpora, out, "convtasnet.yaml", "--ssl_model=wavlm", "--target=phoneme", "--stages=group",
                       checkpoint=str(hf))  # fmt: skip
    brains = run_context_aware(RECIPE, argv)
    assert brains[0].modules.teacher.layers == {"phoneme": 11}
    with pytest.raises(SystemExit, match="match no key"):
        run_context_aware(RECIPE, recipe_argv(corpora, out, "convtasnet.yaml", "--ssl_modle=wavlm"))


def test_segregate_stage_starts_from_the_group_stage(corpora, tiny_checkpoints, tmp_path):
    out = tmp_path / "out"
    checkpoint = tiny_checkpoints["hubert"][0]
    (group,) = run_context_aware(RECIPE, [*recipe_argv(corpora, out, "convtasnet.yaml", checkpoint=checkpoint),
                                          "--stages=group"])  # fmt: skip
    assert not (out / "segregate").exists()
    # the segregate stage alone, not trained (0 epochs): its separator is the group stage's best one
    untrained = recipe_argv(corpora, out, "convtasnet.yaml", checkpoint=checkpoint, epochs=0)
    (segregate,) = run_context_aware(RECIPE, [*untrained, "--stages=segregate"])
    trained = group.modules.separator.state_dict()
    started = segregate.modules.separator.state_dict()
    extractor_keys = [k for k in trained if "masknet.blocks.0." in k or "speaker_split" in k]
    assert extractor_keys
    for key in trained:
        torch.testing.assert_close(started[key], trained[key])
    tiny = {"N_encoder_out": 32, "B": 32, "Sc": 32, "H": 64, "X": 3, "R": 1}  # hparams/tiny.yaml's convtasnet_skip
    fresh = recipe_model("convtasnet.yaml", tmp_path / "fresh", backbone=tiny)[0].state_dict()  # same seed, untrained
    assert any(not torch.equal(fresh[k], started[k]) for k in extractor_keys)


def latest_checkpoint(save):
    """(intra_epoch, epoch, step) of the newest complete checkpoint of a run, or None."""
    best = None
    for meta_file in save.glob("CKPT+*/CKPT.yaml"):
        try:
            meta = yaml.safe_load(meta_file.read_text())
            if "paramfiles" not in meta or not all((meta_file.parent / f).exists() for f in meta["paramfiles"]):
                continue
            counter = yaml.safe_load((meta_file.parent / "counter.ckpt").read_text())  # early stopping: a mapping
            epoch = int(counter["current_epoch"] if isinstance(counter, dict) else counter)
            step = yaml.safe_load((meta_file.parent / "brain.ckpt").read_text())["step"]
        except (FileNotFoundError, TypeError):
            continue
        entry = (meta["unixtime"], bool(meta.get("brain_intra_epoch_ckpt")), epoch, step)
        best = max(best, entry) if best else entry
    return best[1:] if best else None


# --------------------------------------------------------------------------- learning, killed in stage 2
@pytest.fixture(scope="module")
def learning_corpus(tmp_path_factory):
    """A larger mini Libri2Mix at 16 kHz (100 training mixtures) for the learning run."""
    from data_prep.mini import make_mini_librimix

    root = tmp_path_factory.mktemp("learn16k")
    return make_mini_librimix(root, seed=0, n_train=100, n_valid=4, n_test=10, sample_rates=(16000,),
                              modes=("min",), n_spks=(2,), mix_types=("mix_clean",))  # fmt: skip


def test_two_stage_run_learns_and_resumes_when_killed_in_stage_two(learning_corpus, tiny_checkpoints, tmp_path):
    """The command line trains both stages, is killed (SIGKILL) inside stage 2 and started again.

    The rerun does not train the finished group stage again and resumes stage 2 from its last
    checkpoint. The result: a small split Conv-TasNet (``hparams/cpu_small.yaml`` sizes,
    batches of 2 half-second crops, lr 2e-3, 3 + 3 epochs over 100 mixtures, hybrid targets of
    the tiny random-weight HuBERT) separates unseen mini LibriMix speakers. Observed on 2 CPU
    cores: 1.7 and 2.1 dB SI-SNRi (3.0 and 3.9 dB SDRi) on the 10 test mixtures in two runs of
    this test (the kill lands at another step, the resumed run draws other crops); 2.1 dB (4.0 dB) in one
    uninterrupted run; the unsplit Conv-TasNet trained end to end for 5 epochs: 2.0 dB (3.6 dB).
    The mixture itself scores 0 dB, an untrained model about -11 dB. These figures were measured with
    SpeechBrain's MaskNet, the recipe's Conv-TasNet before issue 21; the Asteroid-shaped one (skip path,
    linear encoder) passed the same margins in one run (its own figures not recorded).
    """
    out = tmp_path / "out"
    cmd = [sys.executable, RECIPE, "hparams/convtasnet.yaml", f"--data_folder={learning_corpus}",
           f"--output_folder={out}", "--overrides_file=hparams/cpu_small.yaml", "--device=cpu", "--noprogressbar",
           "--ssl_loader=torchaudio", "--ssl_size=tiny", f"--ssl_checkpoint={tiny_checkpoints['hubert'][0]}",
           f"--teacher_cache_folder={tmp_path / 'teacher_cache'}", "--N_epochs=3", "--batch_size=2",
           "--training_signal_len=8000", "--lr=0.002", "--n_audio_to_save=0", "--ckpt_interval_steps=10"]  # fmt: skip
    threads = os.environ.get("TEST_TORCH_THREADS", "1")  # one, as every learning test (tests/conftest.py)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    save = out / "segregate" / "save"
    deadline = time.time() + 400
    try:
        while time.time() < deadline:
            state = latest_checkpoint(save) if save.exists() else None
            if state and state[0] and state[2] >= 10:  # an intra-epoch checkpoint of stage 2
                break
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.05)
        else:
            raise AssertionError("no intra-epoch checkpoint of the segregate stage within 400 s")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out / "segregate" / "test_results.csv").exists()
    intra, epoch, step = latest_checkpoint(save)
    group_log = (out / "group" / "train_log.txt").read_text()
    assert group_log.count("epoch:") == 3

    rerun = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    expected = (
        f"Resuming training at epoch {epoch}, step {step}" if intra else f"Resuming training at epoch {epoch + 1}"
    )
    assert expected in (out / "segregate" / "log.txt").read_text()
    assert (out / "group" / "train_log.txt").read_text() == group_log  # the finished group stage is not redone
    epochs = [line.split(",")[0] for line in (out / "segregate" / "train_log.txt").read_text().splitlines()]
    assert [e for e in epochs if e.startswith("epoch")] == ["epoch: 1", "epoch: 2", "epoch: 3"]

    mean = read_rows(out / "segregate" / "test_results.csv")[-1]
    assert mean["snt_id"] == "avg" and mean["scored"] == "10"
    # Measured (the recipe subprocesses run TEST_TORCH_THREADS threads, default one): 1 thread 1.85 dB SI-SNRi,
    # 3.73 dB SDRi and 2.07 / 4.00 dB in two runs (margins 0.85 / 1.07 dB, 1.73 / 2.00 dB; the kill lands at
    # another step each run); 2 threads 1.94 / 3.71 dB (margins 0.94, 1.71 dB)
    assert float(mean["si-snr_i"]) > 1.7 - 0.7, mean
    assert float(mean["sdr_i"]) > 3.0 - 1.0, mean
