"""SUPERB's Bi-LSTM PSM separator (DIP Table VI, issue 22): shapes, the PSM targets and the uPIT MSE loss against a
float64 loop reference, gradients, errors, the Brain's use of the separator's own loss, and the Table VI yamls.

The tiny prep -> train -> test runs are in the existing enumerations: ``bilstm_dip`` and ``bilstm_stft`` in
``tests/test_dip.py::DOWNSTREAM``, ``bilstm_wavlm_plus.yaml`` in ``tests/test_hf_ssl.py``.
"""

import itertools
import math
import re

import pytest
import torch
from conftest import REPO

from modules.models.superb import BiLSTMPSMSeparator, psm_mse_pit_loss, psm_targets, stft_frames

HPARAMS = REPO / "recipes" / "LibriMix" / "dip" / "hparams"
TABLE_VI = ["stft", "wav2vec2", "hubert", "unispeech_sat", "wavlm", "unispeech_sat_plus", "wavlm_plus", "dip"]


def random_spec(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    real, imag = torch.randn(*shape, generator=g, dtype=dtype), torch.randn(*shape, generator=g, dtype=dtype)
    return torch.complex(real, imag)


def reference_loss(masks, mix, sources, frames, mask_type):
    """s3prl's loss.py read as a loop, in float64: per item, the best permutation of the per-speaker sums."""
    n, batch, _, n_bins = masks.shape
    n_src = sources.shape[1]
    losses, perms = [], []
    for b in range(batch):
        best, best_perm = math.inf, None
        for perm in itertools.permutations(range(n), n_src):  # perm[j]: the mask matched with reference j
            total = 0.0
            for j, i in enumerate(perm):
                for f in range(int(frames[b])):
                    for k in range(n_bins):
                        x, s = complex(mix[b, f, k]), complex(sources[b, j, f, k])
                        if mask_type == "am":
                            target = abs(s)
                        else:
                            cosine = math.cos(math.atan2(x.imag, x.real) - math.atan2(s.imag, s.real))
                            target = abs(s) * (max(cosine, 0.0) if mask_type == "npsm" else cosine)
                        total += (float(masks[i, b, f, k]) * abs(x) - target) ** 2
            value = total / int(frames[b]) / n_src
            if value < best:
                best, best_perm = value, list(perm)
        losses.append(best)
        perms.append(best_perm)
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(perms)


@pytest.mark.parametrize("mask_type", ["npsm", "psm", "am"])
@pytest.mark.parametrize("n_masks,n_src", [(2, 2), (3, 3), (3, 2)])
def test_psm_loss_matches_the_loop_reference(mask_type, n_masks, n_src):
    batch, n_frames, n_bins = 3, 5, 4
    mix = random_spec(batch, n_frames, n_bins, seed=1)
    sources = random_spec(batch, n_src, n_frames, n_bins, seed=2)
    masks = torch.rand(n_masks, batch, n_frames, n_bins, generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64, requires_grad=True)  # fmt: skip
    frames = torch.tensor([5, 3, 1])
    loss, perm = psm_mse_pit_loss(masks, mix, sources, frames, mask_type)
    expected, expected_perm = reference_loss(masks.detach(), mix, sources, frames, mask_type)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert perm.tolist() == expected_perm.tolist()
    # gradient: the loop reference's derivative of item b's matched term: 2 (m |X| - T) |X| / (frames n_src)
    loss.sum().backward()
    targets = psm_targets(mix, sources, mask_type)
    grad = torch.zeros_like(masks)
    for b in range(batch):
        for j, i in enumerate(expected_perm[b].tolist()):
            f = int(frames[b])
            err = masks[i, b, :f].detach() * mix[b, :f].abs() - targets[b, j, :f]
            grad[i, b, :f] = 2 * err * mix[b, :f].abs() / f / n_src
    torch.testing.assert_close(masks.grad, grad, rtol=1e-12, atol=1e-12)


def test_psm_targets_and_source_mask():
    mix = random_spec(2, 3, 4, seed=4)
    sources = random_spec(2, 2, 3, 4, seed=5)
    psm = psm_targets(mix, sources, "psm")
    expected = (mix.unsqueeze(1) * sources.conj()).real / mix.abs().unsqueeze(1)  # |S| cos(angle X - angle S)
    torch.testing.assert_close(psm, expected)
    torch.testing.assert_close(psm_targets(mix, sources, "npsm"), psm.clamp(min=0))
    with pytest.raises(ValueError, match="mask_type"):
        psm_targets(mix, sources, "irm")
    masks = torch.rand(2, 2, 3, 4, dtype=torch.float64)
    full, _ = psm_mse_pit_loss(masks, mix, sources)
    keep = torch.tensor([[True, True], [True, False]])
    masked, _ = psm_mse_pit_loss(masks, mix, sources, source_mask=keep)
    torch.testing.assert_close(masked[0], full[0])
    one, _ = reference_loss(masks[:, 1:], mix[1:], sources[1:, :1], torch.tensor([3]), "npsm")
    torch.testing.assert_close(masked[1:], one)
    with pytest.raises(ValueError, match="references for"):
        psm_mse_pit_loss(masks[:1], mix, sources)
    with pytest.raises(ValueError, match="expected masks"):
        psm_mse_pit_loss(masks[0], mix, sources)


def tiny(**kwargs):
    torch.manual_seed(0)
    options = dict(n_fft=64, win_length=64, hidden_size=6, rnn_layers=3, dropout=0.0)
    options.update(kwargs)
    return BiLSTMPSMSeparator(**options)


def test_shapes_hop_and_perfect_masks():
    conv = [(4, 10, 5), (4, 8, 4)]
    sep = tiny(frontend_dim=8, layers="all", num_layers=2, conv_layers=conv)
    assert sep.hop_length == 20 and sep.layer_weights.shape == (3,)
    mix = torch.randn(2, 803)
    for n_cue_frames in (38, 45):  # fewer or more frontend frames than STFT frames: padded / trimmed
        est, feats = sep(mix, cues=torch.randn(3, 2, n_cue_frames, 8))
        assert est.shape == (2, 803, 2) and feats["masks"].shape == (2, 2, 41, 33)
        assert feats["mix_spec"].shape == (2, 41, 33) and bool((feats["masks"] >= 0).all())
    assert stft_frames(torch.tensor([803, 800, 799]), 20).tolist() == [41, 41, 40]
    # the STFT / inverse STFT pair reconstructs: masks of 1 give the mixture back
    spec = sep.stft(mix)
    torch.testing.assert_close(sep.istft(spec, 803), mix, rtol=1e-4, atol=1e-4)
    # one state (frontend_layers: [2]) has no layer weights; no frontend: the STFT row
    assert tiny(frontend_dim=8, layers=[2], num_layers=2, conv_layers=conv).layer_weights is None
    stft_row = tiny(hop_length=16)
    est, feats = stft_row(mix)
    assert est.shape == (2, 803, 2) and feats["masks"].shape == (2, 2, 51, 33)
    est.sum().backward()
    assert all(p.grad is not None for p in stft_row.parameters())


def test_errors():
    conv = [(4, 10, 5), (4, 8, 4)]
    sep = tiny(frontend_dim=8, layers="all", num_layers=2, conv_layers=conv)
    with pytest.raises(ValueError, match="needs its cues"):
        sep(torch.randn(1, 400))
    with pytest.raises(ValueError, match="expected cues"):
        sep(torch.randn(1, 400), cues=torch.randn(2, 1, 19, 8))
    with pytest.raises(TypeError, match="no frontend"):
        tiny(hop_length=16)(torch.randn(1, 400), cues=torch.randn(3, 1, 19, 8))
    with pytest.raises(ValueError, match="hop_length"):
        tiny()
    with pytest.raises(ValueError, match="mask_type"):
        tiny(hop_length=16, mask_type="irm")


def test_brain_trains_on_the_separators_own_loss():
    """``DIPBrain.pit_loss`` is the separator's PSM loss, with each item's frames from its length."""
    from modules.brain import SeparationOutputs
    from modules.data.batch import SeparationBatch
    from modules.dip import DIPBrain

    sep = tiny(hop_length=16)
    brain = DIPBrain({"separator": sep}, hparams={"sample_rate": 16000}, run_opts={"device": "cpu"})
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(2, 800, 2, generator=g)
    sources[1, 600:] = 0
    lengths = torch.tensor([800, 600])
    batch = SeparationBatch(ids=["a", "b"], mix=sources.sum(-1), lengths=lengths, sources=sources)
    estimates, features = sep(batch.mix)
    outputs = SeparationOutputs.from_batch(estimates, batch, features)
    loss, perm = brain.pit_loss(outputs)
    spec = sep.stft(sources.transpose(1, 2))
    expected, expected_perm = psm_mse_pit_loss(features["masks"], features["mix_spec"], spec,
                                               torch.tensor([51, 38]))  # fmt: skip
    torch.testing.assert_close(loss, expected)
    assert perm.tolist() == expected_perm.tolist()


@pytest.mark.parametrize("row", TABLE_VI)
def test_table_vi_yamls(row):
    """Each row's yaml: the separator, s3prl's settings, and the same checkpoint as the row's Conv-TasNet yaml."""
    text = (HPARAMS / f"bilstm_{row}.yaml").read_text()
    assert "Table VI" in text.split("seed:", 1)[0]
    assert "modules.models.superb.BiLSTMPSMSeparator" in text and "backbones/bilstm_psm.yaml" in text
    settings = dict(re.findall(r"^(lr|batch_size|max_grad_norm|N_epochs|limit_training_signal_len): (\S+)", text,
                               flags=re.M))  # fmt: skip
    assert settings == {"lr": "0.0001", "batch_size": "8", "max_grad_norm": "1.0", "N_epochs": "87",
                        "limit_training_signal_len": "False"}  # fmt: skip
    assert "optimizer: !name:torch.optim.AdamW" in text and re.search(r"^lr_scheduler: null", text, flags=re.M)
    if row not in ("stft", "dip"):
        counterpart = (HPARAMS / f"convtasnet_{row}.yaml").read_text()
        keys = r"^(ssl_model_type|ssl_hub): (\S+)"
        assert re.findall(keys, text, flags=re.M) == re.findall(keys, counterpart, flags=re.M)
    assert f"hparams/bilstm_{row}.yaml" in (REPO / "recipes" / "LibriMix" / "dip" / "README.md").read_text()
