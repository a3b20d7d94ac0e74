"""MossFormer (modules.models.mossformer): the paper's size and parameter count, float64 references of the
joint attention and the rotary embedding, the block list behind the context-aware split, the DIP fusion hook,
and a tiny training step."""

import math

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.dual_path import Decoder, Encoder

from modules.losses import pit_si_snr_loss
from modules.models.context_aware import ContextAwareSeparator
from modules.models.dip import DIPFusion
from modules.models.mossformer import (
    MossFormerBlock,
    MossFormerMasker,
    MossFormerSplitMasker,
    joint_attention,
    rotate_partial,
)
from modules.models.separator import MaskingSeparator
from modules.recipe import REPO_ROOT

BACKBONE = f"{REPO_ROOT}/hparams/backbones/mossformer.yaml"
#: MossFormer (L), the paper's model size (millions of parameters, 2 speakers).
PAPER_MILLIONS = 42.1
#: Small sizes of hparams/backbones/mossformer.yaml (a CPU step in well under a second).
TINY = {
    "N_encoder_out": 16,
    "out_channels": 16,
    "num_blocks": 2,
    "group_size": 16,
    "query_key_dim": 8,
    "rotary_dim": 4,
    "conv_kernel_size": 5,
}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def load_backbone(**overrides):
    with open(BACKBONE) as f:
        return load_hyperpyyaml(f, overrides)


def tiny_masker(**kwargs):
    sizes = {"num_spks": 2, "num_blocks": 4, "group_size": 8, "query_key_dim": 8, "rotary_dim": 4}
    sizes.update({"conv_kernel_size": 5, **kwargs})
    return MossFormerMasker(12, 16, **sizes)


