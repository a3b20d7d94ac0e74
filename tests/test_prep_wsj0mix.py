"""WSJ0-2mix / WSJ0-3mix: the mini corpus in the MERL layout, its preparation, and clear errors."""

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError, is_supervised, manifest_header
from data_prep.mini import make_mini_wsj0mix
from data_prep.synth import active_level
from data_prep.wsj0mix import find_wsj0mix_prefix, main, prepare_wsj0mix

SIZES = {"tr": 3, "cv": 2, "tt": 2}
KEYS = {"tr": "train", "cv": "valid", "tt": "test"}
UTT = r"[0-9a-z]{8}"
LEVEL = r"-?\d\.\d{4}"
NAMES = {n: re.compile(rf"^{UTT}_({LEVEL})" + rf"_{UTT}_({LEVEL})" * (n - 1) + r"\.wav$") for n in (2, 3)}


@pytest.fixture(scope="module")
def wsj_root(tmp_path_factory):
    return make_mini_wsj0mix(tmp_path_factory.mktemp("wsj"), seed=0, n_train=3, n_valid=2, n_test=2)


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _copy(root, tmp_path, *parts):
    """A copy of part of the mini corpus, keeping its layout below ``tmp_path/copy``."""
    dst = tmp_path / "copy"
    for part in parts:
        shutil.copytree(root / part, dst / part)
    return dst


# ------------------------------------------------------------------ the mini corpus


def test_mini_layout(wsj_root):
    assert wsj_root.name == "wsj0-mix"
    assert {p.name for p in wsj_root.iterdir() if not p.name.startswith(".")} == {"2speakers", "3speakers"}
    for n in (2, 3):
        folders = {"mix"} | {f"s{k}" for k in range(1, n + 1)}
        ref = None
        for rate in (8000, 16000):
            for mode in ("min", "max"):
                base = wsj_root / f"{n}speakers" / f"wav{rate // 1000}k" / mode
                assert {p.name for p in base.iterdir()} == set(SIZES)
                for split, count in SIZES.items():
                    assert {p.name for p in (base / split).iterdir()} == folders
                    names = sorted(p.name for p in (base / split / "mix").iterdir())
                    assert len(names) == count
                    for folder in folders:
                        assert sorted(p.name for p in (base / split / folder).iterdir()) == names
                    for name in names:
                        levels = [float(x) for x in NAMES[n].match(name).groups()]
                        assert all(-2.5 <= x <= 2.5 for x in levels) and levels[1] == -levels[0] != 0, name
                        info = sf.info(base / split / "mix" / name)
                        assert (info.samplerate, info.subtype, info.channels) == (rate, "PCM_16", 1)
                names_all = {s: sorted(p.name for p in (base / s / "mix").iterdir()) for s in SIZES}
                assert ref is None or names_all == ref  # the same names at every rate and mode
                ref = names_all


def test_mini_mixture_is_the_sum_of_its_sources(wsj_root):
    for n in (2, 3):
        for rate in (8000, 16000):
            for mode in ("min", "max"):
                base = wsj_root / f"{n}speakers" / f"wav{rate // 1000}k" / mode / "tt"
                for path in (base / "mix").iterdir():
                    mix = sf.read(path)[0]
                    sources = [sf.read(base / f"s{k}" / path.name)[0] for k in range(1, n + 1)]
                    np.testing.assert_array_equal(mix, sum(sources))
                    assert 0.5 < np.max(np.abs(mix)) < 1.0


def test_mini_levels_lengths_and_speakers(wsj_root):
    for n in (2, 3):
        speakers = []
        for split in SIZES:
            spk = set()
            mx = wsj_root / f"{n}speakers" / "wav16k" / "max" / split
            mn = wsj_root / f"{n}speakers" / "wav16k" / "min" / split
            for path in (mx / "mix").iterdir():
                parts = path.stem.split("_")
                utts, levels = parts[0::2], [float(x) for x in parts[1::2]]
                assert len({u[:3] for u in utts}) == n  # n different speakers
                spk |= {u[:3] for u in utts}
                src = [sf.read(mx / f"s{k}" / path.name)[0] for k in range(1, n + 1)]
                # sources at their named levels (active level, as the MERL scripts' activlev)
                for k in range(1, n):
                    ratio = 20 * np.log10(active_level(src[0], 16000) / active_level(src[k], 16000))
                    assert ratio == pytest.approx(levels[0] - levels[k], abs=0.1)
                # max: as long as the longest source, the others zero-padded; min: the shortest (up to
                # the few samples a quantised utterance may end on that are exactly zero)
                zeros = [len(x) - 1 - np.flatnonzero(x)[-1] for x in src]
                n_min = sf.info(mn / "mix" / path.name).frames
                assert min(zeros) < 20 and 0 <= len(src[0]) - max(zeros) - n_min < 20
            speakers.append(spk)
        assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])


# ------------------------------------------------------------------ preparation


