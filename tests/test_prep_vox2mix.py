"""Vox2Mix: both public variants on the mini corpus, the official mixing rule on hand-made utterances,
the public mixture layouts, resumption, bad input."""

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import vox2mix
from data_prep.common import PrepError, is_supervised, manifest_header
from data_prep.mini import make_mini_vox2mix
from data_prep.vox2mix import (
    DIP_MIX_DIR,
    dip_mixture_name,
    mix_sources,
    parse_mixing_row,
    prepare_vox2mix,
    read_mixing_lists,
    wsj_mixture_name,
)
from modules.audio import resample

REPO = Path(__file__).resolve().parents[1]
SIZES = {"train": 3, "valid": 2, "test": 2}
LSB = 1 / 32768
VOX_UTT = re.compile(r"^id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.wav$")
GAIN = r"-?\d+(?:\.\d+)?"
UTT = r"id\d{5}_[A-Za-z0-9_-]{11}_\d{5}"
WSJ_NAME = re.compile(rf"^({UTT})_({GAIN})_({UTT})_({GAIN})\.wav$")


@pytest.fixture(scope="module")
def vox_root(tmp_path_factory):
    return make_mini_vox2mix(tmp_path_factory.mktemp("vox"), seed=0, n_train=3, n_valid=2, n_test=2)


@pytest.fixture()
def dip_copy(tmp_path, vox_root):
    """A writable copy of the DIP tree (the simulation writes into data_folder by default)."""
    root = tmp_path / "DIP"
    shutil.copytree(vox_root / "DIP", root)
    return root


def _read(path):
    return sf.read(path, dtype="float64")[0]


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ mini corpus


def test_mini_layout(vox_root):
    dip, two = vox_root / "DIP", vox_root / "VoxCeleb2-2Mix"
    sources = sorted(p.relative_to(dip / "audio_clean").as_posix() for p in (dip / "audio_clean").rglob("*.wav"))
    assert {s.split("/")[0] for s in sources} == {"train", "test"}
    for rel in sources:
        assert VOX_UTT.match(rel.split("/", 1)[1]), rel
    rows = read_mixing_lists(sorted((dip / "lists").glob("*.csv")))
    assert {k: len(v) for k, v in rows.items()} == {"train": 3, "val": 2, "test": 2}
    for dip_set, items in rows.items():
        names = sorted(p.name for p in (dip / DIP_MIX_DIR / dip_set).iterdir())
        assert names == sorted(dip_mixture_name(r) for r in items)
        for name in names:  # the official int16 conversion: peak 1.0 -> 32767
            assert np.abs(sf.read(dip / DIP_MIX_DIR / dip_set / name, dtype="int16")[0]).max() == 32767
        for row in items:
            assert row.gain1 == 0 and -10 <= row.gain2 <= 10
            assert (row.subset1 == "test") == (dip_set == "test")
    for split, n in zip(("tr", "cv", "tt"), SIZES.values()):
        names = sorted(p.name for p in (two / split / "mix").iterdir())
        assert len(names) == n
        for name in names:
            m = WSJ_NAME.match(name)
            assert m and float(m.group(4)) == -float(m.group(2)), name
            for folder in ("mix", "s1", "s2"):
                info = sf.info(two / split / folder / name)
                assert (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
            s1, s2 = _read(two / split / "s1" / name), _read(two / split / "s2" / name)
            np.testing.assert_allclose(_read(two / split / "mix" / name), s1 + s2, atol=2 * LSB)
            assert 20 * np.log10(_rms(s1) / _rms(s2)) == pytest.approx(2 * float(m.group(2)), abs=0.02)


def test_mixing_row_interpretation():
    text = "train,train,id08108,RCODGWdfzdY/00197,0,train,id07077,oi72_HHDWY4/00288,0.8977,4.096"
    row = parse_mixing_row(text.split(","))
    assert (row.split, row.subset1, row.spk1, row.utt1, row.gain1) == (
        "train",
        "train",
        "id08108",
        "RCODGWdfzdY/00197",
        0,
    )
    assert (row.subset2, row.spk2, row.utt2, row.gain2, row.duration) == (
        "train",
        "id07077",
        "oi72_HHDWY4/00288",
        0.8977,
        4.096,
    )
    assert dip_mixture_name(row) == text.replace(",", "_").replace("/", "_") + ".wav"
    assert dip_mixture_name(row).startswith("train_train_id08108_RCODGWdfzdY_00197_0_train_id07077_oi72_HHDWY4")
    assert wsj_mixture_name(row) == "id08108_RCODGWdfzdY_00197_0_id07077_oi72_HHDWY4_00288_0.8977.wav"


# --------------------------------------------------------------- the variants


def test_prepare_2mix(tmp_path, vox_root):
    root = vox_root / "VoxCeleb2-2Mix"
    paths = prepare_vox2mix(root, tmp_path)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": "vox2mix_tr.csv",
        "valid": "vox2mix_cv.csv",
        "test": "vox2mix_tt.csv",
    }
    header = ",".join(manifest_header(["mix", "s1", "s2"]))
    for key, path in paths.items():
        assert Path(path).read_text().splitlines()[0] == header
        data = _load(path, root)
        assert len(data) == SIZES[key]
        for utt_id, row in data.items():
            info = sf.info(row["mix_wav"])
            assert row["duration"] == pytest.approx(info.frames / 16000)
            assert Path(row["s2_wav"]).name == f"{utt_id}.wav"
    sidecar = json.loads((tmp_path / "vox2mix_prep.json").read_text())
    assert sidecar["variant"] == "2mix" and sidecar["supervised"] == {"train": True, "valid": True, "test": True}
    assert is_supervised(paths["test"])


