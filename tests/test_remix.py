"""Mixture-Remix (DPCCN paper, section 2.2, equation 1): the remixing rule and its datasets."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modules.data import collate
from modules.data.mixing import GAIN_RULES, AudioPool, MixingSampler
from modules.data.remix import (
    REMIX_SCENARIO,
    MixtureRemixDataset,
    build_remix_datasets,
    mixture_remix_gains,
    remix_alpha,
)

SPEAKERS = {"A": 3, "B": 2, "C": 1}  # C has one utterance only: never drawn (no enrollment left for it)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """Source-domain utterances of three speakers and four target-domain mixtures, of various lengths."""
    root = tmp_path_factory.mktemp("remix_pools")
    rng = np.random.default_rng(0)
    paths, frames, speakers = [], [], []
    for spk, n in SPEAKERS.items():
        for k in range(n):
            n_frames = int(rng.integers(6000, 12000))
            path = root / f"{spk}-{k}.wav"
            soundfile.write(path, 0.05 * rng.standard_normal(n_frames), 8000, subtype="FLOAT")
            paths.append(path)
            frames.append(n_frames)
            speakers.append(spk)
    utterances = AudioPool(paths, frames, speakers=speakers)
    mix_paths, mix_frames = [], []
    for k in range(4):
        n_frames = int(rng.integers(7000, 10000))
        path = root / f"mix{k}.wav"
        soundfile.write(path, 0.3 * rng.standard_normal(n_frames), 8000, subtype="FLOAT")
        mix_paths.append(path)
        mix_frames.append(n_frames)
    return utterances, AudioPool(mix_paths, mix_frames)


def remix_data(pools, **kwargs):
    utterances, mixtures = pools
    return MixtureRemixDataset(mixtures, utterances, **{"segment": 8000, "seed": 3, **kwargs})


def energy(x):
    return float(np.sum(np.square(np.asarray(x, dtype=np.float64))))


def read(path, start=0, length=-1):
    return soundfile.read(path, frames=length, start=start, dtype="float32")[0]


@pytest.mark.parametrize("snr_range", [(15.0, 20.0), (0.0, 5.0), (-5.0, 0.0)], ids=["paper", "fig3-0-5", "fig3-neg"])
def test_realised_snr_equals_the_drawn_snr(pools, snr_range):
    data = remix_data(pools, snr_range=snr_range)
    for index in range(3 * data.epoch_size):
        item = data[index]
        snr = item["remix_snr"]
        assert snr_range[0] <= snr <= snr_range[1]
        realised = 10 * np.log10(energy(item["s1_sig"]) / energy(item["s2_sig"]))
        assert abs(realised - snr) < 0.01, (index, realised, snr)


def test_the_enrollment_is_another_utterance_of_the_target_speaker(pools):
    utterances, _ = pools
    data = remix_data(pools)
    targets, speakers = set(), set()
    for epoch in range(60):
        for position in range(data.epoch_size):
            plan = data.draw(epoch, position)
            assert plan.enrollment != plan.utterance
            assert utterances.speakers[plan.enrollment] == utterances.speakers[plan.utterance] == plan.speaker
            targets.add(plan.utterance)
            speakers.add(plan.speaker)
    assert speakers == {"A", "B"}  # C (one utterance) is never drawn
    assert targets == {i for i, s in enumerate(utterances.speakers) if s != "C"}
    item, plan = data[5], data.draw(*data.decode(5))
    np.testing.assert_array_equal(item["enroll_sig"].numpy(), read(utterances.paths[plan.enrollment]))


def test_the_target_is_the_source_domain_utterance_and_the_mixture_is_scaled(pools):
    """s1 is the utterance's window exactly; s2 is alpha times the mixture's window (equation 1); mix = s1 + s2."""
    utterances, mixtures = pools
    data = remix_data(pools)
    for index in range(data.epoch_size):
        item = data[index]
        plan = data.draw(*data.decode(index))
        source = read(utterances.paths[plan.utterance], plan.utterance_start, plan.length)
        mixture = read(mixtures.paths[plan.mixture], plan.mixture_start, plan.length)
        np.testing.assert_array_equal(item["s1_sig"].numpy(), source)  # not scaled
        alpha = np.sqrt(energy(source) / (10 ** (plan.snr / 10) * energy(mixture)))
        np.testing.assert_allclose(item["s2_sig"].numpy(), alpha * mixture, rtol=1e-6, atol=1e-9)
        assert torch.equal(item["mix_sig"], item["s1_sig"] + item["s2_sig"])
        assert item["scenario"] == REMIX_SCENARIO and plan.length == min(8000, *(x.shape[0] for x in (source, mixture)))


def test_every_mixture_once_per_epoch_deterministic_and_resumable(pools):
    _, mixtures = pools
    data = remix_data(pools)
    assert len(data) == len(mixtures)
    sampler = MixingSampler(data)
    sampler.set_epoch(4)
    indices = list(sampler)
    assert sorted(data.decode(i)[1] for i in indices) == list(range(len(mixtures)))
    assert {data.decode(i)[0] for i in indices} == {4}
    assert sorted(data.draw(4, p).mixture for p in range(len(mixtures))) == list(range(len(mixtures)))
    again = remix_data(pools)  # a fresh dataset (another process, a resumed run) gives the same item
    for i in indices:
        assert torch.equal(data[i]["mix_sig"], again[i]["mix_sig"])
    assert data.draw(4, 0) != data.draw(5, 0)  # a new epoch, new draws


def test_source_domain_items_join_the_epoch(pools):
    gen = torch.Generator().manual_seed(0)
    source_items = [
        {"id": f"libri{i}", "mix_sig": torch.randn(9000, generator=gen), "s1_sig": torch.randn(9000, generator=gen),
         "s2_sig": torch.randn(9000, generator=gen), "enroll_sig": torch.randn(5000, generator=gen)}
        for i in range(3)
    ]  # fmt: skip
    data = remix_data(pools, source_items=source_items)
    assert data.epoch_size == 3 + 4 and data.n_source == 3
    assert [data[i]["id"] for i in range(3)] == ["libri0", "libri1", "libri2"]
    assert data[1]["scenario"] == "2sp" and data[3]["scenario"] == REMIX_SCENARIO
    batch = collate([data[1], data[3], data[3 + data.epoch_size + 2]])  # one 2-speaker item, two remixes
    assert batch.sources.shape[-1] == 2 and batch.enroll.shape[0] == 3 and batch.supervised.all()
    assert batch.scenario == ["2sp", REMIX_SCENARIO, REMIX_SCENARIO]


def test_gain_rule_is_registered_and_bad_pools_are_rejected(pools):
    utterances, mixtures = pools
    assert GAIN_RULES["mixture_remix"] is mixture_remix_gains
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4000))
    gains, _ = mixture_remix_gains(x, None, np.random.default_rng(1), snr_range=(10.0, 10.0))
    assert gains[0] == 1.0 and gains[1] == pytest.approx(remix_alpha(x[0], x[1], 10.0))
    lonely = AudioPool(utterances.paths[:1] + utterances.paths[-1:], [6000, 6000], speakers=["A", "C"])
    with pytest.raises(ValueError, match="two utterances"):
        MixtureRemixDataset(mixtures, lonely)
    with pytest.raises(ValueError, match="low <= high"):
        MixtureRemixDataset(mixtures, utterances, snr_range=(20, 15))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Mini Libri2Mix (with LibriSpeech beside it) and Aishell2Mix, prepared as the remix yamls prepare them."""
    from data_prep.aishell2mix import prepare_aishell2mix
    from data_prep.librimix import prepare_librimix
    from data_prep.librispeech import prepare_remix_sources
    from data_prep.mini import make_mini_aishell2mix, make_mini_librimix

    tmp_path = tmp_path_factory.mktemp("remix_prep")
    libri = make_mini_librimix(tmp_path, seed=0, n_train=6, n_valid=2, n_test=1, sample_rates=(8000,),
                               modes=("min",), n_spks=(2,), mix_types=("mix_clean",), enrollment=True)  # fmt: skip
    aishell = make_mini_aishell2mix(tmp_path, seed=0, n_train=5, n_valid=2, n_test=1)
    save = tmp_path / "prep"
    librimix = partial(prepare_librimix, libri, save, task="sep_clean", enrollment=True,
                       aux_list=libri / "lists" / "libri2mix")  # fmt: skip
    paths = prepare_remix_sources(librimix, save, libri)  # LibriSpeech found beside Libri2Mix
    aishell_csv = prepare_aishell2mix(aishell, save, cfg_folder=aishell / "lst", splits=("tr", "cv"))
    hparams = {
        "sample_rate": 8000, "seed": 1, "data_folder": str(libri), "remix_data_folder": str(aishell),
        "train_data": paths["train"], "valid_data": paths["valid"], "test_data": paths["test"],
        "remix_train_mixtures": aishell_csv["train"], "remix_valid_mixtures": aishell_csv["valid"],
        "remix_train_utterances": paths["train-clean-100"], "remix_valid_utterances": paths["dev-clean"],
        "remix_snr_range": [15, 20], "with_source_data": True, "remix_valid": True,
        "limit_training_signal_len": True, "training_signal_len": 8000,
    }  # fmt: skip
    return libri, aishell, paths, hparams