@pytest.mark.parametrize("n_spks", [2, 3])
@pytest.mark.parametrize("mode, sample_rate", [("min", 8000), ("max", 16000)])
def test_prepare(tmp_path, wsj_root, n_spks, mode, sample_rate):
    paths = prepare_wsj0mix(wsj_root, tmp_path, n_spks=n_spks, sample_rate=sample_rate, mode=mode)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": f"wsj0{n_spks}mix_tr.csv",
        "valid": f"wsj0{n_spks}mix_cv.csv",
        "test": f"wsj0{n_spks}mix_tt.csv",
    }
    keys = ["mix"] + [f"s{k}" for k in range(1, n_spks + 1)]
    prefix = f"$data_root/{n_spks}speakers/wav{sample_rate // 1000}k/{mode}"
    for split, count in SIZES.items():
        path = paths[KEYS[split]]
        text = Path(path).read_text()
        assert text.splitlines()[0] == ",".join(manifest_header(keys))
        assert str(wsj_root) not in text and f"{prefix}/{split}/mix/" in text
        assert is_supervised(path)
        data = _load(path, wsj_root)
        assert len(data) == count
        for utt_id, row in data.items():
            info = sf.info(row["mix_wav"])
            assert row["duration"] == info.frames / sample_rate and info.samplerate == sample_rate
            for key in keys:
                assert Path(row[f"{key}_wav"]).is_file() and Path(row[f"{key}_wav"]).name == f"{utt_id}.wav"
    sidecar = json.loads((tmp_path / f"wsj0{n_spks}mix_prep.json").read_text())
    assert sidecar["options"]["mode"] == mode and sidecar["supervised"] == dict.fromkeys(paths, True)


def test_max_is_longer_than_min(tmp_path, wsj_root):
    durations = {}
    for mode in ("min", "max"):
        paths = prepare_wsj0mix(wsj_root, tmp_path / mode, mode=mode)
        durations[mode] = {i: row["duration"] for i, row in _load(paths["train"], wsj_root).items()}
    assert durations["min"].keys() == durations["max"].keys()
    assert all(durations["max"][i] >= durations["min"][i] for i in durations["min"])
    assert any(durations["max"][i] > durations["min"][i] for i in durations["min"])


@pytest.mark.parametrize(
    "level, prefix",
    [
        ("", "2speakers/wav8k/min"),  # the scripts' output folder
        ("2speakers", "wav8k/min"),  # where SpeechBrain's WSJ0Mix recipe points
        ("2speakers/wav8k", "min"),
        ("2speakers/wav8k/min", ""),
    ],
)
def test_data_folder_levels(tmp_path, wsj_root, level, prefix):
    data_folder = wsj_root / level
    assert find_wsj0mix_prefix(data_folder, 2, 8000, "min") == prefix
    paths = prepare_wsj0mix(data_folder, tmp_path, splits=("tt",))
    row = Path(paths["test"]).read_text().splitlines()[1].split(",")
    assert row[2].startswith(f"$data_root/{prefix + '/' if prefix else ''}tt/mix/")
    assert len(_load(paths["test"], data_folder)) == SIZES["tt"]


def test_min_max_choice_errors(tmp_path, wsj_root):
    top = wsj_root / "2speakers"
    msg = _prep_error(prepare_wsj0mix, top / "wav8k" / "min", tmp_path, mode="max")
    assert msg == (
        f"WSJ0-mix data_folder {top / 'wav8k' / 'min'} is a min folder but mode='max' "
        f"(point at {top / 'wav8k' / 'max'} or set mode='min')"
    )
    # a generation with `min` only, asked for `max`: the missing folder and what is there instead
    only_min = _copy(wsj_root, tmp_path, "2speakers/wav8k/min")
    msg = _prep_error(prepare_wsj0mix, only_min, tmp_path / "s", mode="max")
    assert msg.startswith(f"WSJ0-2mix folder not found: {only_min / '2speakers/wav8k/max/tr/mix'} ")
    assert "(expected <data_folder>/2speakers/wav8k/max/{tr,cv,tt}/mix)" in msg
    assert msg.endswith(f"{only_min / '2speakers' / 'wav8k'} contains: min")


def test_folder_contradicting_the_options(tmp_path, wsj_root):
    msg = _prep_error(prepare_wsj0mix, wsj_root / "2speakers" / "wav16k", tmp_path, sample_rate=8000)
    assert f"is a wav16k folder but sample_rate=8000 (point at {wsj_root / '2speakers' / 'wav8k'}" in msg
    msg = _prep_error(prepare_wsj0mix, wsj_root / "2speakers" / "wav8k" / "min", tmp_path, n_spks=3)
    assert msg == (
        f"WSJ0-mix data_folder {wsj_root / '2speakers/wav8k/min'} is in a 2speakers folder but n_spks=3 "
        f"(point at {wsj_root / '3speakers/wav8k/min'} or set n_spks=2)"
    )


