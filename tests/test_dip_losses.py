"""DIP pretraining losses against slow, obvious float64 references (values and gradients)."""

import itertools
import math

import pytest
import torch

from modules.losses import (
    codebook_diversity_loss,
    contrastive_logits,
    cue_probability,
    mic_loss,
    mmd_loss,
    mpc_loss,
    mpc_nce_loss,
    sample_negative_indices,
    utterance_statistics,
)


def cos(a, b):
    return float(a @ b) / max(float(a.norm()) * float(b.norm()), 1e-16)


def ref_nce(pred, tgt, neg, temperature):
    """Loop reference of equation 5 (fairseq's convention: a distractor equal to the positive is left out)."""
    losses = []
    for b in range(pred.shape[0]):
        for m in range(pred.shape[1]):
            logits = [cos(pred[b, m], tgt[b, m]) / temperature]
            for k in neg[b, m].tolist():
                if torch.equal(tgt[b, k], tgt[b, m]):
                    continue
                logits.append(cos(pred[b, m], tgt[b, k]) / temperature)
            losses.append(-(logits[0] - math.log(sum(math.exp(v) for v in logits))))
    return sum(losses) / len(losses)


def ref_nce_torch(pred, tgt, neg, temperature):
    """The same reference, differentiable (float64, one frame at a time)."""
    total = pred.new_zeros(())
    for b in range(pred.shape[0]):
        for m in range(pred.shape[1]):
            keep = [k for k in neg[b, m].tolist() if not torch.equal(tgt[b, k], tgt[b, m])]
            cands = torch.stack([tgt[b, m]] + [tgt[b, k] for k in keep])
            sims = torch.stack([torch.dot(pred[b, m], c) / (pred[b, m].norm() * c.norm()) for c in cands])
            total = total - torch.log_softmax(sims / temperature, 0)[0]
    return total / (pred.shape[0] * pred.shape[1])


def ref_diversity(logits):
    groups, entries = logits.shape[-2:]
    flat = logits.reshape(-1, groups, entries)
    perplexity = 0.0
    for g in range(groups):
        probs = [[math.exp(flat[n, g, v]) / sum(math.exp(x) for x in flat[n, g]) for v in range(entries)]
                 for n in range(len(flat))]  # fmt: skip
        mean = [sum(p[v] for p in probs) / len(flat) for v in range(entries)]
        perplexity += math.exp(-sum(p * math.log(p + 1e-7) for p in mean))
    return (groups * entries - perplexity) / (groups * entries)


def ref_cue_probability(ctx, tgt, dis, temperature):
    batch, frames, _ = ctx.shape
    probs = []
    for j in range(batch):
        per_x = []
        for x in range(batch):
            nce = []
            for t in range(frames):
                logits = [cos(tgt[x, t], ctx[j, t]) / temperature]
                for k in dis[j, t].tolist():
                    if torch.equal(ctx[j, k], ctx[j, t]):
                        continue
                    logits.append(cos(tgt[x, t], ctx[j, k]) / temperature)
                nce.append(-(logits[0] - math.log(sum(math.exp(v) for v in logits))))
            per_x.append(math.exp(-sum(nce) / frames))
        probs.append(sum(per_x) / batch)
    return probs


def ref_stats(hidden):
    batch, frames, dim = hidden.shape
    out = []
    for b in range(batch):
        mean = [sum(float(hidden[b, t, d]) for t in range(frames)) / frames for d in range(dim)]
        var = [sum((float(hidden[b, t, d]) - mean[d]) ** 2 for t in range(frames)) / (frames - 1) for d in range(dim)]
        out.append(mean + var)
    return out