def test_the_librispeech_pool_gives_whole_utterances_of_the_target_speaker(prepared):
    """The paper's A-L-3Mix (remix_pool: librispeech, the default): SpkC-1 and SpkC-3 are LibriSpeech utterances
    of one speaker, read whole and resampled from 16 kHz FLAC to the recipe's 8 kHz; the mixed window is from SpkC-1
    and the enrollment is all of SpkC-3, never the same utterance."""
    from modules.audio import resample

    hparams = prepared[-1]
    train, valid, _ = build_remix_datasets(dict(hparams))
    assert all(p.endswith(".flac") and "/LibriSpeech/train-clean-100/" in p for p in train.utterances.paths)
    assert all("/LibriSpeech/dev-clean/" in p for p in valid.utterances.paths)
    assert len(train.eligible) >= 2 and train.sample_rate == 8000
    for position in range(train.n_remix):
        plan = train.draw(3, position)
        target, enroll = (train.utterances.paths[k] for k in (plan.utterance, plan.enrollment))
        assert target != enroll and plan.speaker == Path(target).parent.parent.name == Path(enroll).parent.parent.name
        item = train[3 * train.epoch_size + train.n_source + position]
        x, rate = soundfile.read(enroll)
        assert rate == 16000
        full = resample(x, rate, 8000)
        assert item["enroll_sig"].shape == full.shape  # the whole utterance, at 8 kHz
        np.testing.assert_allclose(item["enroll_sig"].numpy(), full, atol=1e-6)
        source = resample(soundfile.read(target)[0], rate, 8000)
        start = plan.utterance_start
        np.testing.assert_allclose(item["s1_sig"].numpy(), source[start : start + plan.length], atol=1e-6)
        assert plan.length <= 8000 and item["mix_sig"].shape == (plan.length,)
    with pytest.raises(ValueError, match="remix_train_utterances"):
        build_remix_datasets({**hparams, "remix_train_utterances": None})
    with pytest.raises(ValueError, match="remix_pool"):
        build_remix_datasets({**hparams, "remix_pool": "wsj0"})