def test_prepare_dip_mixtures_only(tmp_path, vox_root):
    root = vox_root / "DIP"
    paths = prepare_vox2mix(root, tmp_path, splits=("tr", "tt"))
    assert list(paths) == ["train", "test"]
    for key, path in paths.items():
        assert Path(path).read_text().splitlines()[0] == "ID,duration,mix_wav,mix_wav_format,mix_wav_opts"
        assert not is_supervised(path)
        data = _load(path, root)
        assert len(data) == SIZES[key]
        for utt_id, row in data.items():
            assert f"/{DIP_MIX_DIR}/" in row["mix_wav"] and Path(row["mix_wav"]).stem == utt_id
    sidecar = json.loads((tmp_path / "vox2mix_prep.json").read_text())
    assert sidecar["supervised"] == {"train": False, "test": False} and sidecar["variant"] == "dip"


def _check_simulated(data_folder, paths, sample_rate=16000, shipped=True):
    rows = read_mixing_lists(sorted((data_folder / "lists").glob("*.csv")))
    by_name = {wsj_mixture_name(r)[:-4]: r for items in rows.values() for r in items}
    n_checked = 0
    for path in paths.values():
        for utt_id, row in _load(path, data_folder).items():
            listed = by_name[utt_id]
            sig = {}
            for key, subtype in (("mix", "PCM_16"), ("s1", "FLOAT"), ("s2", "FLOAT")):
                info = sf.info(row[f"{key}_wav"])
                assert (info.samplerate, info.subtype, info.channels) == (sample_rate, subtype, 1)
                sig[key] = _read(row[f"{key}_wav"])
            src = [
                resample(_read(data_folder / "audio_clean" / r[0] / r[1] / f"{r[2]}.wav"), 16000, sample_rate)
                for r in ((listed.subset1, listed.spk1, listed.utt1), (listed.subset2, listed.spk2, listed.utt2))
            ]
            n = len(sig["mix"])
            assert n == len(sig["s1"]) == len(sig["s2"]) == min(len(x) for x in src)  # cut to the shorter source
            assert row["duration"] == pytest.approx(n / sample_rate)
            g1 = np.dot(sig["s1"], src[0][:n]) / np.dot(src[0][:n], src[0][:n])
            g2 = np.dot(sig["s2"], src[1][:n]) / np.dot(src[1][:n], src[1][:n])
            np.testing.assert_allclose(sig["s1"], g1 * src[0][:n], atol=1e-6)  # a pure gain of each source
            np.testing.assert_allclose(sig["s2"], g2 * src[1][:n], atol=1e-6)
            # interferer at its listed gain relative to the target, powers over the whole utterances
            whole = math.sqrt(np.mean(src[0] ** 2) / np.mean(src[1] ** 2))
            assert g2 / g1 == pytest.approx(10 ** (listed.gain2 / 20) * whole, rel=1e-5)
            assert np.abs(sig["mix"]).max() == 32767 / 32768  # mixture peak 1.0, official int16
            np.testing.assert_allclose(sig["mix"], sig["s1"] + sig["s2"], atol=LSB)
            if sample_rate == 16000 and shipped:  # the mixtures the mini corpus ships, sample for sample
                published = _read(data_folder / DIP_MIX_DIR / listed.split / dip_mixture_name(listed))
                np.testing.assert_array_equal(sig["mix"], published)
            n_checked += 1
    return n_checked


