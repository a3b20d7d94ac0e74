"""DPCCN / sDPCCN / TD-SpeakerBeam models, the TSE Brain, the ST-Gap table and the DPCCN recipes.

Shared fixtures worth moving to conftest.py: ``dpccn_corpus`` (mini LibriMix with enrollment
material + mini Aishell2Mix) and ``tiny_overrides`` (hparams/tiny.yaml with a DPCCN entry).
"""

import csv
import json
import math

import numpy as np
import pytest
import ruamel.yaml
import speechbrain as sb
import torch
from conftest import REPO, TINY, run_recipe_cmd
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.data import collate
from modules.metrics import si_snr
from modules.models.convtasnet import TCNMaskNet
from modules.models.dpccn import DPCCN, StftPair
from modules.models.speakerbeam import SpeakerBeamAuxiliary, TDSpeakerBeam
from modules.tse import CrossDomainSeparationBrain, CrossDomainTSEBrain, TSEBrain, st_gap, write_cross_domain_table

#: Parameters of the authors' DenseUNet() (jyhan03/dpccn, nnet_dpccn.py) for two speakers.
AUTHORS_PARAMS = 6_300_980
#: Tiny DPCCN sizes for the recipe tests (to be added to backbone_sizes of hparams/tiny.yaml).
TINY_DPCCN = {
    "n_fft": 256,
    "first_channels": 4,
    "dense_channels": 4,
    "deep_channels": [8],
    "tcn_channels": 8,
    "tcn_blocks": 2,
    "tcn_layers": 1,
    "dense_layers": 1,
    "spk_hidden": 8,
}
N_TEST = 2  # mixtures per test set of the mini corpora
#: A tiny model for the unit tests (n_fft 256: 127 bins, six halvings to 1, one deep conv).
TINY_MODEL = dict(n_fft=256, first_channels=2, dense_channels=4, deep_channels=(4,), tcn_channels=8, tcn_blocks=2,
                  tcn_layers=1)  # fmt: skip


def tiny_dpccn(n_outputs=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return DPCCN(n_outputs, **{**TINY_MODEL, **kwargs})


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------- DPCCN


def test_full_size_parameter_count_is_the_authors(tmp_path):
    """The recipe's model (hparams/backbones/dpccn.yaml at full size) has the authors' 6,300,980 parameters."""
    with open(REPO / "recipes/LibriMix/dpccn/hparams/dpccn.yaml") as f:
        hp = load_hyperpyyaml(
            f, {"data_folder": str(tmp_path), "aishell2mix_folder": str(tmp_path), "output_folder": str(tmp_path)}
        )
    count = n_params(hp["modules"]["separator"])
    assert count == pytest.approx(AUTHORS_PARAMS, rel=0.005)
    assert count == AUTHORS_PARAMS  # exact: same layers, STFT kernels are not parameters in either
    # Table 2 switches: no pyramid (4 x (32*8 + 8) + 64*32 + 32 fewer), a magnitude plane (16*9 more)
    assert n_params(DPCCN(2, pyramid=False)) == AUTHORS_PARAMS - 4 * (32 * 8 + 8) - (64 * 32 + 32)
    assert n_params(DPCCN(2, magnitude_input=True)) == AUTHORS_PARAMS + 16 * 9


@pytest.mark.parametrize(
    "name, expected",
    [("dpccn", CrossDomainSeparationBrain), ("convtasnet", CrossDomainSeparationBrain),
     ("sdpccn", CrossDomainTSEBrain), ("td_speakerbeam", CrossDomainTSEBrain)],
)  # fmt: skip
def test_each_yaml_names_its_brain(tmp_path, name, expected):
    """``brain_class`` in the yaml picks the Brain of each Table 3 system (one ``train.py`` runs all four)."""
    from modules.recipe import resolve_brain_class

    with open(REPO / f"recipes/LibriMix/dpccn/hparams/{name}.yaml") as f:
        hp = load_hyperpyyaml(
            f, {"data_folder": str(tmp_path), "aishell2mix_folder": str(tmp_path), "output_folder": str(tmp_path)}
        )
    assert resolve_brain_class(hp, CrossDomainSeparationBrain) is expected


def test_full_size_shapes_at_every_stage_match_the_authors():
    """One full-size forward pass on 1 s at 8 kHz, every stage's output shape checked (frequency 257 -> 1 -> 257)."""
    model = DPCCN(2).eval()
    shapes = {}

    def record(name):
        return lambda _module, _inputs, output: shapes.__setitem__(name, tuple(output.shape))

    model.input_conv.register_forward_hook(record("input_conv"))
    for i, stage in enumerate(model.encoder):
        stage.register_forward_hook(record(f"enc{i}"))
    for i, stage in enumerate(model.decoder):
        stage.register_forward_hook(record(f"dec{i}"))
    model.tcn.register_forward_hook(record("tcn"))
    model.pyramid.register_forward_hook(record("pyramid"))
    model.output_conv.register_forward_hook(record("output_conv"))
    with torch.no_grad():
        est, _ = model(torch.randn(1, 8000))
    frames = 8064 // 128 + 3  # padded to a multiple of the hop, then win - hop padding on both sides
    enc = [(16, 255), (32, 127), (32, 63), (32, 31), (32, 15), (64, 7), (128, 3), (384, 1)]
    dec = [(128, 3), (64, 7), (32, 15), (32, 31), (32, 63), (32, 127), (16, 255), (32, 255)]
    assert shapes["input_conv"] == (1, 16, frames, 255)
    assert [shapes[f"enc{i}"] for i in range(8)] == [(1, c, frames, f) for c, f in enc]
    assert shapes["tcn"] == (1, 384, frames)
    assert [shapes[f"dec{i}"] for i in range(8)] == [(1, c, frames, f) for c, f in dec]
    assert shapes["pyramid"] == (1, 32, frames, 255)
    assert shapes["output_conv"] == (1, 4, frames, 257)
    assert est.shape == (1, 8000, 2) and torch.isfinite(est).all()


def test_inputs_shorter_than_the_largest_pooling_are_padded_not_crashed_on():
    model = tiny_dpccn()
    stft = model.stft
    assert stft.n_frames(stft.min_samples(32)) == 32 and stft.n_frames(stft.min_samples(32) - 128) == 31
    for length in (1, 300, 3711, 3712, 5001):
        est, _ = model(torch.randn(2, length))
        assert est.shape == (2, length, 2) and torch.isfinite(est).all(), length
    # without the pyramid there is nothing to pad for
    assert tiny_dpccn(pyramid=False).min_frames == 1


def test_stft_pair_is_the_windowed_dft_and_inverts():
    """Against a float64 numpy reference: frames of the zero-padded signal times sqrt-Hann, rfft."""
    stft = StftPair(512, 128)
    x = torch.randn(1, 3072, dtype=torch.float64)  # a multiple of the hop (DPCCN pads its input to one)
    spec = stft(x.float())[0].numpy()
    padded = np.pad(x[0].numpy(), (384, 384))
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512))
    n_frames = (len(padded) - 512) // 128 + 1
    reference = np.stack([np.fft.rfft(padded[i * 128 : i * 128 + 512] * window) for i in range(n_frames)], axis=1)
    assert spec.shape == reference.shape
    np.testing.assert_allclose(spec, reference, atol=1e-4)
    back = stft.inverse(torch.from_numpy(reference).to(torch.complex64)[None])
    np.testing.assert_allclose(back[0].numpy(), x[0].numpy(), atol=1e-5)


