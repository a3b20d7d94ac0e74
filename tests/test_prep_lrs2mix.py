"""LRS2-2Mix preparation: the mini corpus, hand-made copies of the released layout at each level."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError, is_supervised, manifest_header
from data_prep.lrs2mix import prepare_lrs2mix
from data_prep.mini import make_mini_lrs2mix

REPO = Path(__file__).resolve().parents[1]
SIZES = {"train": 3, "valid": 2, "test": 2}
UTT = r"\d{19}_\d{5}"
NAME = re.compile(rf"^({UTT})_(-?\d\.\d{{5}})_({UTT})_(-?\d\.\d{{5}})\.wav$")
AUDIO = "lrs2_rebuild/audio/wav16k/min"


@pytest.fixture(scope="module")
def lrs_root(tmp_path_factory):
    return make_mini_lrs2mix(tmp_path_factory.mktemp("lrs"), seed=0, n_train=3, n_valid=2, n_test=2)


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_mini_layout(lrs_root):
    # as the LRS2-2Mix download unzips: lrs2_rebuild/{audio/wav16k/min/{tr,cv,tt},mouths}
    assert {p.name for p in lrs_root.iterdir() if not p.name.startswith(".")} == {"lrs2_rebuild"}
    assert {p.name for p in (lrs_root / "lrs2_rebuild").iterdir()} == {"audio", "mouths"}
    audio = lrs_root / AUDIO
    assert {p.name for p in audio.iterdir()} == {"tr", "cv", "tt"}
    for split, n in zip(("tr", "cv", "tt"), SIZES.values()):
        names = sorted(p.name for p in (audio / split / "mix").iterdir())
        assert len(names) == n
        for folder in ("s1", "s2"):
            assert sorted(p.name for p in (audio / split / folder).iterdir()) == names
        for name in names:
            m = NAME.match(name)
            assert m and float(m.group(4)) == -float(m.group(2)) and abs(float(m.group(2))) <= 2.5, name
            info = sf.info(audio / split / "mix" / name)
            assert (info.samplerate, info.frames, info.subtype) == (16000, 32000, "PCM_16")
            s1, s2 = (sf.read(audio / split / f / name)[0] for f in ("s1", "s2"))
            snr = 20 * np.log10(np.sqrt(np.mean(s1**2)) / np.sqrt(np.mean(s2**2)))
            assert snr == pytest.approx(2 * float(m.group(2)), abs=0.02) and -5 <= snr <= 5


def test_prepare(tmp_path, lrs_root):
    data_folder = lrs_root / "lrs2_rebuild"
    paths = prepare_lrs2mix(data_folder, tmp_path)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": "lrs2mix_tr.csv",
        "valid": "lrs2mix_cv.csv",
        "test": "lrs2mix_tt.csv",
    }
    for key, path in paths.items():
        assert Path(path).read_text().splitlines()[0] == ",".join(manifest_header(["mix", "s1", "s2"]))
        assert is_supervised(path)
        data = _load(path, data_folder)
        assert len(data) == SIZES[key]
        for utt_id, row in data.items():
            assert row["duration"] == 2.0 and Path(row["s1_wav"]).name == f"{utt_id}.wav"
    assert json.loads((tmp_path / "lrs2mix_prep.json").read_text())["supervised"]["test"] is True
    raw = Path(paths["test"]).read_text()
    assert str(lrs_root) not in raw and "$data_root/audio/wav16k/min/tt/mix/" in raw


def test_test_split_only(tmp_path, lrs_root):
    only = tmp_path / "LRS2Mix"
    shutil.copytree(lrs_root / AUDIO / "tt", only / "tt")  # the seeds use only the test set
    paths = prepare_lrs2mix(only, tmp_path / "prep", splits=("tt",))
    assert list(paths) == ["test"] and len(_load(paths["test"], only)) == SIZES["test"]
    msg = _prep_error(prepare_lrs2mix, only, tmp_path / "prep2")
    assert f"folder not found: {only / 'tr' / 'mix'}" in msg and "(expected <data_folder>/{tr,cv,tt}/mix)" in msg


def test_bad_input(tmp_path, lrs_root):
    msg = _prep_error(prepare_lrs2mix, tmp_path / "nowhere", tmp_path / "s")
    assert msg == f"LRS2-2Mix data_folder not found: {tmp_path / 'nowhere'}"
    copy = tmp_path / "copy"
    shutil.copytree(lrs_root / AUDIO, copy)
    victim = min((copy / "cv" / "s2").iterdir())
    victim.unlink()
    msg = _prep_error(prepare_lrs2mix, copy, tmp_path / "s")
    assert "s2: 1 missing" in msg and victim.stem in msg
    shutil.copy(copy / "cv" / "s1" / victim.name, victim)
    path = min((copy / "tt" / "mix").iterdir())
    x, _ = sf.read(path)
    sf.write(path, x, 8000, subtype="PCM_16")
    msg = _prep_error(prepare_lrs2mix, copy, tmp_path / "s")
    assert f"wrong sample rate in {path}: found 8000 Hz, expected 16000 Hz" in msg
    path.write_bytes(b"not a wav")
    assert _prep_error(prepare_lrs2mix, copy, tmp_path / "s").startswith(f"unreadable WAV file: {path}")
    assert "invalid splits" in _prep_error(prepare_lrs2mix, copy, tmp_path / "s", splits=("test",))
    assert "invalid sample_rate" in _prep_error(prepare_lrs2mix, copy, tmp_path / "s", sample_rate=22050)


def test_cli(tmp_path, lrs_root):
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args):
        cmd = [sys.executable, "-m", "data_prep.lrs2mix", *map(str, args)]
        return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    proc = cli("--data_folder", tmp_path / "missing", "--save_folder", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: LRS2-2Mix data_folder not found: {tmp_path / 'missing'}"
    proc = cli("--data_folder", lrs_root, "--save_folder", tmp_path, "--splits", "tt")
    assert proc.returncode == 0, proc.stderr
    assert f"test: {tmp_path / 'lrs2mix_tt.csv'}" in proc.stdout


def _hand_release(root, n=3200):
    """A hand-made LRS2-2Mix download: lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2} and mouths/."""
    name = "6330311066473698535_00011_0.53084_6339356267468615354_00010_-0.53084.wav"
    audio = root / "lrs2_rebuild" / "audio" / "wav16k" / "min"
    for split in ("tr", "cv", "tt"):
        for folder, value in (("s1", 0.25), ("s2", -0.125), ("mix", 0.125)):
            (audio / split / folder).mkdir(parents=True)
            sf.write(audio / split / folder / name, np.full(n, value), 16000, subtype="PCM_16")
    (root / "lrs2_rebuild" / "mouths").mkdir()
    return name


@pytest.mark.parametrize(
    "level, prefix",
    [
        ("", "lrs2_rebuild/audio/wav16k/min/"),  # the folder the zip was unpacked into
        ("lrs2_rebuild", "audio/wav16k/min/"),
        ("lrs2_rebuild/audio", "wav16k/min/"),
        ("lrs2_rebuild/audio/wav16k", "min/"),
        ("lrs2_rebuild/audio/wav16k/min", ""),  # the split folders' parent
    ],
)
def test_released_layout_at_every_level(tmp_path, level, prefix):
    name = _hand_release(tmp_path / "download", n=3200)
    data_folder = tmp_path / "download" / level if level else tmp_path / "download"
    paths = prepare_lrs2mix(data_folder, tmp_path / "prep")
    lines = Path(paths["test"]).read_text().splitlines()
    assert len(lines) == 2
    row = lines[1].split(",")
    assert row[:3] == [name[:-4], "0.2", f"$data_root/{prefix}tt/mix/{name}"]
    data = _load(paths["valid"], data_folder)
    assert sf.read(data[name[:-4]]["s2_wav"])[0][0] == -0.125


def test_released_layout_not_found(tmp_path):
    _hand_release(tmp_path / "download")
    shutil.rmtree(tmp_path / "download" / "lrs2_rebuild" / "audio" / "wav16k")
    (tmp_path / "download" / "lrs2_rebuild" / "audio" / "wav8k").mkdir()
    msg = _prep_error(prepare_lrs2mix, tmp_path / "download" / "lrs2_rebuild", tmp_path / "s")
    assert msg == (
        f"LRS2-2Mix split folders not found under {tmp_path / 'download' / 'lrs2_rebuild'} "
        "(expected {tr,cv,tt}/{mix,s1,s2} in it or in lrs2_rebuild/audio/wav16k/min below it); "
        "it contains: audio, mouths"
    )