def test_dip_simulation_follows_the_mixing_list(tmp_path, dip_copy):
    paths = prepare_vox2mix(dip_copy, tmp_path / "prep", mixing_list=dip_copy / "lists")
    assert _check_simulated(dip_copy, paths) == sum(SIZES.values())
    raw = Path(paths["test"]).read_text()
    assert "$data_root/Vox2Mix/wav16k/tt/s1/" in raw and str(dip_copy) not in raw
    sidecar = json.loads((tmp_path / "prep" / "vox2mix_prep.json").read_text())
    assert sidecar["supervised"]["train"] is True
    names = [p.name for p in (dip_copy / "Vox2Mix" / "wav16k" / "tr" / "mix").iterdir()]
    assert len(names) == SIZES["train"] and all(WSJ_NAME.match(n) for n in names)


def test_dip_simulation_outside_data_folder_and_8k(tmp_path, vox_root):
    sim = tmp_path / "scratch" / "sim8k"
    lists = sorted((vox_root / "DIP" / "lists").glob("*.csv"))
    paths = prepare_vox2mix(
        vox_root / "DIP", tmp_path / "prep", mixing_list=lists, sim_folder=sim, sample_rate=8000, splits=("cv",)
    )
    assert list(paths) == ["valid"]
    assert "$data_root/../" in Path(paths["valid"]).read_text()  # reached from data_folder through ..
    assert _check_simulated(vox_root / "DIP", paths, sample_rate=8000) == SIZES["valid"]
    assert not (vox_root / "DIP" / "Vox2Mix").exists()


# ------------------------------------------------- the official rule, by hand


def _alternating(*segments):
    """int16 samples: for each ``(amplitude, count)``, ``amplitude * (-1)**k`` (k counted from the start)."""
    values = np.concatenate([np.full(count, amplitude, dtype=np.int64) for amplitude, count in segments])
    return values * (-1) ** np.arange(len(values))


def _write_int16(path, values, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(values, dtype=np.int16), rate, subtype="PCM_16")


#: Three mixing-list rows on hand-made utterances: (row, target int16, interferer int16).
HAND_ROWS = [
    # target power over the whole utterance (5e6) differs from that of the mixed part;
    # the target's gain field (3) must be ignored
    (
        "train,train,id00001,aaaaaaaaaaa/00001,3,train,id00002,bbbbbbbbbbb/00002,-6,0.075",
        _alternating((1000, 800), (3000, 800)),
        _alternating((500, 1200)),
    ),
    # the target is the shorter one; the interferer turns to antiphase after 500 samples
    (
        "val,train,id00003,ccccccccccc/00003,0,train,id00004,ddddddddddd/00004,0,0.0625",
        _alternating((6000, 1000)),
        _alternating((1000, 500), (-3000, 900)),
    ),
    # the voices partly cancel everywhere: the target is louder than the mixture
    (
        "test,test,id00005,eeeeeeeeeee/00005,0,test,id00006,fffffffffff/00006,-20,0.05",
        _alternating((8000, 800)),
        _alternating((-1000, 800)),
    ),
]


