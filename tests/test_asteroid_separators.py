"""The Asteroid-shaped Conv-TasNet and DPRNN of the DIP and context-aware rows, and their SIMO/SISO split.

Parameter counts at full size are checked against Asteroid's own models, counted by hand
from its configuration (the arithmetic below); where ``asteroid`` is installed (it is no
requirement of this collection) the counts and the outputs, with the same weights, are
compared with Asteroid's models directly. The recipe yamls that use these backbones run at
tiny size in tests/test_context_aware.py and tests/test_dip.py.
"""

from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.models.context_aware import (
    ContextAwareSeparator,
    ConvTasNetSplitMasker,
    DPRNNSplitMasker,
    count_parameters,
)
from modules.models.convtasnet import TCNMaskNet, WaveformEncoder
from modules.models.dprnn_asteroid import DPRNNMaskNet
from modules.models.separator import MaskingSeparator

REPO = Path(__file__).resolve().parents[1]


def conv_tasnet(C=2, N=512, B=128, Sc=128, H=512, X=8, R=3, kernel=32, mask="relu"):
    """Asteroid's ConvTasNet (its LibriMix recipe's sizes and ReLU masks, a linear encoder), ours."""
    return MaskingSeparator(
        WaveformEncoder(kernel, N),
        TCNMaskNet(N=N, B=B, H=H, P=3, X=X, R=R, C=C, Sc=Sc, mask_nonlinear=mask),
        Decoder(in_channels=N, out_channels=1, kernel_size=kernel, stride=kernel // 2, bias=False),
    )


def dprnn(C=2, N=64, B=128, H=128, K=250, layers=6, kernel=32, mask="sigmoid"):
    """Asteroid's DPRNNTasNet (its LibriMix recipe's sizes), ours."""
    return MaskingSeparator(
        WaveformEncoder(kernel, N),
        DPRNNMaskNet(N=N, C=C, B=B, H=H, K=K, num_layers=layers, mask_nonlinear=mask),
        Decoder(in_channels=N, out_channels=1, kernel_size=kernel, stride=kernel // 2, bias=False),
    )


def asteroid_conv_tasnet_count(n_src, N=512, B=128, Sc=128, H=512, P=3, blocks=24, kernel=32):
    """Asteroid's ConvTasNet, counted from its modules (asteroid 0.7.0, models/conv_tasnet.py, masknn/convolutional.py).

    Free encoder and decoder ``N x kernel`` each; gLN ``2N``; bottleneck ``N -> B``; each Conv1DBlock:
    ``B -> H`` conv, PReLU, gLN, depthwise ``H x P`` conv, PReLU, gLN, residual ``H -> B`` and skip ``H -> Sc``
    convs; PReLU and the mask conv ``Sc -> n_src * N``.
    """
    block = (B * H + H) + 1 + 2 * H + (H * P + H) + 1 + 2 * H + (H * B + B) + (H * Sc + Sc)
    masker = 2 * N + (N * B + B) + blocks * block + 1 + (Sc * n_src * N + n_src * N)
    return 2 * N * kernel + masker


def asteroid_dprnn_count(n_src, N=64, B=128, H=128, layers=6, kernel=32):
    """Asteroid's DPRNNTasNet, counted from its modules (asteroid 0.7.0, masknn/recurrent.py).

    Free encoder and decoder; gLN and bottleneck ``N -> B``; each DPRNNBlock: two bidirectional
    one-layer LSTMs ``B -> H`` (``4H(B + H) + 8H`` per direction), two linears ``2H -> B``, two gLNs;
    PReLU and the 2-D conv ``B -> n_src * B``; the gate convs ``B -> B`` (two); the mask conv
    ``B -> N`` without bias.
    """
    lstm = 2 * (4 * H * (B + H) + 8 * H)
    block = 2 * (lstm + (2 * H * B + B) + 2 * B)
    masker = 2 * N + (N * B + B) + layers * block + 1 + (B * n_src * B + n_src * B) + 2 * (B * B + B) + B * N
    return 2 * N * kernel + masker


def test_full_size_counts_are_asteroids():
    """5,066,929 (Conv-TasNet) and 3,654,913 (DPRNN) for two speakers at the papers' kernel 32, stride 16."""
    assert asteroid_conv_tasnet_count(2) == 5_066_929 == count_parameters(conv_tasnet())
    assert asteroid_conv_tasnet_count(2, kernel=16) == 5_050_545 == count_parameters(conv_tasnet(kernel=16))
    assert asteroid_dprnn_count(2) == 3_654_913 == count_parameters(dprnn())
    assert asteroid_dprnn_count(2, kernel=16) == 3_652_865 == count_parameters(dprnn(kernel=16))


def test_forward_shapes_and_mask_ranges():
    torch.manual_seed(0)
    mix = torch.randn(2, 1601)
    for sep in (conv_tasnet(N=16, B=8, Sc=6, H=12, X=2, R=2), dprnn(C=3, N=16, B=8, H=6, K=10, layers=2)):
        est, feats = sep(mix)
        n = sep.masker.C
        assert est.shape == (2, 1601, n) and feats["mix_w"].shape == (2, 16, 99)
        assert feats["masks"].shape == (n, 2, 16, 99) and (feats["masks"] >= 0).all()
        assert (feats["mix_w"] < 0).any()  # Asteroid's linear encoder, not SpeechBrain's ReLU one
    masks = dprnn(N=16, B=8, H=6, K=10, layers=1, mask="sigmoid")(mix)[1]["masks"]
    assert (masks <= 1).all()
    softmax = dprnn(N=16, B=8, H=6, K=10, layers=1, mask="softmax")(mix)[1]["masks"]
    torch.testing.assert_close(softmax.sum(0), torch.ones_like(softmax[0]))


def test_relu_encoder_is_speechbrains():
    torch.manual_seed(0)
    ours, theirs = WaveformEncoder(16, 8, activation="relu"), Encoder(kernel_size=16, out_channels=8)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 800)
    torch.testing.assert_close(ours(x), theirs(x))
    with pytest.raises(ValueError, match="activation"):
        WaveformEncoder(16, 8, activation="tanh")


def identity_head(masker):
    """Sets a one-speaker SIMO head (PReLU, 1x1 conv D -> D) to the identity."""
    prelu, conv = masker.speaker_split
    with torch.no_grad():
        prelu.weight.fill_(1.0)
        conv.weight.copy_(torch.eye(conv.weight.shape[0]).reshape(conv.weight.shape))


@pytest.mark.parametrize("split_at", [0, 1, 3, 4])
@pytest.mark.parametrize("mask", ["relu", "sigmoid"])
def test_skip_path_split_is_the_unsplit_masker_with_an_identity_head(split_at, mask):
    """One speaker, identity SIMO head: extract then segregate is the unsplit masker, residual and skip sums alike."""
    torch.manual_seed(0)
    net = TCNMaskNet(N=16, B=8, H=12, P=3, X=2, R=2, C=1, Sc=6, mask_nonlinear=mask).eval()
    split = ConvTasNetSplitMasker(net, num_spks=1, split_at=split_at)
    identity_head(split)
    mix_w = torch.randn(2, 16, 57)
    with torch.no_grad():
        context = split.extract(mix_w)
        assert context.shape == (2, 1, 8 + 6, 57) and split.context_dim == 14
        torch.testing.assert_close(split.segregate(context[:, 0]), net(mix_w)[0])


def test_dprnn_split_with_every_block_in_the_extractor_is_the_unsplit_masker():
    """split_at = all blocks: the extractor ends where the unsplit masker's speaker split and overlap-add end."""
    torch.manual_seed(0)
    net = DPRNNMaskNet(N=16, C=2, B=8, H=6, K=10, num_layers=2).eval()
    encoder = WaveformEncoder(32, 16)
    decoder = Decoder(in_channels=16, out_channels=1, kernel_size=32, stride=16, bias=False)
    split = ContextAwareSeparator(encoder, DPRNNSplitMasker(net, split_at=2), decoder)
    unsplit = MaskingSeparator(encoder, net, decoder)
    mix = torch.randn(2, 1600)
    with torch.no_grad():
        est, feats = split(mix)
        want, want_feats = unsplit(mix)
    torch.testing.assert_close(feats["masks"], want_feats["masks"])
    torch.testing.assert_close(est, want)
    assert count_parameters(split) == count_parameters(unsplit)


@pytest.mark.parametrize("make", ["convtasnet", "dprnn"])
def test_split_is_one_siso_call_per_speaker(make):
    torch.manual_seed(0)
    if make == "convtasnet":
        masker = ConvTasNetSplitMasker(TCNMaskNet(N=16, B=8, H=12, P=3, X=2, R=2, C=1, Sc=6), num_spks=2)
    else:
        masker = DPRNNSplitMasker(DPRNNMaskNet(N=16, C=2, B=8, H=6, K=10, num_layers=2))
    decoder = Decoder(in_channels=16, out_channels=1, kernel_size=32, stride=16, bias=False)
    sep = ContextAwareSeparator(WaveformEncoder(32, 16), masker, decoder).eval()
    with torch.no_grad():
        est, feats = sep(torch.randn(2, 1600))
        assert est.shape == (2, 1600, 2) and feats["context"].shape == (2, 2, masker.context_dim, 99)
        for spk in range(2):
            torch.testing.assert_close(feats["masks"][spk], masker.segregate(feats["context"][:, spk]))
    parts = sep.parts()
    assert count_parameters([m for ms in parts.values() for m in ms]) == count_parameters(sep)
    assert masker.split_at == masker.n_blocks // 2


def test_split_errors():
    with pytest.raises(ValueError, match="num_masks: 1"):
        ConvTasNetSplitMasker(TCNMaskNet(N=8, B=4, H=8, P=3, X=1, R=1, C=2), num_spks=2)
    with pytest.raises(ValueError, match="mask_nonlinear"):
        ConvTasNetSplitMasker(TCNMaskNet(N=8, B=4, H=8, P=3, X=1, R=1, C=1, mask_nonlinear="softmax"), num_spks=2)
    with pytest.raises(ValueError, match="mask_nonlinear"):
        DPRNNSplitMasker(DPRNNMaskNet(N=8, C=2, B=4, H=4, K=10, num_layers=2, mask_nonlinear="softmax"))
    with pytest.raises(TypeError, match="DPRNNMaskNet"):
        DPRNNSplitMasker(TCNMaskNet(N=8, B=4, H=8, P=3, X=1, R=1, C=2))
    with pytest.raises(ValueError, match="split_at"):
        DPRNNSplitMasker(DPRNNMaskNet(N=8, C=2, B=4, H=4, K=10, num_layers=2), split_at=3)
    with pytest.raises(ValueError, match="hop"):
        DPRNNMaskNet(N=8, C=2, K=10, hop=11)


def test_split_counts_at_full_size():
    """The split Conv-TasNet adds a SIMO head ``D -> C D`` (D = B + Sc) and has an ``Sc -> N`` mask conv
    where the unsplit one has ``Sc -> C N``; the split DPRNN has the unsplit one's parameters."""
    n, b, sc, c = 512, 128, 128, 2
    split = ConvTasNetSplitMasker(TCNMaskNet(N=n, B=b, H=512, P=3, X=8, R=3, C=1, Sc=sc, mask_nonlinear="relu"), c)
    unsplit = TCNMaskNet(N=n, B=b, H=512, P=3, X=8, R=3, C=c, Sc=sc, mask_nonlinear="relu")
    d = b + sc
    assert count_parameters(split) - count_parameters(unsplit) == c * d * d + 1 - (c - 1) * (sc * n + n)
    assert count_parameters(split) == 5_099_186  # + encoder and decoder (16,384 each): 5,131,954
    net = DPRNNMaskNet(N=64, C=2, B=128, H=128, K=250)
    assert count_parameters(DPRNNSplitMasker(net)) == count_parameters(net) == 3_650_817


ROWS = {  # recipe yaml -> (masker class, parameters of the separator)
    "recipes/LibriMix/context_aware/hparams/baseline_convtasnet.yaml": ("TCNMaskNet", 5_066_929),
    "recipes/LibriMix/context_aware/hparams/convtasnet.yaml": ("ConvTasNetSplitMasker", 5_131_954),
    "recipes/LibriMix/context_aware/hparams/baseline_dprnn.yaml": ("DPRNNMaskNet", 3_654_913),
    "recipes/LibriMix/context_aware/hparams/dprnn.yaml": ("DPRNNSplitMasker", 3_654_913),
    "recipes/LibriMix/dip/hparams/convtasnet_baseline.yaml": ("TCNMaskNet", 5_066_929),
    "recipes/LibriMix/dip/hparams/dprnn_baseline.yaml": ("DPRNNMaskNet", 3_654_913),
}


@pytest.mark.parametrize("path", sorted(ROWS), ids=lambda p: "/".join(Path(p).parts[-3::2]))
def test_paper_row_yamls_build_the_asteroid_shaped_separators(path, tmp_path):
    """Full size, counted only (no forward): the papers' kernel 32 / stride 16, linear encoder."""
    overrides = {"data_folder": "/data", "output_folder": str(tmp_path), "vox2mix_folder": ".",
                 "lrs2mix_folder": ".", "realm_folder": "."}  # fmt: skip
    with open(REPO / path) as f:
        hparams = load_hyperpyyaml(f, overrides, overrides_must_match=False)
    sep = hparams["modules"]["separator"]
    name, count = ROWS[path]
    assert type(sep.masker).__name__ == name and count_parameters(sep) == count
    assert sep.encoder.conv1d.kernel_size == (32,) and sep.encoder.conv1d.stride == (16,)
    assert sep.encoder.activation is None and sep.decoder.stride == (16,)


# ----------------------------------------------------------------------------- against Asteroid itself


def copy_in_order(source, target):
    """Copies ``source``'s parameters into ``target``'s, in module order (the two have the same structure)."""
    pairs = list(zip(source.parameters(), target.parameters(), strict=True))
    with torch.no_grad():
        for ours, theirs in pairs:
            assert ours.shape == theirs.shape
            theirs.copy_(ours)


@pytest.mark.parametrize("model", ["ConvTasNet", "DPRNNTasNet"])
def test_same_counts_and_outputs_as_asteroid(model):
    """With ``asteroid`` installed (not a requirement): Asteroid's model at the papers' configuration has our
    count, and with our weights copied in computes our separator's output."""
    asteroid_models = pytest.importorskip("asteroid.models")
    torch.manual_seed(0)
    if model == "ConvTasNet":
        theirs = asteroid_models.ConvTasNet(n_src=2, mask_act="relu", kernel_size=32, stride=16, sample_rate=16000)
        ours = conv_tasnet()
    else:
        theirs = asteroid_models.DPRNNTasNet(n_src=2, kernel_size=32, stride=16, chunk_size=250, hop_size=125,
                                             sample_rate=16000)  # fmt: skip
        ours = dprnn()
    assert count_parameters(theirs) == count_parameters(ours)
    copy_in_order(ours, theirs)
    mix = torch.randn(1, 4000)
    with torch.no_grad():
        want = theirs.eval()(mix)  # [batch, n_src, time]
        est, _ = ours.eval()(mix)
    torch.testing.assert_close(est.transpose(1, 2), want, rtol=1e-4, atol=1e-5)