def test_outputs_have_the_mixtures_scale_and_the_separation_is_scale_invariant():
    """The input is variance-normalised and the outputs scaled back: 10x the input gives 10x the outputs."""
    model = tiny_dpccn().eval()
    x = torch.randn(2, 4000)
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(10 * x)
    torch.testing.assert_close(b, 10 * a, rtol=1e-4, atol=1e-5)


def test_conditioning_mismatch_is_a_clear_error():
    with pytest.raises(TypeError, match="needs `enroll`"):
        tiny_dpccn(1, speaker_encoder=True, spk_hidden=8)(torch.randn(1, 4000))
    with pytest.raises(TypeError, match="no speaker encoder"):
        tiny_dpccn()(torch.randn(1, 4000), enroll=torch.randn(1, 4000))
    with pytest.raises(ValueError, match="frequency bins at the TCN"):
        DPCCN(2, n_fft=256)  # 127 bins need one stride-2 conv fewer: deep_channels=[64]


# ---------------------------------------------------------------------------------------- sDPCCN


def test_sdpccn_speaker_encoder_shapes_padding_and_effect():
    model = tiny_dpccn(1, speaker_encoder=True, spk_hidden=8).eval()
    full = n_params(DPCCN(1, speaker_encoder=True))
    assert full == AUTHORS_PARAMS - 32 * 2 * 9 - 2 + n_params(DPCCN(1, speaker_encoder=True).speaker_encoder)
    gen = torch.Generator().manual_seed(0)
    enroll = torch.randn(2, 6000, generator=gen)
    enroll[1, 4500:] = 0
    lengths = torch.tensor([6000, 4500])
    emb = model.speaker_encoder(enroll, lengths)
    assert emb.shape == (2, 2, 1, 127)  # multiplies the first dense block's [B, 2, T, 127] output
    alone = model.speaker_encoder(enroll[1:, :4500], lengths[1:])
    torch.testing.assert_close(emb[1:], alone, rtol=1e-4, atol=1e-5)  # padded frames do not count
    mix = torch.randn(2, 6000, generator=gen)
    with torch.no_grad():
        a, _ = model(mix, enroll=enroll, enroll_lengths=lengths)
        b, _ = model(mix, enroll=enroll.flip(0), enroll_lengths=lengths.flip(0))
    assert a.shape == (2, 6000, 1)
    assert not torch.allclose(a, b)  # the enrollment steers the output


# -------------------------------------------------------------------------------- TD-SpeakerBeam


def tiny_speakerbeam(adapt_layer=1):
    torch.manual_seed(0)
    return TDSpeakerBeam(
        Encoder(kernel_size=16, out_channels=8),
        TCNMaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1, Sc=5, mask_nonlinear="relu"),
        Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False),
        SpeakerBeamAuxiliary(Encoder(kernel_size=16, out_channels=8), N=8, B=6, Sc=5, H=8, P=3, X=2, embedding_dim=11),
        adapt_layer=adapt_layer,
    ).eval()