def _hand_corpus(root):
    for text, target, interferer in HAND_ROWS:
        row = parse_mixing_row(text.split(","))
        _write_int16(root / "audio_clean" / row.subset1 / row.spk1 / f"{row.utt1}.wav", target)
        _write_int16(root / "audio_clean" / row.subset2 / row.spk2 / f"{row.utt2}.wav", interferer)
    lst = root / "mixture_data_list_2mix.csv"
    lst.write_text("".join(text + "\n" for text, _, _ in HAND_ROWS))
    return lst


def _expected_by_hand():
    """Per row: (n, interferer factor f, mixture peak), all in int16 units, worked out by hand."""
    p_t, p_i = (1000**2 + 3000**2) / 2, 500**2  # whole utterances: 5e6 and 2.5e5
    f_a = 10 ** (-6 / 20) * math.sqrt(p_t / p_i)
    p_i = (1000**2 * 500 + 3000**2 * 900) / 1400
    f_b = 10 ** (0 / 20) * math.sqrt(6000**2 / p_i)
    f_c = 10 ** (-20 / 20) * math.sqrt(8000**2 / 1000**2)  # 0.8
    return [
        (1200, f_a, 3000 + 500 * f_a),  # peak where the target is 3000
        (1000, f_b, 6000 + 1000 * f_b),  # peak in the first 500 samples
        (800, f_c, 8000 - 1000 * f_c),  # 7200
    ]


def test_official_rule_by_hand(tmp_path):
    lst = _hand_corpus(tmp_path)
    paths = prepare_vox2mix(tmp_path, tmp_path / "prep", mixing_list=lst)
    for (text, target, interferer), (n, f, peak), key in zip(HAND_ROWS, _expected_by_hand(), paths):
        row = parse_mixing_row(text.split(","))
        data = _load(paths[key], tmp_path)
        assert list(data) == [wsj_mixture_name(row)[:-4]]
        files = data[wsj_mixture_name(row)[:-4]]
        assert files["duration"] == n / 16000
        mix = (target[:n] + f * interferer[:n]) / peak  # peak 1.0
        assert np.abs(mix).max() == pytest.approx(1.0, abs=1e-12)
        ints = sf.read(files["mix_wav"], dtype="int16")[0]
        np.testing.assert_array_equal(ints, np.trunc(32767 * mix))  # x * 32767 truncated
        assert sf.info(files["s1_wav"]).subtype == sf.info(files["s2_wav"]).subtype == "FLOAT"
        s1, s2 = _read(files["s1_wav"]), _read(files["s2_wav"])
        np.testing.assert_allclose(s1, target[:n] / peak * 32767 / 32768, rtol=1e-6)
        np.testing.assert_allclose(s2, f * interferer[:n] / peak * 32767 / 32768, rtol=1e-6)
        np.testing.assert_allclose(s1 + s2, ints / 32768, atol=LSB)
    # row 3: the mixture peaks at 7200, the target at 8000: s1 is above 1.0, not renormalised
    s1 = _read(_load(paths["test"], tmp_path).popitem()[1]["s1_wav"])
    assert np.abs(s1).max() == pytest.approx(8000 / 7200 * 32767 / 32768, rel=1e-6)


