"""Dynamic mixing (modules/data/mixing.py) on the mini corpora and on small synthetic pools."""

import math

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.dataio.sampler import DistributedSamplerWrapper
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from modules.data import collate, load_manifest
from modules.data.mixing import (
    GAIN_RULES,
    AudioPool,
    DynamicMixingDataset,
    MixingSampler,
    _loudness,
    build_dynamic_mixing,
    folder_pool,
    librimix_gains,
    manifest_pools,
    register_gain_rule,
    wham_gains,
)

SR = 8000


@pytest.fixture(scope="module")
def manifests(mini_root, tmp_path_factory):
    """Training manifests of the session's mini WHAM! and Libri2Mix / Libri3Mix (sep_noisy, 8k min)."""
    from data_prep.librimix import prepare_librimix
    from data_prep.wham import prepare_wham

    out = tmp_path_factory.mktemp("dm_manifests")
    return {
        "wham": (prepare_wham(mini_root["wham"], out / "wham")["train"], mini_root["wham"]),
        "libri2mix": (prepare_librimix(mini_root["librimix"], out / "l2", n_spks=2)["train"], mini_root["librimix"]),
        "libri3mix": (prepare_librimix(mini_root["librimix"], out / "l3", n_spks=3)["train"], mini_root["librimix"]),
    }


def hparams_for(manifests, corpus, rule, **extra):
    csv, root = manifests[corpus]
    hp = {
        "dm_gain_rule": rule,
        "dm_speaker_rule": "wham" if corpus == "wham" else "librimix",
        "num_spks": 3 if corpus == "libri3mix" else 2,
        "sample_rate": SR,
        "seed": 7,
        "data_folder": str(root),
        "training_signal_len": 16000,
        "limit_training_signal_len": True,
        **extra,
    }
    return hp, csv


def write(path, x, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype="FLOAT")
    return str(path)


@pytest.fixture
def synthetic(tmp_path):
    """Four speakers with random-length utterances (6000 to 16000 frames) and short noise files (3000 frames)."""
    rng = np.random.default_rng(0)
    paths, frames, speakers, raw = [], [], [], {}
    for spk in "abcd":
        for u in range(3):
            n = int(rng.integers(6000, 16001))
            x = 0.1 * rng.standard_normal(n)
            p = write(tmp_path / "speech" / spk / f"{spk}{u}.wav", x)
            paths.append(p)
            frames.append(n)
            speakers.append(spk)
            raw[p] = x.astype(np.float32)
    noise_paths = []
    for k in range(3):
        x = 0.05 * rng.standard_normal(3000)
        noise_paths.append(write(tmp_path / "noise" / f"n{k}.wav", x))
        raw[noise_paths[-1]] = x.astype(np.float32)
    sources = AudioPool(paths, frames, speakers=speakers)
    noise = AudioPool(noise_paths, [3000] * 3)
    return sources, noise, raw, tmp_path


