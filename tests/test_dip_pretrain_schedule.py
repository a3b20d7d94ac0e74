"""DIP pretraining as the authors ran it: the first update at the warmup's first rate, no clipping unless asked."""

import math

import pytest
import torch
from conftest import REPO

from modules.data import collate
from modules.dip import DIPPretrainBrain
from modules.recipe import load_recipe, make_brain

TINY = [
    "--frontend={conv_layers: [[16, 10, 5], [16, 16, 16]], embed_dim: 32, num_layers: 2, num_heads: 2, "
    "ffn_dim: 64, pos_conv_kernel: 4, pos_conv_groups: 2, final_dim: 16, codebook_entries: 8}",
    "--precision=fp32", "--device=cpu", "--grad_accumulation_factor=1", "--warmup_updates=4", "--max_crop=1.0",
    "--num_negatives=5", "--cue_distractors=5", "--ckpt_interval_minutes=0",
]  # fmt: skip
YAMLS = {
    "mpc": ("recipes/LibriMix/dip/pretrain.py", "hparams/mpc.yaml", ["--vox2mix_folder=."]),
    "mic": ("recipes/LibriMix/dip/pretrain.py", "hparams/mic.yaml", ["--vox2mix_folder=."]),
    "dip_plus": ("recipes/REALM/dip/pretrain.py", "hparams/pretrain_plus.yaml", ["--librimix_folder=.",
                                                                                 "--pretrained_frontend=."]),
}  # fmt: skip


def pretraining_brain(name, tmp_path, *extra):
    recipe, yaml, folders = YAMLS[name]
    argv = [yaml, "--data_folder=.", *folders, f"--output_folder={tmp_path / name}", *TINY, *extra]
    hparams, run_opts = load_recipe(argv, str(REPO / recipe))
    return make_brain(DIPPretrainBrain, hparams, run_opts), hparams


def paired_batch(n=2, samples=8000):
    gen = torch.Generator().manual_seed(0)
    items = [
        {"id": f"s{i}", "mix_sig": torch.randn(samples, generator=gen), "real_sig": torch.randn(samples, generator=gen),
         "real_id": f"r{i}"}
        for i in range(n)
    ]  # fmt: skip
    return collate(items)


@pytest.mark.parametrize("name", sorted(YAMLS))
def test_pretraining_takes_its_first_update_at_the_warmup_rate_without_clipping(name, tmp_path, monkeypatch):
    brain, hparams = pretraining_brain(name, tmp_path)
    assert brain.max_grad_norm == math.inf
    brain.on_fit_start()
    scheduler = hparams["lr_scheduler"]
    rates, norms = [], []
    brain.optimizer.register_step_pre_hook(lambda opt, *_: rates.append(opt.param_groups[0]["lr"]))
    clip = torch.nn.utils.clip_grad_norm_

    def unchanged_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        before = [p.grad.clone() for p in params if p.grad is not None]
        norms.append(max_norm)
        out = clip(params, max_norm, *args, **kwargs)
        after = [p.grad for p in params if p.grad is not None]
        assert all(torch.equal(a, b) for a, b in zip(before, after))  # nothing was clipped
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", unchanged_clip)
    frontend = brain.unwrapped("frontend")
    start = {k: p.detach().clone() for k, p in frontend.named_parameters() if p.requires_grad}
    batch = paired_batch()
    brain.modules.train()
    brain.fit_batch(batch)
    # update 1 runs at the schedule's step-0 rate (0 for a linear warmup, as fairseq's step_update(0))
    assert rates == [scheduler.calculate_lr(0)] == [0.0]
    assert all(torch.equal(start[k], p) for k, p in frontend.named_parameters() if k in start)  # lr 0: unchanged
    brain.fit_batch(batch)
    brain.fit_batch(batch)
    lr = hparams["lr"]
    assert rates == pytest.approx([0.0, lr / 4, lr / 2])  # then the warmup, one step per update
    assert norms and all(n == math.inf for n in norms)


def test_clipping_when_asked_and_the_brain_default(tmp_path):
    brain, _ = pretraining_brain("mic", tmp_path, "--max_grad_norm=5")
    assert brain.max_grad_norm == 5
    frontend = torch.nn.Linear(2, 2)
    hparams = {"sample_rate": 16000}
    assert DIPPretrainBrain({"frontend": frontend}, hparams=hparams, run_opts={"device": "cpu"}).max_grad_norm == (
        math.inf
    )
    hparams["max_grad_norm"] = 3.0
    assert DIPPretrainBrain({"frontend": frontend}, hparams=hparams, run_opts={"device": "cpu"}).max_grad_norm == 3.0
