"""Full-size backbones: parameter counts against the NASS paper (Table 3) and one forward pass."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from modules.brain import SeparationBrain
from modules.recipe import REPO_ROOT

# NASS paper, Table 3 (self-reproduced SpeechBrain baselines), millions of parameters
PAPER = {
    ("convtasnet", 2): 6.8,
    ("convtasnet", 3): 6.9,
    ("dprnn", 2): 14.8,
    ("dprnn", 3): 14.9,
    ("sepformer", 2): 25.9,
    ("sepformer", 3): 26.0,
}


def load(dataset, backbone, tmp_path, **overrides):
    path = f"{REPO_ROOT}/recipes/{dataset}/baseline/hparams/{backbone}.yaml"
    with open(path) as f:
        return load_hyperpyyaml(f, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), **overrides})


def n_params(hparams):
    return sum(p.numel() for m in hparams["modules"].values() for p in m.parameters()) / 1e6


@pytest.mark.parametrize("backbone, n_spks", sorted(PAPER))
def test_full_size_parameter_count(tmp_path, backbone, n_spks):
    hparams = load("LibriMix", backbone, tmp_path, num_spks=n_spks)
    assert n_params(hparams) == pytest.approx(PAPER[(backbone, n_spks)], rel=0.04)


@pytest.mark.parametrize("backbone", ["convtasnet", "dprnn", "sepformer"])
def test_wham_and_librimix_share_the_backbone(tmp_path, backbone):
    wham, libri = load("WHAM", backbone, tmp_path), load("LibriMix", backbone, tmp_path)
    assert n_params(wham) == n_params(libri)


@pytest.mark.parametrize("backbone", ["convtasnet", "dprnn", "sepformer"])
def test_full_size_forward(tmp_path, backbone):
    hparams = load("WHAM", backbone, tmp_path)
    brain = SeparationBrain(hparams["modules"], hparams={"num_spks": 2}, run_opts={"device": "cpu"})
    with torch.no_grad():
        est, _ = brain.separate(torch.randn(1, 4000))
    assert est.shape == (1, 4000, 2)
    assert torch.isfinite(est).all()


def test_dpccn_papers_conv_tasnet_is_the_conv_tasnet_papers_best(tmp_path):
    """The DPCCN paper's Table 3 baseline, "Conv-TasNet [4]": the Conv-TasNet paper's best configuration with the
    skip paths, 5.1M parameters there."""
    path = f"{REPO_ROOT}/recipes/LibriMix/dpccn/hparams/convtasnet.yaml"
    with open(path) as f:
        hparams = load_hyperpyyaml(
            f, {"data_folder": str(tmp_path), "aishell2mix_folder": str(tmp_path), "output_folder": str(tmp_path)}
        )
    assert n_params(hparams) == pytest.approx(5.1, rel=0.02)
    sizes = {k: hparams["backbone"][k] for k in ("N_encoder_out", "kernel_size", "B", "Sc", "H", "P", "X", "R")}
    assert sizes == {"N_encoder_out": 512, "kernel_size": 16, "B": 128, "Sc": 128, "H": 512, "P": 3, "X": 8, "R": 3}
    assert len(hparams["backbone"]["masknet"].blocks) == 24  # X * R blocks, each with its skip path