def ref_mmd_torch(x, y, p, q, kernel, bandwidth=None, kernel_num=5, kernel_mul=2.0):
    """Equation 11 term by term (float64), weights p / M and q / N."""
    w = [p[j] / len(x) for j in range(len(x))]
    v = [q[k] / len(y) for k in range(len(y))]
    if kernel == "gaussian" and bandwidth is None:
        allv = torch.cat([x, y]).detach()  # the bandwidth carries no gradient
        n = len(allv)
        bandwidth = sum(float((allv[a] - allv[b]).square().sum()) for a in range(n) for b in range(n) if a != b)
        bandwidth /= n * n - n

    def k(a, b):
        if kernel == "linear":
            return torch.dot(a, b)
        d = (a - b).square().sum()
        base = bandwidth / kernel_mul ** (kernel_num // 2)
        return sum(torch.exp(-d / (base * kernel_mul**i)) for i in range(kernel_num))

    total = x.new_zeros(())
    for j in range(len(x)):
        for i in range(len(x)):
            total = total + w[j] * w[i] * k(x[j], x[i])
        for i in range(len(y)):
            total = total - 2 * w[j] * v[i] * k(x[j], y[i])
    for j in range(len(y)):
        for i in range(len(y)):
            total = total + v[j] * v[i] * k(y[j], y[i])
    return total


def test_negative_indices_uniform_over_other_frames():
    gen = torch.Generator().manual_seed(0)
    idx = sample_negative_indices(2, 6, 3000, generator=gen)
    assert idx.shape == (2, 6, 3000)
    own = torch.arange(6)[None, :, None]
    assert bool((idx != own).all()) and int(idx.min()) == 0 and int(idx.max()) == 5
    counts = torch.stack([(idx[:, 2] == f).sum() for f in range(6)]).double()
    others = counts[[0, 1, 3, 4, 5]]
    assert counts[2] == 0 and float(others.std() / others.mean()) < 0.05  # 6000 draws over 5 frames


def test_nce_matches_reference_values_and_gradients():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    tgt[0, 3] = tgt[0, 1]  # a repeated code: that distractor is left out
    tgt.requires_grad_(True)
    neg = sample_negative_indices(2, 5, 6, generator=gen)
    neg[0, 1, 0] = 3  # the repeat is drawn as a distractor of frame 1
    loss, acc = mpc_nce_loss(pred, tgt, neg, temperature=0.1)
    assert loss.dtype == torch.float64
    assert float(loss.detach()) == pytest.approx(ref_nce(pred.detach(), tgt.detach(), neg, 0.1), rel=1e-10)
    grads = torch.autograd.grad(loss, (pred, tgt))
    ref_grads = torch.autograd.grad(ref_nce_torch(pred, tgt, neg, 0.1), (pred, tgt))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    logits = contrastive_logits(pred, tgt, neg)
    assert logits.shape == (2, 5, 7) and torch.isinf(logits[0, 1, 1:][neg[0, 1] == 3]).all()
    assert 0 <= float(acc) <= 1


def test_diversity_loss_reference_and_extremes():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 2, 5, generator=gen, dtype=torch.float64)
    assert float(codebook_diversity_loss(logits)) == pytest.approx(ref_diversity(logits), rel=1e-10)
    # uniform code use: perplexity G*V, loss at its minimum 0; one entry per codebook: 1 - 1/V, its maximum
    uniform = torch.zeros(7, 2, 5, dtype=torch.float64)
    one_hot = torch.full((7, 2, 5), -1e4, dtype=torch.float64)
    one_hot[..., 3] = 0
    assert float(codebook_diversity_loss(uniform)) == pytest.approx(0.0, abs=1e-5)
    assert float(codebook_diversity_loss(one_hot)) == pytest.approx(1 - 1 / 5, abs=1e-5)
    # every code spread evenly over frames (hard choices) is as good as uniform soft use
    spread = torch.full((10, 2, 5), -1e4, dtype=torch.float64)
    spread[torch.arange(10), :, torch.arange(10) % 5] = 0
    assert float(codebook_diversity_loss(spread)) == pytest.approx(0.0, abs=1e-5)
    # any departure from uniform use raises it
    for _ in range(5):
        perturbed = uniform + 0.5 * torch.randn(uniform.shape, generator=gen, dtype=torch.float64)
        assert float(codebook_diversity_loss(perturbed)) > float(codebook_diversity_loss(uniform))
    # a mask restricts the average to the chosen frames
    mask = torch.tensor([True, True, False])
    torch.testing.assert_close(codebook_diversity_loss(logits, mask.view(3, 1).expand(3, 4)),
                               codebook_diversity_loss(logits[:2]))  # fmt: skip


def test_cue_probability_matches_reference():
    gen = torch.Generator().manual_seed(3)
    ctx = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    tgt = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    ctx[1, 2] = ctx[1, 0]
    dis = sample_negative_indices(3, 4, 6, generator=gen)
    got = cue_probability(ctx, tgt, dis, temperature=0.1)
    assert not got.requires_grad
    assert got.tolist() == pytest.approx(ref_cue_probability(ctx, tgt, dis, 0.1), rel=1e-10)
    # more distractors: each utterance's cue is less probable
    many = cue_probability(ctx, tgt, sample_negative_indices(3, 4, 100, generator=gen))
    assert bool((many < got).all())


def test_utterance_statistics_reference_and_lengths():
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    assert utterance_statistics(hidden).tolist() == pytest.approx(
        [pytest.approx(r, rel=1e-10) for r in ref_stats(hidden)]
    )
    padded = torch.cat([hidden, torch.randn(2, 3, 3, dtype=torch.float64)], 1)
    torch.testing.assert_close(utterance_statistics(padded, torch.tensor([6, 6])), utterance_statistics(hidden))


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_mmd_matches_equation_11(kernel):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(4, 4, generator=gen, dtype=torch.float64) + 0.5).requires_grad_(True)
    p = torch.rand(3, generator=gen, dtype=torch.float64)
    q = torch.rand(4, generator=gen, dtype=torch.float64)
    got = mmd_loss(x, y, p, q, kernel=kernel)
    ref = ref_mmd_torch(x, y, p, q, kernel)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-10)
    for g, r in zip(torch.autograd.grad(got, (x, y)), torch.autograd.grad(ref, (x, y))):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-12)