def test_speakerbeam_adaptation_multiplies_one_blocks_residual_and_skip_outputs():
    """BUT's 'mul' layer: block `adapt_layer`'s residual output times the embedding's first half, its skip output
    times the second half, before each joins its path; every other block as in the plain masker."""
    model = tiny_speakerbeam()
    mix_w = model.encode(torch.randn(2, 800))
    embedding = torch.cat([torch.full((2, 6), 3.0), torch.full((2, 5), 0.5)], dim=1)
    net = model.masker
    with torch.no_grad():
        torch.testing.assert_close(model.adapted_masks(mix_w, torch.ones(2, 11)), net(mix_w))  # ones: no change
        scaled = model.adapted_masks(mix_w, embedding)
        x, skip_sum = net.bottleneck(net.input_norm(mix_w)), 0
        for i, block in enumerate(net.blocks):
            stream, skip = block(x)  # the block adds its residual output to its input
            if i == 1:
                stream, skip = x + 3.0 * (stream - x), 0.5 * skip
            x, skip_sum = stream, skip_sum + skip
        expected = torch.relu(net.output(skip_sum))[None]
    torch.testing.assert_close(scaled, expected)
    assert not torch.allclose(scaled, net(mix_w))


def test_speakerbeam_embedding_ignores_padded_frames_and_bad_shapes_are_refused():
    model = tiny_speakerbeam()
    enroll = torch.randn(2, 1200)
    enroll[1, 700:] = 0
    # the time average excludes padded frames (gLN statistics still see them: documented departure)
    aux = model.auxiliary
    with torch.no_grad():
        x, skip_sum = aux.bottleneck(aux.input_norm(aux.encoder(enroll))), 0
        for block in aux.blocks:
            x, skip = block(x)
            skip_sum = skip_sum + skip
        h = aux.output(skip_sum)
        emb = aux(enroll, torch.tensor([1200, 700]))
    frames = (700 - 16) // 8 + 1
    torch.testing.assert_close(emb[1], h[1, :, :frames].mean(-1))
    est, features = model(torch.randn(2, 900), enroll=enroll, enroll_lengths=torch.tensor([1200, 700]))
    assert est.shape == (2, 900, 1) and features["embedding"].shape == (2, 11)
    with pytest.raises(ValueError, match="1 mask"):
        TDSpeakerBeam(model.encoder, TCNMaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=2, Sc=5), model.decoder, aux, 1)
    with pytest.raises(TypeError, match="TCNMaskNet"):
        TDSpeakerBeam(model.encoder, MaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1), model.decoder, aux, 1)
    with pytest.raises(ValueError, match="B \\+ Sc"):
        TDSpeakerBeam(model.encoder, TCNMaskNet(N=8, B=6, H=8, P=3, X=2, R=2, C=1), model.decoder, aux, 1)
    with pytest.raises(ValueError, match="outside"):
        TDSpeakerBeam(model.encoder, model.masker, model.decoder, aux, 4)


@pytest.mark.parametrize("recipe", ["LibriMix/dpccn/hparams/td_speakerbeam.yaml",
                                    "Aishell2Mix/dpccn/hparams/td_speakerbeam_remix.yaml"])  # fmt: skip
def test_speakerbeam_yamls_build_the_but_configuration(recipe, tmp_path):
    """The TD-SpeakerBeam yamls at full size: BUT's conf.yml (512 filters of 16, B 128, Sc 128, H 512, X 8, R 3,
    adaptation in block 7, 2 x 128 embedding, ReLU mask): 6,704,194 parameters, by hand from Asteroid's
    TDConvNet sizes 4,984,497 in the main network and 1,719,697 in the auxiliary one."""
    overrides = {"data_folder": str(tmp_path), "aishell2mix_folder": str(tmp_path), "output_folder": str(tmp_path)}
    if "remix" in recipe:
        overrides["init_from"] = str(tmp_path)
    with open(REPO / "recipes" / recipe) as f:
        hp = load_hyperpyyaml(f, overrides)
    model = hp["modules"]["separator"]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(model), count(model.auxiliary)) == (6_704_194, 1_719_697)
    net = model.masker
    assert (len(net.blocks), net.N, net.mask_nonlinear) == (24, 512, "relu")
    assert (model.adapt_layer, model.split) == (7, (128, 128))
    assert [b.net[3].dilation[0] for b in net.blocks[:8]] == [2**x for x in range(8)]
    assert model.encoder.conv1d.kernel_size == (16,) and model.encoder.conv1d.stride == (8,)


# ------------------------------------------------------------------------------------- TSE Brain