def test_mix_sources_by_hand():
    # whole-utterance powers 5e6 and 2.5e5, interferer at -6 dB, cut to 1200 samples, peak 1.0
    (_, target, interferer), (n, f, peak) = HAND_ROWS[0], _expected_by_hand()[0]
    mix, s1, s2 = mix_sources(target, interferer, -6.0)
    np.testing.assert_allclose(mix, (target[:n] + f * interferer[:n]) / peak, rtol=1e-12)
    np.testing.assert_allclose(s1, target[:n] / peak, rtol=1e-12)
    np.testing.assert_allclose(s2, f * interferer[:n] / peak, rtol=1e-12)
    with pytest.raises(PrepError, match="silent utterance"):
        mix_sources(np.zeros(10), np.ones(10), 0.0)


def test_silent_source_names_list_line(tmp_path):
    lst = _hand_corpus(tmp_path)
    row = parse_mixing_row(HAND_ROWS[1][0].split(","))
    _write_int16(tmp_path / "audio_clean" / row.subset2 / row.spk2 / f"{row.utt2}.wav", np.zeros(1400))
    msg = _prep_error(prepare_vox2mix, tmp_path, tmp_path / "prep", mixing_list=lst, splits=("cv",))
    assert msg == f"{lst}:2: silent utterance: cannot set the interferer level relative to the target"


# ------------------------------------------------------- public mixture layouts


def _row_names():
    return {
        parse_mixing_row(t.split(",")).split: dip_mixture_name(parse_mixing_row(t.split(","))) for t, _, _ in HAND_ROWS
    }


def test_dip_mixture_folder_detected_and_chosen(tmp_path):
    mixtures = tmp_path / "audio_mixture"
    for folder, n in (("2_mix_min_pretrain", 320), ("2_mix_min_800", 480)):
        for dip_set, name in _row_names().items():
            _write_int16(mixtures / folder / dip_set / name, _alternating((100, n)))
    (mixtures / "2_mix_min_pretrain" / "mixture_data_list_2mix.csv").write_text("")  # a file is no candidate
    msg = _prep_error(prepare_vox2mix, tmp_path, tmp_path / "prep")
    assert msg == (
        f"several Vox2Mix mixture folders in {mixtures}: 2_mix_min_800, 2_mix_min_pretrain; "
        "choose one with mix_folder (--mix_folder)"
    )
    paths = prepare_vox2mix(tmp_path, tmp_path / "prep", mix_folder="2_mix_min_pretrain")
    data = _load(paths["test"], tmp_path)
    assert list(data) == [_row_names()["test"][:-4]] and not is_supervised(paths["test"])
    item = data.popitem()[1]
    assert f"/audio_mixture/2_mix_min_pretrain/test/{_row_names()['test']}" in item["mix_wav"]
    assert item["duration"] == 320 / 16000
    msg = _prep_error(prepare_vox2mix, tmp_path, tmp_path / "prep", mix_folder="2_mix_min_900")
    assert msg == (
        f"Vox2Mix mix_folder not found: {mixtures / '2_mix_min_900'} (mix_folder='2_mix_min_900'); "
        f"{mixtures} contains: 2_mix_min_800, 2_mix_min_pretrain"
    )
    shutil.rmtree(mixtures / "2_mix_min_800")  # a single 2_mix_* folder: found by itself
    paths = prepare_vox2mix(tmp_path, tmp_path / "prep2", splits=("tr",))
    assert "/2_mix_min_pretrain/train/" in _load(paths["train"], tmp_path).popitem()[1]["mix_wav"]
    proc = _cli("--data_folder", tmp_path, "--save_folder", tmp_path / "cli", "--mix_folder", "nope")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: Vox2Mix mix_folder not found: {mixtures / 'nope'}")