def test_missing_split(tmp_path, wsj_root):
    only_tt = _copy(wsj_root, tmp_path, "3speakers/wav8k/min/tt")
    msg = _prep_error(prepare_wsj0mix, only_tt, tmp_path / "s", n_spks=3)
    assert msg.startswith(f"WSJ0-3mix folder not found: {only_tt / '3speakers/wav8k/min/tr/mix'} ")
    assert "(expected <data_folder>/3speakers/wav8k/min/{tr,cv,tt}/mix)" in msg and "contains: tt" in msg
    paths = prepare_wsj0mix(only_tt, tmp_path / "s", n_spks=3, splits=("tt",))
    assert list(paths) == ["test"] and len(_load(paths["test"], only_tt)) == SIZES["tt"]
    assert "invalid splits" in _prep_error(prepare_wsj0mix, only_tt, tmp_path / "s", splits=("test",))


def test_missing_sources_and_wrong_rate(tmp_path, wsj_root):
    copy = _copy(wsj_root, tmp_path, "3speakers/wav8k/min")
    split = copy / "3speakers/wav8k/min/cv"
    shutil.rmtree(split / "s3")
    msg = _prep_error(prepare_wsj0mix, copy, tmp_path / "s", n_spks=3)
    assert f"folder not found: {split / 's3'}" in msg and "contains: mix, s1, s2" in msg
    shutil.copytree(split / "s2", split / "s3")
    victim = min((split / "s3").iterdir())
    victim.unlink()
    msg = _prep_error(prepare_wsj0mix, copy, tmp_path / "s", n_spks=3)
    assert "s3: 1 missing" in msg and victim.stem in msg
    shutil.copy(split / "s2" / victim.name, victim)
    path = min((copy / "3speakers/wav8k/min/tt/s1").iterdir())
    sf.write(path, sf.read(path)[0], 16000, subtype="PCM_16")
    msg = _prep_error(prepare_wsj0mix, copy, tmp_path / "s", n_spks=3)
    assert msg == f"wrong sample rate in {path}: found 16000 Hz, expected 8000 Hz"


def test_not_a_wsj0mix_folder(tmp_path, wsj_root):
    assert _prep_error(prepare_wsj0mix, tmp_path / "nowhere", tmp_path) == (
        f"WSJ0-mix data_folder not found: {tmp_path / 'nowhere'}"
    )
    (tmp_path / "data" / "misc").mkdir(parents=True)
    msg = _prep_error(prepare_wsj0mix, tmp_path / "data", tmp_path / "s")
    assert msg.startswith(f"WSJ0-mix folder not found: {tmp_path / 'data' / '2speakers'} (expected ")
    assert msg.endswith("contains: no {2,3}speakers folder")
    three = _copy(wsj_root, tmp_path, "3speakers/wav8k/min")
    assert _prep_error(prepare_wsj0mix, three, tmp_path / "s").endswith(f"{three} contains: 3speakers")
    for kwargs, name in (({"n_spks": 4}, "n_spks"), ({"sample_rate": 22050}, "sample_rate"), ({"mode": "avg"}, "mode")):
        assert _prep_error(prepare_wsj0mix, wsj_root, tmp_path / "s", **kwargs).startswith(f"invalid {name}=")


def test_content_check(tmp_path, wsj_root):
    copy = _copy(wsj_root, tmp_path, "2speakers/wav8k/min")
    path = min((copy / "2speakers/wav8k/min/tr/s2").iterdir())
    sf.write(path, np.zeros(sf.info(path).frames), 8000, subtype="PCM_16")
    msg = _prep_error(prepare_wsj0mix, copy, tmp_path / "s")
    assert f"{path} (silent: -inf dBFS" in msg and "--skip_bad_files" in msg
    paths = prepare_wsj0mix(copy, tmp_path / "s", skip_bad_files=True)
    assert path.stem not in _load(paths["train"], copy) and len(_load(paths["train"], copy)) == SIZES["tr"] - 1
    assert path.name in (tmp_path / "s" / "wsj02mix_rejected.csv").read_text()


def test_skip_when_prepared(tmp_path, wsj_root, caplog):
    prepare_wsj0mix(wsj_root, tmp_path)
    with caplog.at_level(logging.INFO, logger="data_prep.common"):
        prepare_wsj0mix(wsj_root, tmp_path)
    assert "already prepared" in caplog.text
    assert prepare_wsj0mix(tmp_path / "nowhere", tmp_path / "x", skip_prep=True)["test"].endswith("wsj02mix_tt.csv")


def test_cli(tmp_path, wsj_root, capsys):
    assert main(["--data_folder", str(tmp_path / "missing"), "--save_folder", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: WSJ0-mix data_folder not found: {tmp_path / 'missing'}"]
    argv = ["--data_folder", str(wsj_root), "--save_folder", str(tmp_path), "--n_spks", "3", "--mode", "max"]
    assert main([*argv, "--splits", "tt"]) == 0
    assert f"test: {tmp_path / 'wsj03mix_tt.csv'}" in capsys.readouterr().out