def expected_count(N, D, K, R, d, expansion, k, C):
    """Parameters from the architecture's description (module docstring), for the count test."""
    H = int(D * expansion)
    projection = lambda i, o: 1 + i * o + o + o * k  # noqa: E731 - ScaleNorm, Linear, depthwise conv
    block = projection(D, H) + projection(D, d) + 8 * d + projection(H // 2, D)
    masker = 2 * N + N * D + 1 + R * block + 2 * D + 2 * D + 1 + D * C * D + C * D + 2 * (D * D + D) + D * N
    return masker + 2 * N * K  # encoder and decoder


@pytest.fixture(scope="module")
def full_size():
    torch.manual_seed(0)
    return load_backbone(num_masks=2)


def test_full_size_parameter_count_is_the_papers(full_size):
    """The paper's MossFormer (L): 42.1M parameters; the yaml's sizes are the paper's."""
    hp = full_size
    count = n_params(hp["separator"])
    assert count / 1e6 == pytest.approx(PAPER_MILLIONS, abs=0.05)
    assert count == expected_count(512, 512, 16, 24, 128, 4.0, 17, 2)
    sizes = {k: hp[k] for k in ("N_encoder_out", "out_channels", "kernel_size", "num_blocks", "group_size")}
    assert sizes == {"N_encoder_out": 512, "out_channels": 512, "kernel_size": 16, "num_blocks": 24, "group_size": 256}
    assert len(hp["masknet"].blocks) == 24


def test_full_size_forward(full_size):
    sep = full_size["separator"].eval()
    with torch.no_grad():
        est, feats = sep(torch.randn(1, 2000))  # 249 frames: one padded chunk of 256
    assert est.shape == (1, 2000, 2)
    assert feats["masks"].shape == (2, 1, 512, 249)
    assert torch.isfinite(est).all()


def test_joint_attention_matches_a_float64_loop():
    gen = torch.Generator().manual_seed(1)
    batch, n, g, d, e = 2, 7, 3, 4, 5
    quad_q, quad_k, lin_q, lin_k = torch.randn(4, batch, n, d, dtype=torch.float64, generator=gen).unbind(0)
    values = torch.randn(batch, n, e, dtype=torch.float64, generator=gen)
    expected = torch.zeros(batch, n, e, dtype=torch.float64)
    for b in range(batch):
        for i in range(n):
            chunk = range((i // g) * g, min((i // g + 1) * g, n))
            for j in chunk:
                expected[b, i] += max(float(quad_q[b, i] @ quad_k[b, j]) / g, 0.0) ** 2 * values[b, j]
            for j in range(n):
                expected[b, i] += float(lin_q[b, i] @ lin_k[b, j]) / n * values[b, j]
    got = joint_attention(quad_q, quad_k, lin_q, lin_k, values, group_size=g)
    torch.testing.assert_close(got, expected)


def test_rotary_embedding_turns_channel_pairs_by_position():
    x = torch.randn(1, 6, 2, 8, dtype=torch.float64)
    rotary = 4
    expected = x.clone()
    for t in range(6):
        for i in range(rotary // 2):
            angle = t * 10000 ** (-2 * i / rotary)
            a, b = x[0, t, :, 2 * i], x[0, t, :, 2 * i + 1]
            expected[0, t, :, 2 * i] = a * math.cos(angle) - b * math.sin(angle)
            expected[0, t, :, 2 * i + 1] = a * math.sin(angle) + b * math.cos(angle)
    torch.testing.assert_close(rotate_partial(x, rotary), expected)


def test_token_shift_delays_the_first_half_of_the_channels():
    x = torch.arange(12.0).reshape(1, 3, 4)  # frames [0..3], [4..7], [8..11]
    shifted = MossFormerBlock.shift(x)
    assert shifted.tolist() == [[[0, 0, 2, 3], [0, 1, 6, 7], [4, 5, 10, 11]]]


def test_quadratic_attention_stays_in_its_chunk():
    """Without the linear part, a change in chunk 1 leaves chunk 0's outputs alone; the linear part reaches it."""
    q, k, values = torch.randn(1, 8, 4), torch.randn(1, 8, 4), torch.randn(1, 8, 3)
    zero = torch.zeros_like(q)
    moved = values.clone()
    moved[:, 6] += 1.0
    local = joint_attention(q, k, zero, zero, values, group_size=4)
    local_moved = joint_attention(q, k, zero, zero, moved, group_size=4)
    torch.testing.assert_close(local[:, :4], local_moved[:, :4])
    both = joint_attention(q, k, q, k, values, group_size=4)
    assert not torch.allclose(both[:, :4], joint_attention(q, k, q, k, moved, group_size=4)[:, :4])


def test_the_block_list_composes_to_the_forward():
    """What a split at block k runs (embed, blocks[:k], blocks[k:], close_stack, split_speakers, masks_from)
    is the masker's own forward."""
    torch.manual_seed(0)
    masker = tiny_masker().eval()
    mix_w = torch.rand(2, 12, 30)
    with torch.no_grad():
        x = masker.embed(mix_w)
        y = masker.run_blocks(masker.run_blocks(x, 0, 1), 1)
        slices = masker.split_speakers(masker.close_stack(y, x))
        masks = torch.stack([masker.masks_from(slices[:, c]) for c in range(2)])
        torch.testing.assert_close(masks, masker(mix_w))
    assert isinstance(masker.blocks, torch.nn.ModuleList) and len(masker.blocks) == 4


def test_split_masker_in_the_context_aware_separator():
    torch.manual_seed(0)
    masker = tiny_masker(num_blocks=4)
    split = MossFormerSplitMasker(masker, split_at=1)
    sep = ContextAwareSeparator(
        Encoder(kernel_size=32, out_channels=12),
        split,
        Decoder(in_channels=12, out_channels=1, kernel_size=32, stride=16, bias=False),
    )
    est, feats = sep(torch.randn(2, 1600))
    assert est.shape == (2, 1600, 2)
    assert feats["context"].shape == (2, 2, 16, 99) and feats["masks"].shape == (2, 2, 12, 99)
    assert sep(torch.randn(2, 1600), context_only=True)[0] is None
    parts = split.parts()
    extractor = {id(p) for m in parts["extractor"] for p in m.parameters()}
    segregator = {id(p) for m in parts["segregator"] for p in m.parameters()}
    assert not extractor & segregator
    assert extractor | segregator == {id(p) for p in masker.parameters()}  # the unsplit model's parameters
    assert len(parts["extractor"]) == 3 + 1 + 2 and split.context_dim == 16
    est.sum().backward()
    assert all(p.grad is not None for p in masker.parameters())


def test_dip_fusion_feeds_the_masker():
    """DIP's adaptation layer is the separator's `fusion` hook: it needs only the encoder's channels and kernel."""
    torch.manual_seed(0)
    fusion = DIPFusion(32, 12, encoder_kernel=16, layers="all", num_layers=2)
    sep = MaskingSeparator(
        Encoder(kernel_size=16, out_channels=12),
        tiny_masker(),
        Decoder(in_channels=12, out_channels=1, kernel_size=16, stride=8, bias=False),
        fusion=fusion,
    )
    est, _ = sep(torch.randn(2, 16000), cues=torch.randn(3, 2, 49, 32))
    assert est.shape == (2, 16000, 2)
    est.square().mean().backward()
    assert fusion.projection.weight.grad.abs().sum() > 0


def test_backbone_yaml_at_small_size_and_the_context_aware_encoder():
    hp = load_backbone(num_masks=3, kernel_size=32, kernel_stride=16, **TINY)
    est, feats = hp["separator"](torch.randn(2, 1600))
    assert est.shape == (2, 1600, 3) and feats["mix_w"].shape == (2, 16, 99)


def test_tiny_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    sep = load_backbone(**TINY)["separator"]
    est, _ = sep(torch.randn(2, 800))
    assert est.shape == (2, 800, 2)
    est.square().mean().backward()
    missing = [name for name, p in sep.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_bf16_autocast_forward_backward():
    """`--precision bf16`: the rotary and position codes follow the activations' dtype."""
    torch.manual_seed(0)
    sep = load_backbone(**TINY)["separator"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        est, _ = sep(torch.randn(2, 1600))
    est.float().square().mean().backward()
    assert est.dtype == torch.bfloat16 and torch.isfinite(est).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in sep.parameters())


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    sep = load_backbone(**TINY, attn_dropout=0.0)["separator"]
    sources = torch.randn(2, 1600, 2)
    mix = sources.sum(-1)
    optimizer = torch.optim.Adam(sep.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = pit_si_snr_loss(sep(mix)[0], sources)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = pit_si_snr_loss(sep(mix)[0], sources)[0].mean().item()
    assert final < losses[0] - 1.0, [*losses, final]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"conv_kernel_size": 4}, "odd"),
        ({"rotary_dim": 3}, "rotary_dim"),
        ({"rotary_dim": 16}, "rotary_dim"),
        ({"block_norm": "batchnorm"}, "block_norm"),
        ({"expansion_factor": 0.0}, "expansion_factor"),
        ({"group_size": 0}, "group_size"),
    ],
)
def test_bad_sizes_are_clear_errors(kwargs, error):
    with pytest.raises(ValueError, match=error):
        tiny_masker(**kwargs)


def test_bad_inputs_are_clear_errors():
    masker = tiny_masker()
    with pytest.raises(ValueError, match=r"\[B, 12, L\]"):
        masker(torch.rand(2, 10, 30))
    with pytest.raises(ValueError, match="split_at"):
        MossFormerSplitMasker(masker, split_at=5)
    with pytest.raises(TypeError, match="MossFormerMasker"):
        MossFormerSplitMasker(torch.nn.Identity())