def test_dip_mixtures_with_sources_layout(tmp_path):
    # mrjunjieli/ActiveExtract: audio_mixture/{train,val,test}/{mix,s1,s2}/<row name>.wav
    mixtures = tmp_path / "audio_mixture"
    for dip_set, name in _row_names().items():
        for folder, value in (("mix", 300), ("s1", 100), ("s2", 200)):
            _write_int16(mixtures / dip_set / folder / name, np.full(640, value))
    paths = prepare_vox2mix(tmp_path, tmp_path / "prep")
    for key, path in paths.items():
        assert is_supervised(path)
        data = _load(path, tmp_path)
        assert list(data) == [_row_names()[vox2mix.DIP_SPLITS[vox2mix.WSJ_SPLITS[key]]][:-4]]
        item = data.popitem()[1]
        for folder in ("mix", "s1", "s2"):
            assert item[f"{folder}_wav"].endswith(
                f"/audio_mixture/{Path(item['mix_wav']).parent.parent.name}/{folder}/{Path(item['mix_wav']).name}"
            )
    sidecar = json.loads((tmp_path / "prep" / "vox2mix_prep.json").read_text())
    assert sidecar["options"]["mix_folder"] == "audio_mixture" and sidecar["supervised"]["test"] is True
    shutil.rmtree(mixtures / "val" / "s2")
    msg = _prep_error(prepare_vox2mix, tmp_path, tmp_path / "prep2")
    assert msg.startswith(f"Vox2Mix (DIP) folder not found: {mixtures / 'val' / 's2'} ")
    assert "(expected <data_folder>/audio_mixture/{train,val,test}/s2)" in msg


# ------------------------------------------------------------------ resumption