def tse_items(n=2, length=3000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        s1, s2 = torch.randn(length, generator=gen), torch.randn(length, generator=gen)
        enroll = torch.randn(2500 + 300 * i, generator=gen)
        items.append({"id": f"x{i}", "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2, "enroll_sig": enroll})
    return items


def tse_brain(separator, **hparams):
    return TSEBrain(
        {"separator": separator},
        opt_class=lambda params: torch.optim.Adam(params, lr=3e-3),
        hparams={"sample_rate": 8000, "conditioning": ["enroll"], **hparams},
        run_opts={"device": "cpu"},
    )


def test_tse_loss_is_negative_si_snr_against_speaker_1_without_pit():
    brain = tse_brain(tiny_dpccn(1, speaker_encoder=True, spk_hidden=8))
    batch = collate(tse_items())
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert outputs.targets.shape == (2, 3000, 1)
    loss, perm = brain.pit_loss(outputs)
    assert perm.tolist() == [[0], [0]]
    outputs.estimates = batch.sources[..., :1] + 0.5 * batch.sources[..., 1:] + 0.3 * torch.randn(2, 3000, 1)
    loss, perm = brain.pit_loss(outputs)
    for b in range(2):  # slow float64 reference, item by item
        est = outputs.estimates[b, :, 0].double()
        ref = batch.sources[b, :, 0].double()
        est, ref = est - est.mean(), ref - ref.mean()
        proj = (est @ ref) / (ref @ ref) * ref
        expected = -10 * math.log10(float(proj @ proj) / float((est - proj) @ (est - proj)))
        assert float(loss[b]) == pytest.approx(expected, abs=1e-3)
    # an estimate of speaker 2 is not rewarded: no permutation search
    outputs.estimates = batch.sources[..., 1:2]
    assert (brain.pit_loss(outputs)[0] > 20).all()


def test_tse_metrics_score_the_target_only_and_the_enrollment_is_saved(tmp_path):
    brain = tse_brain(tiny_dpccn(1, speaker_encoder=True, spk_hidden=8), output_folder=str(tmp_path), save_audio=True)
    batch = collate(tse_items(n=1))
    outputs = brain.compute_forward(batch, sb.Stage.TEST)
    outputs.estimates = batch.sources[..., :1] + 0.01 * torch.randn(1, 3000, 1)
    outputs.perm = brain.pit_loss(outputs)[1]
    scores = brain.test_metrics(brain.item_outputs(outputs, 0))
    assert scores["si-snr"] == pytest.approx(float(si_snr(outputs.estimates, batch.sources[..., :1])[0, 0]))
    assert scores["si-snr"] > 35 and scores["si-snr_i"] > 35  # speaker 2 plays no part
    brain.on_stage_start(sb.Stage.TEST)
    brain.save_test_outputs(outputs)
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["x0_enroll.wav", "x0_mix.wav", "x0_s1.wav",
                                                                      "x0_s1_hat.wav"]  # fmt: skip
    with pytest.raises(ValueError, match="1 output"):
        tse_brain(tiny_dpccn(2, speaker_encoder=True, spk_hidden=8)).compute_forward(batch, sb.Stage.VALID)


def test_tse_separate_file_takes_the_enrollment_beside_the_mixture(tmp_path):
    """``--separate MIX.wav,ENROLL.wav``: the enrolled speaker is written as ``<mix>_s1.wav``."""
    import soundfile

    brain = tse_brain(tiny_dpccn(1, speaker_encoder=True, spk_hidden=8).eval())
    gen = np.random.default_rng(0)
    soundfile.write(tmp_path / "mix.wav", 0.1 * gen.standard_normal(5000), 8000)
    soundfile.write(tmp_path / "enroll.wav", 0.1 * gen.standard_normal(4000), 8000)
    written = brain.separate_file(f"{tmp_path / 'mix.wav'},{tmp_path / 'enroll.wav'}", str(tmp_path / "out"))
    assert [p.split("/")[-1] for p in written] == ["mix_s1.wav"]
    assert soundfile.info(written[0]).frames == 5000
    soundfile.write(tmp_path / "enroll16k.wav", 0.1 * gen.standard_normal(8000), 16000)  # resampled to 8 kHz
    enroll16k = str(tmp_path / "enroll16k.wav")
    written = brain.separate_file(str(tmp_path / "mix.wav"), str(tmp_path / "out16"), enroll=enroll16k)
    assert soundfile.info(written[0]).frames == 5000
    with pytest.raises(ValueError, match="needs an enrollment"):
        brain.separate_file(str(tmp_path / "mix.wav"), str(tmp_path / "out"))


@pytest.mark.parametrize("extraction", [False, True], ids=["dpccn", "sdpccn"])
def test_tiny_dpccn_and_sdpccn_train_through_the_brain(extraction):
    """Brain's own step on one repeated batch: the loss falls (overfitting a batch is the least a model can do)."""
    torch.manual_seed(0)
    model = tiny_dpccn(1 if extraction else 2, speaker_encoder=extraction, spk_hidden=8)
    brain_class = CrossDomainTSEBrain if extraction else CrossDomainSeparationBrain
    brain = brain_class(
        {"separator": model},
        opt_class=lambda params: torch.optim.Adam(params, lr=3e-3),
        hparams={"sample_rate": 8000, "conditioning": ["enroll"] if extraction else None},
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    batch = collate(tse_items(length=4000))
    losses = [float(brain.fit_batch(batch)) for _ in range(8)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 1.0, losses


# ---------------------------------------------------------------------------------------- ST-Gap

PAPER_TABLE_3 = [  # system, Libri2Mix SI-SNR, Aishell2Mix SI-SNR, ST-Gap (%)
    ("Conv-TasNet", 11.98, 2.08, 82.6),
    ("DPCCN", 13.05, 5.09, 61.0),
    ("TSB", 12.20, 1.85, 84.8),
    ("sDPCCN", 11.57, 5.78, 50.0),
]


@pytest.mark.parametrize("system, source, target, gap", PAPER_TABLE_3, ids=[r[0] for r in PAPER_TABLE_3])
def test_st_gap_reproduces_the_papers_table_3(tmp_path, system, source, target, gap):
    assert round(100 * st_gap(source, target), 1) == gap
    (tmp_path / "test_summary.json").write_text(json.dumps({"si-snr": source, "si-snr_i": source, "n_scored": 2}))
    (tmp_path / "test_summary_aishell2mix.json").write_text(json.dumps({"si-snr": target, "si-snr_i": 0.5}))
    spec = {"task": "SS", "system": system, "source": {"set": "test", "title": "Libri2Mix"},
            "target": {"set": "aishell2mix", "title": "Aishell2Mix"}}  # fmt: skip
    table = write_cross_domain_table(str(tmp_path), spec)
    assert table["source"]["si-snr"] == source and table["target"]["si-snr"] == target
    assert f"↓ {gap:.1f}%" in (tmp_path / "st_gap.md").read_text()


def test_st_gap_is_undefined_without_a_positive_source_si_snr():
    assert st_gap(0.0, -1.0) is None and st_gap(-3.0, -5.0) is None and st_gap(float("nan"), 1.0) is None
    assert st_gap(10.0, 12.0) == pytest.approx(-0.2)  # better on the target domain: a negative gap


# --------------------------------------------------------------------------------------- recipes


@pytest.fixture(scope="module")
def dpccn_corpus(tmp_path_factory):
    """Mini LibriMix (Libri2Mix 8k min, with LibriSpeech enrollment utterances and aux lists) and mini Aishell2Mix."""
    from data_prep.mini import make_mini_aishell2mix, make_mini_librimix

    root = tmp_path_factory.mktemp("dpccn_mini")
    librimix = make_mini_librimix(
        root, seed=0, n_train=6, n_valid=2, n_test=N_TEST, sample_rates=(8000,), modes=("min",), n_spks=(2,),
        mix_types=("mix_clean",), enrollment=True,
    )  # fmt: skip
    aishell2mix = make_mini_aishell2mix(root, seed=0, n_train=6, n_valid=2, n_test=N_TEST)
    return {"librimix": librimix, "aishell2mix": aishell2mix}


@pytest.fixture(scope="module")
def tiny_overrides(tmp_path_factory):
    """hparams/tiny.yaml, plus tiny DPCCN sizes while its backbone_sizes has no `dpccn` entry."""
    yaml = ruamel.yaml.YAML()
    with open(REPO / TINY) as f:
        tiny = yaml.load(f)
    if "dpccn" in tiny["backbone_sizes"]:
        return TINY
    tiny["backbone_sizes"]["dpccn"] = TINY_DPCCN
    path = tmp_path_factory.mktemp("overrides") / "tiny_dpccn.yaml"
    with open(path, "w") as f:
        yaml.dump(tiny, f)
    return str(path)


def data_args(corpus, source="libri"):
    """Command-line data options of the DPCCN recipes on the mini corpora (prep simulates Aishell2Mix)."""
    aishell = corpus["aishell2mix"]
    common = [
        f"--aishell2mix_cfg_folder={aishell / 'lst'}",
        f"--aux_list={corpus['librimix'] / 'lists' / 'libri2mix'}",
    ]
    if source == "aishell":  # the oracle: Aishell2Mix is the main data, Libri2Mix the extra test set
        return [*common, f"--librimix_folder={corpus['librimix']}", f"--aishell2mix_aux_folder={aishell / 'lst'}"]
    return [*common, f"--aishell2mix_folder={aishell}", f"--aishell2mix_aux_folder={aishell / 'lst'}"]


def run_dpccn_recipe(dataset, hparams, corpus, out, overrides, *extra):
    data = corpus["aishell2mix"] if "oracle" in hparams else corpus["librimix"]
    args = data_args(corpus, "aishell" if "oracle" in hparams else "libri")
    if hparams in ("dpccn.yaml", "convtasnet.yaml"):  # SS recipes take no enrollment options
        args = [a for a in args if not a.startswith(("--aux_list", "--aishell2mix_aux_folder"))]
    return run_recipe_cmd(
        dataset, "dpccn", f"hparams/{hparams}", data, out, *args, *extra, "--N_epochs=1", overrides_file=overrides
    )


def check_cross_domain_run(out, extraction, main="test", extra="aishell2mix"):
    """Both test sets scored (every mixture), the table written from their summaries."""
    for suffix in ("", f"_{extra}"):
        with open(out / f"test_results{suffix}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows[-1]["snt_id"] == "avg" and len(rows) == N_TEST + 1 and all(r["scored"] == "1" for r in rows[:-1])
        assert all(abs(float(r["si-snr"])) < 100 for r in rows[:-1])
    table = json.loads((out / "st_gap.json").read_text())
    sides = {"test": json.loads((out / "test_summary.json").read_text()),
             extra: json.loads((out / f"test_summary_{extra}.json").read_text())}  # fmt: skip
    for side in ("source", "target"):
        assert table[side]["si-snr"] == sides[table[side]["set"]]["si-snr"]
        assert table[side]["si-snr_i"] == sides[table[side]["set"]]["si-snr_i"]
    assert {table["source"]["set"], table["target"]["set"]} == {main, extra}
    assert table["task"] == ("TSE" if extraction else "SS")
    assert "| Task | System | Libri2Mix | Aishell2Mix | ST-Gap |" in (out / "st_gap.md").read_text()
    names = {p.name for p in (out / "audio").iterdir()}
    assert any(n.endswith("_enroll.wav") for n in names) == extraction
    n_outputs = 1 if extraction else 2
    assert sum(n.endswith("_hat.wav") for n in names) == min(2, N_TEST) * n_outputs  # n_audio_to_save: 2


@pytest.fixture(scope="module")
def librimix_tse_runs(dpccn_corpus, tiny_overrides, tmp_path_factory):
    """The two Libri2Mix TSE runs (sDPCCN, TD-SpeakerBeam): Table 3 rows and the Mixture-Remix source models."""
    runs = {}
    for name in ("sdpccn", "td_speakerbeam"):
        out = tmp_path_factory.mktemp(name) / "out"
        run_dpccn_recipe("LibriMix", f"{name}.yaml", dpccn_corpus, out, tiny_overrides)
        runs[name] = out
    return runs


@pytest.mark.parametrize("name", ["sdpccn", "td_speakerbeam"])
def test_librimix_tse_recipes_test_both_domains(librimix_tse_runs, name):
    check_cross_domain_run(librimix_tse_runs[name], extraction=True)


@pytest.mark.parametrize("name", ["dpccn", "convtasnet"])
def test_librimix_separation_recipes_test_both_domains(dpccn_corpus, tiny_overrides, tmp_path, name):
    out = tmp_path / "out"
    run_dpccn_recipe("LibriMix", f"{name}.yaml", dpccn_corpus, out, tiny_overrides)
    check_cross_domain_run(out, extraction=False)


@pytest.mark.parametrize("name, source", [("sdpccn_remix", "sdpccn"), ("td_speakerbeam_remix", "td_speakerbeam")])
def test_mixture_remix_fine_tuning_recipes(dpccn_corpus, tiny_overrides, librimix_tse_runs, tmp_path, name, source):
    """Fine-tuning from the Libri2Mix run (stage hand-off) on remixed A-L-3Mix + Libri2Mix items."""
    out = tmp_path / "out"
    run_dpccn_recipe(
        "Aishell2Mix", f"{name}.yaml", dpccn_corpus, out, tiny_overrides, f"--init_from={librimix_tse_runs[source]}"
    )
    assert (out / "init_from.txt").read_text().startswith("separator\t")
    check_cross_domain_run(out, extraction=True)
    log = (out / "log.txt").read_text()
    assert "Mixture-Remix: 6 remixed items" in log and "+ 6 source-domain items" in log
    assert "eligible LibriSpeech speakers" in log  # the paper's pool: whole LibriSpeech utterances
    assert (out / "save" / "librispeech_pool_train-clean-100.csv").is_file()


def test_oracle_recipe_trains_on_aishell2mix_with_references(dpccn_corpus, tiny_overrides, tmp_path):
    out = tmp_path / "out"
    run_dpccn_recipe("Aishell2Mix", "sdpccn_oracle.yaml", dpccn_corpus, out, tiny_overrides)
    check_cross_domain_run(out, extraction=True, main="test", extra="libri2mix")
    with open(out / "save" / "aishell2mix_tr.csv", newline="") as f:
        header = next(csv.reader(f))
    assert {"s1_wav", "s2_wav", "enroll_wav"} <= set(header)  # references for training: the oracle
    table = json.loads((out / "st_gap.json").read_text())
    assert table["source"]["title"] == "Libri2Mix" and table["target"]["set"] == "test"


@pytest.mark.parametrize("extraction", [False, True])
def test_padded_item_separates_as_unpadded(extraction):
    """A 0.7 s item padded to 1 s beside a 1 s item: with its length given (the Brain passes the lengths to a
    separator that ``takes_lengths``) its output is its unpadded output (at least 60 dB SI-SNR); without, the
    padding changes it (the check can fail)."""
    torch.manual_seed(0)
    sizes = LEARNING_SIZES if extraction else SEPARATION_SIZES
    model = DPCCN(1 if extraction else 2, speaker_encoder=extraction, **sizes).eval()
    mix = torch.randn(2, 8000)
    n = 5600
    mix[1, n:] = 0
    lengths = torch.tensor([8000, n])
    enroll = torch.randn(2, 6000)
    enroll[1, 4000:] = 0  # a padded enrollment, as collate pads it
    extra = {"enroll": enroll, "enroll_lengths": torch.tensor([6000, 4000])} if extraction else {}
    alone_extra = {"enroll": extra["enroll"][1:, :4000], "enroll_lengths": None} if extraction else {}
    with torch.no_grad():
        alone, _ = model(mix[1:, :n], **alone_extra)
        padded, _ = model(mix, lengths=lengths, **extra)
        blind, _ = model(mix, **extra)
    assert padded.shape == (2, 8000, 1 if extraction else 2) and padded[1, n:].abs().max() == 0
    for k in range(alone.shape[-1]):
        assert float(si_snr(padded[1:, :n, k : k + 1], alone[..., k : k + 1])) > 60
    assert min(float(si_snr(blind[1:, :n, k : k + 1], alone[..., k : k + 1])) for k in range(alone.shape[-1])) < 60


# -------------------------------------------------------------------------------------- learning

#: A small sDPCCN that trains in about a minute on 2 CPU cores (95k parameters).
LEARNING_SIZES = dict(n_fft=256, first_channels=4, dense_channels=8, deep_channels=(16,), tcn_channels=32,
                      tcn_blocks=4, tcn_layers=1, dense_layers=1, spk_hidden=16)  # fmt: skip
#: A small DPCCN for the separation learning test (wider than the sDPCCN's: no enrollment to lean on).
SEPARATION_SIZES = dict(n_fft=256, first_channels=8, dense_channels=16, deep_channels=(32,), tcn_channels=64,
                        tcn_blocks=4, tcn_layers=1, dense_layers=1)  # fmt: skip


@pytest.fixture(scope="module")
def learning_librimix(tmp_path_factory):
    """Mini Libri2Mix (8k min, clean) with enrollment lists: 150 training mixtures (49 speakers), 16 test mixtures
    of other speakers. Returns the training and test datasets."""
    from data_prep.librimix import prepare_librimix
    from data_prep.mini import make_mini_librimix
    from modules.data import load_manifest

    tmp_path = tmp_path_factory.mktemp("learning_librimix")
    root = make_mini_librimix(tmp_path, seed=0, n_train=150, n_valid=1, n_test=16, sample_rates=(8000,),
                              modes=("min",), n_spks=(2,), mix_types=("mix_clean",), enrollment=True)  # fmt: skip
    manifests = prepare_librimix(root, tmp_path / "prep", task="sep_clean", enrollment=True,
                                 aux_list=root / "lists" / "libri2mix")  # fmt: skip
    return load_manifest(manifests["train"], root), load_manifest(manifests["test"], root)


def train_small(brain, train, epochs=10):
    """The Brain's own training step over ``epochs`` shuffled passes of batches of 4."""
    loader = torch.utils.data.DataLoader(
        train, batch_size=4, shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0)
    )
    brain.modules.train()
    for _ in range(epochs):
        for batch in loader:
            brain.fit_batch(batch)
    brain.modules.eval()


def test_dpccn_learns_to_separate_unseen_speakers(learning_librimix, record_property):
    """A small DPCCN (two outputs, uPIT) separates mixtures of unseen speakers.

    The corpus of :func:`learning_librimix`; a DPCCN of 0.16M parameters (:data:`SEPARATION_SIZES`),
    30 epochs of 1 s crops, batches of 4, Adam 1e-3 (the paper's rate), through the separation
    Brain's own training step, scored by its test stage. Observed: 2.42 dB mean SI-SNRi (2.0 dB
    with Adam 3e-3; 0.8 dB after 10 epochs: complex spectral mapping learns more slowly than the
    masking networks at this size). About 130 s of CPU time. The assertion keeps a margin below
    the observed figure.
    """
    train, test = learning_librimix
    torch.manual_seed(0)
    brain = CrossDomainSeparationBrain(
        {"separator": DPCCN(2, **SEPARATION_SIZES)},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
        hparams={
            "sample_rate": 8000,
            "limit_training_signal_len": True,
            "training_signal_len": 8000,
        },
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    train_small(brain, train, epochs=30)
    brain.on_stage_start(sb.Stage.TEST)
    for i in range(len(test)):
        brain.evaluate_batch(collate([test[i]]), sb.Stage.TEST)
    mean = float(np.mean([row["si-snr_i"] for row in brain.test_rows]))
    record_property("si-snr_i", mean)  # --junitxml keeps the figure
    # Measured (in-process: one thread as pinned by tests/conftest.py, two with TEST_TORCH_THREADS=2):
    # 1 thread 2.39 dB (margin 1.17 dB), 2 threads 2.40 dB (margin 1.18 dB)
    assert mean > 2.42 - 1.2, mean


def test_sdpccn_learns_to_extract_the_enrolled_speaker(learning_librimix, record_property):
    """A small sDPCCN extracts the enrolled speaker from mixtures of unseen speakers.

    The corpus of :func:`learning_librimix` (LibriSpeech-style enrollment utterances from the
    published-format aux lists). 10 epochs of 1 s crops, batches of 4, Adam 3e-3, through the TSE Brain's
    own training step. Observed: SI-SNRi of the target 3.6 dB with the target's enrollment;
    -8.7 dB when enrolled with the interfering speaker (its utterance in the mixture), i.e.
    the model then extracts the other speaker (a 12.3 dB gap). About 60 s of CPU time.
    The assertions keep a margin below the observed figures.
    """
    train, test = learning_librimix
    torch.manual_seed(0)
    brain = tse_brain(DPCCN(1, speaker_encoder=True, **LEARNING_SIZES), limit_training_signal_len=True,
                      training_signal_len=8000)  # fmt: skip
    brain.optimizer = torch.optim.Adam(brain.modules.parameters(), lr=3e-3)
    brain.optimizers_dict = {"opt_class": brain.optimizer}
    train_small(brain, train)
    items = [test[i] for i in range(len(test))]
    means = {}
    for name, enroll_key in (("target", "enroll_sig"), ("interferer", "s2_sig")):
        brain.on_stage_start(sb.Stage.TEST)
        for item in items:
            brain.evaluate_batch(collate([{**item, "enroll_sig": item[enroll_key]}]), sb.Stage.TEST)
        means[name] = float(np.mean([row["si-snr_i"] for row in brain.test_rows]))
    record_property("means", means)  # --junitxml keeps the figures
    # Measured: 1 thread target 3.59 dB, gap 12.25 dB (margins 1.49, 3.95 dB); 2 threads 3.39 dB, 11.79 dB
    # (margins 1.29, 3.49 dB)
    assert means["target"] > 3.6 - 1.5, means
    assert means["target"] - means["interferer"] > 12.3 - 4.0, means


def test_debug_run_without_enrollments_draws_them_from_other_utterances(caplog):
    """Under ``--debug`` (upstream's recipe test, whose samples have no enrollment column) a batch without
    ``enroll`` is enrolled with another item's target (or the previous batch's); a real run still stops."""
    tiny = DPCCN(1, first_channels=2, dense_channels=2, deep_channels=(2, 2), tcn_channels=4, tcn_blocks=1,
                 tcn_layers=1, speaker_encoder=True, spk_hidden=4)  # fmt: skip
    hparams = {"sample_rate": 8000, "conditioning": ["enroll"]}
    torch.manual_seed(0)
    items = [{"id": str(i), "mix_sig": torch.randn(4000 + 400 * i), "s1_sig": torch.randn(4000 + 400 * i),
              "s2_sig": torch.randn(4000 + 400 * i)} for i in range(3)]  # fmt: skip
    with pytest.raises(ValueError, match="conditioned on 'enroll' but the batch has none"):
        TSEBrain({"separator": tiny}, hparams=hparams, run_opts={"device": "cpu"}).compute_forward(
            collate(items[:2]), sb.Stage.VALID
        )
    brain = TSEBrain({"separator": tiny}, hparams=hparams, run_opts={"device": "cpu", "debug": True})
    batch = collate(items[:2])
    with caplog.at_level("WARNING", logger="modules.tse"):
        enroll, lengths = brain.debug_enrollment(batch)
    assert "--debug run" in caplog.text
    assert torch.equal(enroll[0, :4400], items[1]["s1_sig"]) and lengths.tolist() == [4400, 4000]  # the other item's
    first = TSEBrain({"separator": tiny}, hparams=hparams, run_opts={"device": "cpu", "debug": True})
    alone = collate(items[2:])
    assert torch.equal(first.debug_enrollment(alone)[0], alone.sources[..., 0])  # the run's first batch of one
    enroll, lengths = first.debug_enrollment(collate(items[:1]))  # then the previous batch's target
    assert torch.equal(enroll[0], items[2]["s1_sig"]) and lengths.tolist() == [4800]
    outputs = brain.compute_forward(collate(items[:1]), sb.Stage.VALID)  # the whole forward pass runs
    assert outputs.estimates.shape == (1, 4000, 1)


def test_mixture_speaker_rule_takes_ids_without_speakers(tmp_path):
    """Speaker rule ``mixture`` (upstream's tests/samples, ID ``0``): a mixture's sources are one speaker's
    utterances, so Mixture-Remix finds a target and an enrollment; ``librimix`` still refuses such IDs."""
    import soundfile

    from modules.data.mixing import manifest_pools
    from modules.data.remix import MixtureRemixDataset, mixture_speakers

    for name in ("s1", "s2", "m"):
        soundfile.write(tmp_path / f"{name}.wav", np.random.default_rng(0).standard_normal(8000) * 0.1, 8000)
    manifest = tmp_path / "tr.csv"
    manifest.write_text(
        "ID,duration,mix_wav,s1_wav,s2_wav\n0,1.0,$data_root/m.wav,$data_root/s1.wav,$data_root/s2.wav\n"
    )
    with pytest.raises(ValueError, match="not 2 LibriSpeech utterance ids"):
        manifest_pools(str(manifest), 8000, "librimix", data_folder=str(tmp_path), with_noise=False)
    assert mixture_speakers("0", 2) == [("0-s1", "0"), ("0-s2", "0")]
    utterances, _, _ = manifest_pools(str(manifest), 8000, "mixture", data_folder=str(tmp_path), with_noise=False)
    assert utterances.speakers == ["0", "0"]
    from modules.data.remix import manifest_mixture_pool

    remix = MixtureRemixDataset(manifest_mixture_pool(str(manifest), 8000, str(tmp_path)), utterances, n_remix=1)
    item = remix[0]
    assert item["enroll_sig"] is not None and item["mix_sig"].shape[0] == 8000