def test_build_remix_datasets_from_the_prepared_mini_corpora(prepared):
    """remix_pool: librimix (the earlier pool): Aishell2Mix tr/cv (mixture-only) remixed with Libri2Mix sources,
    plus the Libri2Mix items."""
    _, aishell, libri_csv, hparams = prepared
    hparams = {**hparams, "remix_pool": "librimix"}
    train, valid, test = build_remix_datasets(hparams)
    assert (train.n_source, train.n_remix, train.segment) == (6, 5, 8000)
    assert isinstance(train.sampler, MixingSampler) and len(train.sampler) == 11
    assert (valid.n_source, valid.n_remix) == (2, 2) and len(test) == 1
    assert all(str(aishell) in p and "/tr/mix/" in p for p in train.mixtures.paths)
    assert all("/train-100/s" in p for p in train.utterances.paths)  # Libri2Mix training sources
    assert all("/dev/s" in p for p in valid.utterances.paths)  # held-out speakers for validation
    item = train[train.epoch_size * 2 + 7]  # epoch 2, second remixed item
    assert item["id"].startswith("remix_e2_1_") and item["enroll_sig"].ndim == 1
    assert train[0]["id"] in open(libri_csv["train"]).read() and "enroll_sig" in train[0]
    hparams.update(with_source_data=False, remix_valid=False)
    train, valid, _ = build_remix_datasets(hparams)
    assert train.n_source == 0 and len(train) == 5 and len(valid) == 2 and not hasattr(valid, "n_remix")