def assert_exact_noise(item, n_src):
    """The returned noise is the noise in the mixture, and all signals have the mixture's length."""
    mix = item["mix_sig"]
    sources = [item[f"s{k + 1}_sig"] for k in range(n_src)]
    assert all(t.dtype == torch.float32 and t.ndim == 1 for t in [mix, *sources, item["noise_sig"]])
    assert {t.shape[0] for t in [mix, *sources, item["noise_sig"]]} == {mix.shape[0]}
    residual = mix - torch.stack(sources).sum(0)
    assert item["noise_sig"].abs().max() > 1e-3  # a real noise, not zeros
    torch.testing.assert_close(residual, item["noise_sig"], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# Exact noise, both rules, through collate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("corpus", "rule"), [("wham", "wham"), ("libri2mix", "librimix"), ("libri3mix", "librimix")])
def test_noise_is_exactly_mix_minus_sources(manifests, corpus, rule):
    hp, csv = hparams_for(manifests, corpus, rule)
    data, sampler = build_dynamic_mixing(hp, csv)
    n_src = hp["num_spks"]
    for i in range(6):
        item = data[i]
        assert_exact_noise(item, n_src)
        assert item["mix_sig"].shape[0] <= 16000
        assert item["scenario"] == f"{n_src}sp+n"
        peak = max(item[k].abs().max() for k in item if k.endswith("_sig"))
        assert peak <= 0.9 + 1e-6  # both rules: nothing above 0.9
    sampler.set_epoch(1)
    loader = torch.utils.data.DataLoader(data, batch_size=3, sampler=sampler, collate_fn=collate)
    batch = next(iter(loader))
    assert batch.sources.shape[-1] == n_src and batch.noise_mask.all() and batch.all_supervised
    for b in range(3):
        n = int(batch.lengths[b])
        torch.testing.assert_close(
            batch.mix[b, :n] - batch.sources[b, :n].sum(-1), batch.noise[b, :n], atol=1e-6, rtol=0
        )


def test_wham_rule_levels_are_upstream_statistics():
    """First level N(-27.43, 2.57) clipped to [-45, 0], others relative N(-2.51, 2.66); one common peak-0.9 scale."""
    rng = np.random.default_rng(3)
    sources = (rng.standard_normal((3, 4000)) * [[0.5], [0.01], [2.0]]).astype(np.float32)
    noise = (0.02 * rng.standard_normal(4000)).astype(np.float32)
    gains, common = wham_gains(sources, noise, np.random.default_rng(11), SR)
    ref = np.random.default_rng(11)
    first = np.clip(ref.normal(-27.43, 2.57), -45, 0)
    expected = np.concatenate([[first], np.clip(first + ref.normal(-2.51, 2.66, size=2), -45, 0)])
    levels = 20 * np.log10(np.abs(gains[:, None] / common * sources.astype(np.float64)).mean(1))
    np.testing.assert_allclose(levels, expected, atol=1e-6)
    scaled = gains[:, None] * sources
    mix = scaled.sum(0) + common * noise
    assert math.isclose(max(np.abs(mix).max(), np.abs(scaled).max(), np.abs(common * noise).max()), 0.9, rel_tol=1e-6)


def test_librimix_rule_loudness_and_clipping():
    rng = np.random.default_rng(5)
    sources = 0.3 * rng.standard_normal((2, 16000))
    noise = 0.3 * rng.standard_normal(16000)
    gains, noise_gain = librimix_gains(sources, noise, np.random.default_rng(1), SR)
    loud = [_loudness(g * s, SR) for g, s in zip(gains, sources)]
    assert all(-33 - 1e-6 <= v <= -25 + 1e-6 for v in loud), loud  # no clipping here: levels are the targets
    assert -38 - 1e-6 <= _loudness(noise_gain * noise, SR) <= -30 + 1e-6
    ref = np.random.default_rng(1)
    np.testing.assert_allclose(loud, ref.uniform(-33, -25, size=2), atol=1e-6)
    # A spike would need a gain that clips: it is scaled to a peak of 0.9, then the mixture to 0.9.
    spike = np.zeros(16000)
    spike[100] = 0.01
    gains, noise_gain = librimix_gains(np.stack([spike, sources[0]]), noise, np.random.default_rng(1), SR)
    mix = gains[0] * spike + gains[1] * sources[0] + noise_gain * noise
    assert np.abs(mix).max() <= 0.9 + 1e-9
    assert gains[0] * 0.01 <= 0.9 + 1e-9
    # A window shorter than pyloudnorm's 400 ms block is measured tiled to one block.
    short = sources[:, :1000]
    gains, _ = librimix_gains(short, None, np.random.default_rng(2), SR)
    tiled = [_loudness(np.resize(g * x, 3201), SR) for g, x in zip(gains, short)]
    np.testing.assert_allclose(tiled, np.random.default_rng(2).uniform(-33, -25, size=2), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_mixtures_other_epoch_or_seed_other_mixtures(manifests):
    hp, csv = hparams_for(manifests, "wham", "wham")
    a, _ = build_dynamic_mixing(hp, csv)
    b, _ = build_dynamic_mixing(hp, csv)
    other_seed, _ = build_dynamic_mixing({**hp, "seed": 8}, csv)
    n = a.epoch_size
    for i in range(4):
        x, y = a[2 * n + i], b[2 * n + i]
        assert x["id"] == y["id"]
        for key in ("mix_sig", "s1_sig", "s2_sig", "noise_sig"):
            assert torch.equal(x[key], y[key])
    epoch2 = [a[2 * n + i]["mix_sig"] for i in range(n)]
    epoch3 = [a[3 * n + i]["mix_sig"] for i in range(n)]
    seed8 = [other_seed[2 * n + i]["mix_sig"] for i in range(n)]
    for other in (epoch3, seed8):
        assert sum(x.shape == y.shape and torch.equal(x, y) for x, y in zip(epoch2, other)) == 0


def test_sampler_order_and_epoch_sources(synthetic):
    sources, noise, _, _ = synthetic
    data = DynamicMixingDataset(sources, noise, num_spks=2, epoch_size=10, seed=4)
    sampler = MixingSampler(data)
    sampler.set_epoch(5)
    first = list(sampler)
    assert sorted(first) == list(range(50, 60)) and first != sorted(first)
    assert list(sampler) == first  # the order is a function of (seed, epoch)
    sampler.set_epoch(6)
    assert sorted(sampler) == list(range(60, 70)) and [i - 10 for i in sampler] != first
    counter = EpochCounter(limit=10)
    follows = MixingSampler(data, epoch_counter=counter)
    for _ in range(2):
        next(counter)
    assert counter.current == 2 and sorted(follows) == list(range(20, 30))


def test_items_do_not_depend_on_workers(synthetic):
    sources, noise, _, _ = synthetic
    data = DynamicMixingDataset(sources, noise, num_spks=2, epoch_size=8, seed=4, segment=4000)
    sampler = MixingSampler(data)
    sampler.set_epoch(2)
    torch.manual_seed(0)
    runs = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(
            data, batch_size=2, sampler=sampler, collate_fn=collate, num_workers=workers
        )
        runs.append([b.mix for b in loader])
        torch.manual_seed(1)  # the global RNGs play no part
        np.random.seed(1)
    assert all(torch.equal(x, y) for x, y in zip(*runs)) and len(runs[0]) == 4


# ---------------------------------------------------------------------------------------------
# Speakers and crops
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("corpus", ["wham", "libri3mix"])
def test_speakers_of_a_mixture_are_distinct(manifests, corpus):
    hp, csv = hparams_for(manifests, corpus, "wham")
    data, _ = build_dynamic_mixing(hp, csv)
    pool = data.sources
    for i in range(300):
        plan = data.draw(1, i)
        speakers = [pool.speakers[u] for u in plan.utterances]
        assert len(set(speakers)) == hp["num_spks"]


def test_speaker_weighting_count_and_uniform():
    speakers = ["a"] * 9 + ["b", "c"]
    pool = AudioPool([f"{i}.wav" for i in range(11)], [100] * 11, speakers=speakers)
    freq = {}
    for weighting in ("count", "uniform"):
        data = DynamicMixingDataset(pool, num_spks=1, seed=0, speaker_weighting=weighting)
        draws = [pool.speakers[data.draw(0, i).utterances[0]] for i in range(3000)]
        freq[weighting] = draws.count("a") / len(draws)
    assert abs(freq["count"] - 9 / 11) < 0.03 and abs(freq["uniform"] - 1 / 3) < 0.03


@pytest.mark.parametrize("segment", [None, 5000, 2000])
def test_crops_inside_real_lengths_noise_shorter(synthetic, segment):
    sources, noise, raw, _ = synthetic
    data = DynamicMixingDataset(sources, noise, num_spks=3, segment=segment, epoch_size=20, seed=2)
    starts_seen = set()
    for i in range(20):
        plan = data.draw(0, i)
        frames = [int(sources.frames[u]) for u in plan.utterances] + [3000]
        assert plan.length == min(frames + ([segment] if segment else []))
        assert plan.length == min(3000, segment or 3000)  # the noise is the shortest signal
        for start, n in zip([*plan.starts, plan.noise_start], frames):
            assert 0 <= start <= n - plan.length
        starts_seen.update(plan.starts)
        item = data.make(0, i)
        assert_exact_noise(item, 3)
        # every returned signal is a scaled copy of its file's window, noise included
        windows = [raw[sources.paths[u]][s : s + plan.length] for u, s in zip(plan.utterances, plan.starts)]
        windows.append(raw[noise.paths[plan.noise]][plan.noise_start : plan.noise_start + plan.length])
        for window, key in zip(windows, ["s1_sig", "s2_sig", "s3_sig", "noise_sig"]):
            got = item[key].numpy()
            gain = np.dot(got, window) / np.dot(window, window)
            np.testing.assert_allclose(got, gain * window, atol=1e-6)
    assert len(starts_seen) > 10  # random windows, not always the beginning


def test_full_length_when_no_segment(manifests):
    hp, csv = hparams_for(manifests, "libri2mix", "librimix", limit_training_signal_len=False)
    data, _ = build_dynamic_mixing(hp, csv)
    assert data.segment is None
    for i in range(5):
        plan = data.draw(0, i)
        frames = [int(data.sources.frames[u]) for u in plan.utterances] + [int(data.noise.frames[plan.noise])]
        assert plan.length == min(frames) and data.make(0, i)["mix_sig"].shape[0] == plan.length


# ---------------------------------------------------------------------------------------------
# Resume and DDP
# ---------------------------------------------------------------------------------------------


def test_resume_mid_epoch_continues_the_sequence(manifests, tmp_path):
    hp, csv = hparams_for(manifests, "wham", "wham", dm_epoch_size=12)

    def loader():
        data, sampler = build_dynamic_mixing(hp, csv)
        sampler.set_epoch(3)
        return SaveableDataLoader(data, batch_size=2, sampler=sampler, collate_fn=collate)

    full = [b.ids for b in loader()]
    assert len(full) == 6 and len({i for ids in full for i in ids}) == 12
    interrupted = loader()
    ckpt = Checkpointer(tmp_path / "ckpt", recoverables={"dataloader-TRAIN": interrupted})
    iterator = iter(interrupted)
    seen = [next(iterator).ids for _ in range(2)]
    ckpt.save_checkpoint(end_of_epoch=False)  # as Brain's intra-epoch checkpoints
    assert seen == full[:2]
    resumed = loader()
    Checkpointer(tmp_path / "ckpt", recoverables={"dataloader-TRAIN": resumed}).recover_if_possible()
    assert [b.ids for b in resumed] == full[2:]
    assert [b.ids for b in resumed] == full  # the next epoch pass starts from the beginning again


@pytest.mark.parametrize("shuffle", [False, True])
def test_ddp_ranks_draw_disjoint_mixtures(synthetic, shuffle):
    sources, noise, _, _ = synthetic
    data = DynamicMixingDataset(sources, noise, num_spks=2, epoch_size=10, seed=4, segment=2000)
    shares = []
    for rank in (0, 1):
        wrapper = DistributedSamplerWrapper(MixingSampler(data), num_replicas=2, rank=rank, shuffle=shuffle)
        wrapper.set_epoch(4)
        indices = list(wrapper)
        assert len(indices) == 5 and all(40 <= i < 50 for i in indices)
        shares.append({data[i]["id"] for i in indices})
    assert len(shares[0]) == len(shares[1]) == 5 and not shares[0] & shares[1]


# ---------------------------------------------------------------------------------------------
# Pools and builder
# ---------------------------------------------------------------------------------------------


def test_manifest_pools(manifests):
    csv, root = manifests["libri3mix"]
    sources, noise, n_rows = manifest_pools(csv, SR, "librimix", data_folder=root)
    assert n_rows == 6 and len(noise) == 6 and len(sources) == 18
    assert all(name.startswith(spk + "-") for name, spk in zip(sources.names, sources.speakers))
    for path, frames in zip(sources.paths[:4], sources.frames[:4]):
        assert soundfile.info(path).frames == frames
    data = load_manifest(csv, root)
    via_dataset = manifest_pools(data, SR, "librimix")[0]
    assert via_dataset.paths == sources.paths
    csv, root = manifests["wham"]
    sources, _, _ = manifest_pools(csv, SR, "wham", data_folder=root, with_noise=False)
    assert all(len(spk) == 3 and name.startswith(spk) for name, spk in zip(sources.names, sources.speakers))


def test_folder_pools_and_builder(synthetic, manifests):
    _, _, _, root = synthetic
    by_level = folder_pool(root / "speech", SR, speaker_level=1)
    by_regex = folder_pool(root / "speech", SR, speaker_regex=r"/([a-d])\d\.wav$")
    assert by_level.speakers == by_regex.speakers == [s for s in "abcd" for _ in range(3)]
    assert by_level.frames.tolist() == [soundfile.info(p).frames for p in by_level.paths]
    hp, csv = hparams_for(
        manifests, "wham", "librimix", dm_sources_folder=str(root / "speech"), dm_noise_folder=str(root / "noise")
    )
    data, _ = build_dynamic_mixing(hp, csv)
    assert len(data.sources) == 12 and len(data.noise) == 3 and data.epoch_size == 6
    item = data[0]
    assert_exact_noise(item, 2)
    assert item["mix_sig"].shape[0] == 3000  # the noise files are the shortest
    # sources from the folder, noise from the manifest's noise column
    data, _ = build_dynamic_mixing({**hp, "dm_noise_folder": None}, csv)
    assert all("/noise/" in p and p.endswith(".wav") for p in data.noise.paths) and len(data.noise) == 6
    # without noise
    data, _ = build_dynamic_mixing({**hp, "dm_use_noise": False}, csv)
    item = data[1]
    assert data.noise is None and "noise_sig" not in item and item["scenario"] == "2sp"
    torch.testing.assert_close(item["mix_sig"], item["s1_sig"] + item["s2_sig"], atol=1e-6, rtol=0)


def test_clear_errors(synthetic, manifests, tmp_path):
    sources, noise, _, root = synthetic
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        folder_pool(tmp_path / "empty", SR)
    with pytest.raises(ValueError, match="empty"):
        DynamicMixingDataset(AudioPool([], [], speakers=[]), num_spks=2)
    with pytest.raises(ValueError, match="4 speaker"):
        DynamicMixingDataset(sources, noise, num_spks=5)
    with pytest.raises(ValueError, match=r"unknown gain rule 'nope' \(known: .*librimix.*wham"):
        DynamicMixingDataset(sources, noise, gain_rule="nope")
    hp, csv = hparams_for(manifests, "wham", "wham")
    with pytest.raises(ValueError, match="unknown speaker rule"):
        build_dynamic_mixing({**hp, "dm_speaker_rule": "nope"}, csv)
    with pytest.raises(ValueError, match="speaker rule 'librimix'"):
        build_dynamic_mixing({**hp, "dm_speaker_rule": "librimix"}, csv)  # WHAM! names are not LibriSpeech ids
    with pytest.raises(ValueError, match="dm_gain_rule"):
        build_dynamic_mixing({k: v for k, v in hp.items() if k != "dm_gain_rule"}, csv)
    with pytest.raises(ValueError, match="16000 Hz, the recipe at 8000 Hz"):
        write(root / "speech" / "e" / "e0.wav", np.zeros(100), sr=16000)
        folder_pool(root / "speech", SR, speaker_level=1)
    clean = tmp_path / "clean.csv"
    clean.write_text("ID,duration,s1_wav,s2_wav\na_0_b_0,1.0,x.wav,y.wav\n")
    with pytest.raises(ValueError, match="no noise_wav column"):
        build_dynamic_mixing({**hp, "dm_use_noise": True}, str(clean))
    with pytest.raises(ValueError, match="already registered"):
        register_gain_rule("wham", wham_gains)
    assert set(GAIN_RULES) >= {"wham", "librimix"}