def test_interrupted_simulation_resumes(tmp_path, dip_copy, monkeypatch):
    writes = {"n": 0}
    original = vox2mix.write_wav_atomic

    def crashing(path, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] > 3 * 2 + 1:  # two mixtures complete, the third one half written
            raise RuntimeError("simulated crash")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(vox2mix, "write_wav_atomic", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_vox2mix(dip_copy, tmp_path / "prep", mixing_list=dip_copy / "lists")
    monkeypatch.undo()
    assert not (tmp_path / "prep").exists() or not list((tmp_path / "prep").glob("*"))
    tr = dip_copy / "Vox2Mix" / "wav16k" / "tr"
    done = sorted(p.name for p in (tr / "mix").iterdir())
    assert len(done) == 2 and len(list((tr / "s1").iterdir())) == 3
    # damage: a truncated temporary file (as a killed writer leaves) and a
    # truncated s2 of a finished mixture (as a non-atomic tool might)
    stale = tr / "mix" / f".{done[0]}.k9x2q1.tmp"
    stale.write_bytes((tr / "mix" / done[0]).read_bytes()[:1000])
    damaged = tr / "s2" / done[1]
    damaged.write_bytes(damaged.read_bytes()[:5000])
    before = {p: p.stat().st_mtime_ns for f in ("mix", "s1", "s2") for p in [tr / f / done[0]]}

    calls = []

    def counting(path, *args, **kwargs):
        calls.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(vox2mix, "write_wav_atomic", counting)
    paths = prepare_vox2mix(dip_copy, tmp_path / "prep", mixing_list=dip_copy / "lists")
    assert _check_simulated(dip_copy, paths) == sum(SIZES.values())
    assert not stale.exists() and not list(tr.rglob("*.tmp"))
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the complete mixture was not redone
    assert done[0] not in {p.name for p in calls}
    assert (tr / "s2" / done[1]) in calls  # the truncated file was not trusted
    assert len(calls) == 3 * (sum(SIZES.values()) - 1)


def test_skip_when_prepared(tmp_path, dip_copy, monkeypatch):
    paths = prepare_vox2mix(dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    stamps = {k: os.stat(v).st_mtime_ns for k, v in paths.items()}
    monkeypatch.setattr(vox2mix, "_simulate_jobs", lambda *a, **k: pytest.fail("simulated again"))
    assert prepare_vox2mix(dip_copy, tmp_path, mixing_list=dip_copy / "lists") == paths
    assert {k: os.stat(v).st_mtime_ns for k, v in paths.items()} == stamps
    monkeypatch.undo()
    # an edited mixing list is a new preparation
    lst = dip_copy / "lists" / "vox2mix_val.csv"
    lst.write_text(lst.read_text().splitlines()[0] + "\n")
    prepare_vox2mix(dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    assert len(Path(paths["valid"]).read_text().splitlines()) == 2


# ------------------------------------------------------------------ bad input


def _first_row(root, dip_set="test"):
    return read_mixing_lists([root / "lists" / f"vox2mix_{dip_set}.csv"])[dip_set][0]


def test_missing_folders(tmp_path, vox_root):
    msg = _prep_error(prepare_vox2mix, tmp_path / "nowhere", tmp_path / "s")
    assert msg == f"Vox2Mix data_folder not found: {tmp_path / 'nowhere'}"
    (tmp_path / "empty").mkdir()
    msg = _prep_error(prepare_vox2mix, tmp_path / "empty", tmp_path / "s")
    assert "layout not recognised" in msg and "{tr,cv,tt}/{mix,s1,s2}" in msg and "audio_clean" in msg
    two = tmp_path / "two"
    shutil.copytree(vox_root / "VoxCeleb2-2Mix", two)
    shutil.rmtree(two / "cv" / "s2")
    msg = _prep_error(prepare_vox2mix, two, tmp_path / "s")
    assert f"folder not found: {two / 'cv' / 's2'}" in msg and "(expected <data_folder>/{tr,cv,tt}/s2)" in msg
    msg = _prep_error(prepare_vox2mix, vox_root / "DIP", tmp_path / "s", variant="2mix")
    assert f"{vox_root / 'DIP' / 'tr' / 'mix'}" in msg
    dip = tmp_path / "dip"
    shutil.copytree(vox_root / "DIP" / "lists", dip / "lists")
    (dip / "audio_mixture").mkdir()
    msg = _prep_error(prepare_vox2mix, dip, tmp_path / "s", mixing_list=dip / "lists")
    assert f"sources not found: {dip / 'audio_clean'}" in msg
    msg = _prep_error(prepare_vox2mix, dip, tmp_path / "s")
    assert msg.startswith(f"no Vox2Mix mixture folder in {dip / 'audio_mixture'} (expected ")
    assert "audio_mixture/2_mix_*/{train,val,test}/*.wav" in msg and msg.endswith("it contains: (empty)")


def test_missing_source_names_list_line(tmp_path, dip_copy):
    row = _first_row(dip_copy)
    victim = dip_copy / "audio_clean" / row.subset2 / row.spk2 / f"{row.utt2}.wav"
    victim.unlink()
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    assert msg == f"{row.path}:1: source not found: {victim}"
    assert not list(tmp_path.glob("*.csv"))
    assert not (dip_copy / "Vox2Mix").exists()  # nothing simulated before the inputs were checked


def test_wrong_sample_rate_and_unreadable(tmp_path, dip_copy):
    row = _first_row(dip_copy, "val")
    src = dip_copy / "audio_clean" / row.subset1 / row.spk1 / f"{row.utt1}.wav"
    x, _ = sf.read(src)
    sf.write(src, x[::2], 8000, subtype="PCM_16")
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    assert msg.startswith(f"{row.path}:1: wrong sample rate in {src}: found 8000 Hz, expected 16000 Hz")
    src.write_bytes(np.random.default_rng(0).bytes(300))
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    assert f"unreadable WAV file: {src}" in msg and msg.startswith(f"{row.path}:1:")


def test_wrong_rate_in_2mix(tmp_path, vox_root):
    two = tmp_path / "two"
    shutil.copytree(vox_root / "VoxCeleb2-2Mix", two)
    path = min((two / "tt" / "s1").iterdir())
    x, _ = sf.read(path)
    sf.write(path, x, 8000, subtype="PCM_16")
    msg = _prep_error(prepare_vox2mix, two, tmp_path / "s")
    assert str(path) in msg and "found 8000 Hz, expected 16000 Hz" in msg


@pytest.mark.parametrize(
    "line, match",
    [
        ("test,test,id1,v/00001,0,test,id2,w/00002,1.0", "expected 10 comma-separated fields"),
        ("dev,test,id1,v/00001,0,test,id2,w/00002,1.0,4", "unknown mixture set 'dev'"),
        ("test,test,id1,v/00001,0,test,id2,w/00002,loud,4", "malformed gain"),
        ("test,test,id1,v00001,0,test,id2,w/00002,1.0,4", "malformed utterance 'v00001'"),
        ("test,test,spk1,v/00001,0,test,id2,w/00002,1.0,4", "malformed speaker id 'spk1'"),
        ("test,test,id1,v/00001,0,test,id2,w/00002,1.0,-4", "non-positive duration"),
    ],
)
def test_malformed_list_line(tmp_path, dip_copy, line, match):
    lst = dip_copy / "lists" / "vox2mix_test.csv"
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join([*lines[:1], "", line, *lines[1:]]) + "\n")
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=dip_copy / "lists")
    assert msg.startswith(f"{lst}:3: ") and match in msg


def test_listed_duration_is_only_checked(tmp_path, dip_copy, caplog):
    # the official script never reads the duration field: the mixture is cut to the shorter source
    lst = dip_copy / "lists" / "vox2mix_val.csv"
    lines = lst.read_text().splitlines()
    published = dip_copy / DIP_MIX_DIR / "val" / (lines[1].replace(",", "_").replace("/", "_") + ".wav")
    fields = lines[1].split(",")
    fields[-1] = "60"
    lst.write_text(lines[0] + "\n" + ",".join(fields) + "\n")
    with caplog.at_level(logging.WARNING, logger="data_prep.vox2mix"):
        paths = prepare_vox2mix(dip_copy, tmp_path, mixing_list=lst, splits=("cv",))
    assert f"{lst}:2 lists 60 s, the shorter source has" in caplog.text
    assert _check_simulated(dip_copy, paths, shipped=False) == SIZES["valid"]
    row = _load(paths["valid"], dip_copy)[wsj_mixture_name(parse_mixing_row(fields))[:-4]]
    np.testing.assert_array_equal(_read(row["mix_wav"]), _read(published))


def test_list_without_a_split_and_wrong_variant(tmp_path, dip_copy, vox_root):
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=dip_copy / "lists" / "vox2mix_train.csv")
    assert "no mixing-list row for set 'val' (split cv)" in msg
    msg = _prep_error(prepare_vox2mix, vox_root / "VoxCeleb2-2Mix", tmp_path, mixing_list=dip_copy / "lists")
    assert "only used by the DIP variant" in msg
    msg = _prep_error(prepare_vox2mix, dip_copy, tmp_path, mixing_list=tmp_path / "missing.csv")
    assert msg == f"Vox2Mix mixing list not found: {tmp_path / 'missing.csv'}"
    assert "invalid splits" in _prep_error(prepare_vox2mix, dip_copy, tmp_path, splits=("dev",))
    assert "invalid variant" in _prep_error(prepare_vox2mix, dip_copy, tmp_path, variant="vox")


# ------------------------------------------------------------------------ CLI


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "data_prep.vox2mix", *map(str, args)],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli(tmp_path, dip_copy):
    lst = dip_copy / "lists" / "vox2mix_test.csv"
    lst.write_text("test,test,id1,v/00001,0,test,id2,w/00002,1.0\n")
    proc = _cli("--data_folder", dip_copy, "--save_folder", tmp_path, "--mixing_list", lst, "--splits", "tt")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {lst}:1: expected 10") and "Traceback" not in proc.stderr
    proc = _cli("--data_folder", dip_copy, "--save_folder", tmp_path, "--splits", "tt")
    assert proc.returncode == 0, proc.stderr
    assert f"test: {tmp_path / 'vox2mix_tt.csv'}" in proc.stdout