def test_linear_mmd_is_the_authors_weighted_mean_difference():
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    p, q = torch.rand(4, generator=gen), torch.rand(4, generator=gen)
    delta = (p[:, None] * x).mean(0) - (q[:, None] * y).mean(0)  # the authors' linear MMD of p-weighted statistics
    torch.testing.assert_close(mmd_loss(x, y, p, q), delta.dot(delta))


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_mmd_zero_for_identical_batches_and_grows_with_shift(kernel):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 10, generator=gen)
    p = torch.rand(6, generator=gen)
    assert float(mmd_loss(x, x.clone(), p, p.clone(), kernel=kernel)) == pytest.approx(0.0, abs=1e-6)
    values = [float(mmd_loss(x, x + s, p, p, kernel=kernel, bandwidth=20.0)) for s in (0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(values)) and values[0] > 0, values
    with pytest.raises(ValueError, match="kernel"):
        mmd_loss(x, x, kernel="cosine")


def branch(gen, batch=3, frames=5, masked=4, dim=4, hidden=6, k=3, groups=2, entries=3):
    d = torch.float64
    return {
        "predictions": torch.randn(batch, masked, dim, generator=gen, dtype=d, requires_grad=True),
        "targets": torch.randn(batch, masked, dim, generator=gen, dtype=d, requires_grad=True),
        "negatives": sample_negative_indices(batch, masked, k, generator=gen),
        "distractors": sample_negative_indices(batch, masked, k + 2, generator=gen),
        "code_logits": torch.randn(batch, masked, groups, entries, generator=gen, dtype=d, requires_grad=True),
        "feature_penalty": torch.rand((), generator=gen, dtype=d).requires_grad_(True),
        "contexts": torch.randn(batch, frames, hidden, generator=gen, dtype=d, requires_grad=True),
        "lengths": None,
    }


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_mic_is_mpc_on_both_branches_plus_alpha_mmd(kernel):
    gen = torch.Generator().manual_seed(8)
    real, synthetic = branch(gen), branch(gen)
    out = mic_loss(real, synthetic, alpha=10.0, kernel=kernel, temperature=0.1)

    def ref_mpc(b):
        nce = ref_nce_torch(b["predictions"], b["targets"], b["negatives"], 0.1)
        div = torch.tensor(ref_diversity(b["code_logits"].detach()), dtype=torch.float64)
        return nce + 0.1 * div + 10 * b["feature_penalty"]

    probs = [
        torch.tensor(ref_cue_probability(b["predictions"].detach(), b["targets"].detach(), b["distractors"], 0.1),
                     dtype=torch.float64)
        for b in (real, synthetic)
    ]  # fmt: skip
    stats = [torch.stack([torch.cat([c.mean(0), c.var(0)]) for c in b["contexts"]]) for b in (real, synthetic)]
    ref = ref_mpc(real) + ref_mpc(synthetic) + 10.0 * ref_mmd_torch(stats[0], stats[1], probs[0], probs[1], kernel)
    assert float(out["loss"].detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
    # gradients reach both branches' contexts through the MMD and their predictions through the MPC
    params = [real["contexts"], synthetic["contexts"], real["predictions"], synthetic["feature_penalty"]]
    got = torch.autograd.grad(out["loss"], params)
    for g, r in zip(got, torch.autograd.grad(ref, params)):  # (the reference's diversity term is a constant)
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-11)
    # alpha = 0 is MPC on both branches; no cue probabilities then
    mpc_only = mic_loss(real, synthetic, alpha=0.0)
    assert float(mpc_only["loss"].detach()) == pytest.approx(
        float((ref_mpc(real) + ref_mpc(synthetic)).detach()), rel=1e-9
    )
    assert "prob_real" not in mpc_only and float(mpc_only["mmd"]) == 0.0


def test_diversity_gradient_matches_reference():
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 3, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)

    def ref(lg):
        p = torch.softmax(lg, -1).reshape(-1, 2, 4).mean(0)
        return (8 - torch.exp(-(p * torch.log(p + 1e-7)).sum(-1)).sum()) / 8

    torch.testing.assert_close(
        torch.autograd.grad(codebook_diversity_loss(logits), logits)[0], torch.autograd.grad(ref(logits), logits)[0]
    )


def test_losses_under_bf16_autocast_stay_float32():
    gen = torch.Generator().manual_seed(10)
    real, synthetic = branch(gen), branch(gen)
    real32 = {k: (v.detach().float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in real.items()}
    syn32 = {
        k: (v.detach().float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in synthetic.items()
    }
    plain = mic_loss(real32, syn32, alpha=10.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = mic_loss(real32, syn32, alpha=10.0)
    assert auto["loss"].dtype == torch.float32
    torch.testing.assert_close(auto["loss"], plain["loss"])


def test_mpc_loss_terms():
    gen = torch.Generator().manual_seed(11)
    b = branch(gen)
    out = mpc_loss(b["predictions"], b["targets"], b["negatives"], b["code_logits"], b["feature_penalty"])
    expected = out["nce"] + 0.1 * out["diversity"] + 10 * out["penalty"]
    torch.testing.assert_close(out["loss"], expected)
