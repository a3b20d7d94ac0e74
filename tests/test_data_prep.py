"""WHAM! and LibriMix preparation on the miniature corpora."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError, manifest_header
from data_prep.librimix import prepare_librimix
from data_prep.mini import make_mini_librimix, make_mini_wham
from data_prep.wham import prepare_wham
from modules import files
from modules.audio import resample

REPO = Path(__file__).resolve().parents[1]
WHAM_SIZES = {"train": 4, "valid": 2, "test": 2}
LIBRI_SIZES = {"train": 3, "valid": 2, "test": 2}


@pytest.fixture(scope="module")
def wham_root(tmp_path_factory):
    return make_mini_wham(tmp_path_factory.mktemp("corpus"), n_train=4, n_valid=2, n_test=2)


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory):
    return make_mini_librimix(
        tmp_path_factory.mktemp("corpus"),
        n_train=3,
        n_valid=2,
        n_test=2,
        sample_rates=(8000,),
    )


@pytest.fixture(scope="module")
def libri360_root(tmp_path_factory):
    return make_mini_librimix(
        tmp_path_factory.mktemp("corpus"),
        n_train=2,
        n_valid=1,
        n_test=1,
        sample_rates=(8000,),
        modes=("min",),
        n_spks=(2,),
        train_set="train-360",
    )


@pytest.fixture(scope="module")
def libri_clean_only(tmp_path_factory):
    return make_mini_librimix(
        tmp_path_factory.mktemp("corpus"),
        n_train=2,
        n_valid=1,
        n_test=1,
        sample_rates=(8000,),
        modes=("min",),
        n_spks=(2,),
        mix_types=("mix_clean",),
    )


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _expected_keys(task, n_spks):
    keys = {
        "sep_noisy": ["mix"] + [f"s{k}" for k in range(1, n_spks + 1)] + ["noise"],
        "sep_clean": ["mix"] + [f"s{k}" for k in range(1, n_spks + 1)],
        "enh_single": ["mix", "s1", "noise"],
    }
    return keys[task]


MIX_FOLDER = {
    "sep_noisy": "mix_both",
    "sep_clean": "mix_clean",
    "enh_single": "mix_single",
}


def _check_manifests(paths, data_folder, task, n_spks, sizes, sample_rate, rel_prefix):
    header = manifest_header(_expected_keys(task, n_spks))
    assert set(paths) == {"train", "valid", "test"}
    for split, path in paths.items():
        lines = Path(path).read_text().splitlines()
        assert lines[0] == ",".join(header)
        data = _load(path, data_folder)
        assert len(data) == sizes[split] == len(lines) - 1
        for utt_id, row in data.items():
            mix = Path(row["mix_wav"])
            assert mix.is_file() and mix.stem == utt_id
            assert mix.parent.name == MIX_FOLDER[task]
            assert mix.as_posix().startswith(f"{Path(data_folder).as_posix()}/{rel_prefix}/")
            info = sf.info(mix)
            assert info.samplerate == sample_rate
            assert row["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-9)
            for key in _expected_keys(task, n_spks):
                assert Path(row[f"{key}_wav"]).is_file()
                assert Path(row[f"{key}_wav"]).name == mix.name
                assert row[f"{key}_wav_format"] == "wav"
                assert row[f"{key}_wav_opts"] == ""
    raw = Path(paths["test"]).read_text()
    assert "$data_root/" in raw and str(data_folder) not in raw


# ------------------------------------------------------------------ success


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("task", ["sep_noisy", "sep_clean", "enh_single"])
def test_prepare_wham(tmp_path, wham_root, task, mode, sample_rate):
    paths = prepare_wham(wham_root, tmp_path, sample_rate=sample_rate, mode=mode, task=task)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": "wham_tr.csv",
        "valid": "wham_cv.csv",
        "test": "wham_tt.csv",
    }
    rel = f"wav{sample_rate // 1000}k/{mode}"
    _check_manifests(paths, wham_root, task, 2, WHAM_SIZES, sample_rate, rel)
    sidecar = json.loads((tmp_path / "wham_prep.json").read_text())
    assert sidecar["options"]["task"] == task and sidecar["options"]["mode"] == mode


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("task", ["sep_noisy", "sep_clean", "enh_single"])
@pytest.mark.parametrize("n_spks", [2, 3])
def test_prepare_librimix(tmp_path, libri_root, n_spks, task, mode):
    paths = prepare_librimix(libri_root, tmp_path, n_spks=n_spks, mode=mode, task=task)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": f"libri{n_spks}mix_train-100.csv",
        "valid": f"libri{n_spks}mix_dev.csv",
        "test": f"libri{n_spks}mix_test.csv",
    }
    rel = f"Libri{n_spks}Mix/wav8k/{mode}"
    _check_manifests(paths, libri_root, task, n_spks, LIBRI_SIZES, 8000, rel)


def test_librimix_header_exact(tmp_path, libri_root):
    paths = prepare_librimix(libri_root, tmp_path, n_spks=3)
    header = Path(paths["train"]).read_text().splitlines()[0]
    assert header == (
        "ID,duration,mix_wav,mix_wav_format,mix_wav_opts,s1_wav,s1_wav_format,s1_wav_opts,"
        "s2_wav,s2_wav_format,s2_wav_opts,s3_wav,s3_wav_format,s3_wav_opts,"
        "noise_wav,noise_wav_format,noise_wav_opts"
    )


def test_librimix_data_folder_is_librinmix(tmp_path, libri_root):
    folder = libri_root / "Libri2Mix"
    paths = prepare_librimix(folder, tmp_path, n_spks=2, task="sep_clean")
    _check_manifests(paths, folder, "sep_clean", 2, LIBRI_SIZES, 8000, "wav8k/min")
    with pytest.raises(PrepError, match="Libri2Mix folder but n_spks=3"):
        prepare_librimix(folder, tmp_path / "x", n_spks=3)


def test_librimix_train_360(tmp_path, libri360_root):
    paths = prepare_librimix(libri360_root, tmp_path, train_set="train-360")
    assert Path(paths["train"]).name == "libri2mix_train-360.csv"
    _check_manifests(
        paths,
        libri360_root,
        "sep_noisy",
        2,
        {"train": 2, "valid": 1, "test": 1},
        8000,
        "Libri2Mix/wav8k/min",
    )
    with pytest.raises(PrepError, match="train-100/mix_both"):
        prepare_librimix(libri360_root, tmp_path / "x", train_set="train-100")


def test_manifest_survives_moving_data(tmp_path, wham_root):
    from speechbrain.dataio.dataset import DynamicItemDataset

    paths = prepare_wham(wham_root, tmp_path / "prep", task="sep_clean")
    moved = tmp_path / "elsewhere" / "WHAM"
    shutil.copytree(wham_root / "wav8k" / "min", moved / "wav8k" / "min")
    data = DynamicItemDataset.from_csv(paths["test"], replacements={"data_root": str(moved)})
    data.set_output_keys(["id", "mix_wav", "s2_wav", "duration"])
    assert len(data) == WHAM_SIZES["test"]
    for item in data:
        assert Path(item["mix_wav"]).is_file() and Path(item["s2_wav"]).is_file()
        assert str(moved) in item["mix_wav"]
        assert item["duration"] > 1.0


def test_partial_librimix(tmp_path, libri_clean_only):
    paths = prepare_librimix(libri_clean_only, tmp_path, task="sep_clean")
    _check_manifests(
        paths,
        libri_clean_only,
        "sep_clean",
        2,
        {"train": 2, "valid": 1, "test": 1},
        8000,
        "Libri2Mix/wav8k/min",
    )
    for task in ("sep_noisy", "enh_single"):
        with pytest.raises(PrepError) as err:
            prepare_librimix(libri_clean_only, tmp_path / task, task=task)
        msg = str(err.value)
        assert MIX_FOLDER[task] in msg and f"task '{task}' needs" in msg
        assert "has only: mix_clean, s1, s2" in msg and "possible with this data: sep_clean" in msg
        assert "\n" not in msg
        assert not (tmp_path / task).exists() or not list((tmp_path / task).glob("*.csv"))
    with pytest.raises(PrepError, match="wav16k"):
        prepare_librimix(libri_clean_only, tmp_path / "x", task="sep_clean", sample_rate=16000)


def test_librimix_metadata_partial_warning(tmp_path, libri_root, caplog):
    corpus = tmp_path / "LibriMix"
    shutil.copytree(
        libri_root / "Libri2Mix" / "wav8k" / "min",
        corpus / "Libri2Mix" / "wav8k" / "min",
    )
    split = corpus / "Libri2Mix" / "wav8k" / "min" / "dev"
    victim = min((split / "mix_clean").iterdir()).name
    for folder in split.iterdir():
        (folder / victim).unlink()
    with caplog.at_level(logging.WARNING):
        paths = prepare_librimix(corpus, tmp_path / "prep", task="sep_clean")
    assert len(_load(paths["valid"], corpus)) == LIBRI_SIZES["valid"] - 1
    assert "partial generation" in caplog.text


# ----------------------------------------------------------- skip / re-prep


def _mtimes(paths):
    return {k: os.stat(v).st_mtime_ns for k, v in paths.items()}


def test_skip_when_prepared(tmp_path, wham_root, caplog):
    paths = prepare_wham(wham_root, tmp_path)
    before = _mtimes(paths)
    with caplog.at_level(logging.INFO, logger="data_prep.common"):
        again = prepare_wham(wham_root, tmp_path)
    assert again == paths and _mtimes(paths) == before
    assert "skipping" in caplog.text

    # other options -> prepared again
    prepare_wham(wham_root, tmp_path, mode="max")
    assert "wav8k/max/" in Path(paths["train"]).read_text()
    assert json.loads((tmp_path / "wham_prep.json").read_text())["options"]["mode"] == "max"

    # a damaged manifest (header only) is not trusted
    header = Path(paths["valid"]).read_text().splitlines()[0]
    Path(paths["valid"]).write_text(header + "\n")
    prepare_wham(wham_root, tmp_path, mode="max")
    assert len(Path(paths["valid"]).read_text().splitlines()) == WHAM_SIZES["valid"] + 1

    # a missing manifest is rebuilt
    os.unlink(paths["test"])
    prepare_wham(wham_root, tmp_path, mode="max")
    assert Path(paths["test"]).is_file()


def test_skip_prep_flag(tmp_path):
    paths = prepare_wham(tmp_path / "nowhere", tmp_path / "save", skip_prep=True)
    assert Path(paths["train"]).name == "wham_tr.csv"
    assert not (tmp_path / "save").exists()
    paths = prepare_librimix(tmp_path / "nowhere", tmp_path / "save", n_spks=3, skip_prep=True)
    assert Path(paths["test"]).name == "libri3mix_test.csv"


def _crash_after(monkeypatch, n_rows):
    calls = {"n": 0}
    original = files._row_values

    def crashing(row, header):
        calls["n"] += 1
        if calls["n"] > n_rows:
            raise RuntimeError("simulated crash")
        return original(row, header)

    monkeypatch.setattr(files, "_row_values", crashing)


def test_atomic_write_fresh(tmp_path, wham_root, monkeypatch):
    _crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_wham(wham_root, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no manifest, no temp file, no sidecar


def test_atomic_write_keeps_previous(tmp_path, wham_root, monkeypatch):
    paths = prepare_wham(wham_root, tmp_path)
    before = {k: Path(v).read_bytes() for k, v in paths.items()}
    _crash_after(monkeypatch, WHAM_SIZES["train"] + 1)  # dies inside the second manifest
    with pytest.raises(RuntimeError):
        prepare_wham(wham_root, tmp_path, task="sep_clean")
    monkeypatch.undo()
    assert Path(paths["valid"]).read_bytes() == before["valid"]  # untouched, not truncated
    assert Path(paths["test"]).read_bytes() == before["test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "wham_cv.csv",
        "wham_tr.csv",
        "wham_tt.csv",
    ]
    # the sidecar is gone, so neither option set trusts the mixed manifests
    prepare_wham(wham_root, tmp_path)
    assert Path(paths["train"]).read_bytes() == before["train"]
    prepare_wham(wham_root, tmp_path, task="sep_clean")
    assert "noise_wav" not in Path(paths["valid"]).read_text()


# ---------------------------------------------------------------- bad input


@pytest.fixture()
def wham_copy(tmp_path, wham_root):
    root = tmp_path / "WHAM"
    shutil.copytree(wham_root / "wav8k" / "min", root / "wav8k" / "min")
    return root


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_folder(tmp_path, wham_copy):
    shutil.rmtree(wham_copy / "wav8k" / "min" / "cv" / "mix_both")
    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save")
    assert msg.startswith(f"WHAM! folder not found: {wham_copy / 'wav8k/min/cv/mix_both'} ")
    assert "(expected <data_folder>/wav8k/min/{tr,cv,tt}/mix_both)" in msg
    assert "possible with this data: sep_clean" in msg
    assert not (tmp_path / "save").exists() or not list((tmp_path / "save").iterdir())

    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save", sample_rate=16000)
    assert "wav16k/min/tr/mix_both" in msg and "contains: wav8k" in msg

    msg = _prep_error(prepare_wham, tmp_path / "nowhere", tmp_path / "save")
    assert msg == f"WHAM! data_folder not found: {tmp_path / 'nowhere'}"


def test_missing_sources(tmp_path, wham_copy):
    s2 = wham_copy / "wav8k" / "min" / "tr" / "s2"
    victims = sorted(p.name for p in s2.iterdir())[:2]
    for name in victims:
        (s2 / name).unlink()
    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save")
    assert "s2: 2 missing" in msg
    for name in victims:
        assert name[:-4] in msg


def test_many_missing_sources_are_summarised(tmp_path, libri_root):
    corpus = tmp_path / "LibriMix"
    shutil.copytree(
        libri_root / "Libri3Mix" / "wav8k" / "max",
        corpus / "Libri3Mix" / "wav8k" / "max",
    )
    shutil.rmtree(corpus / "Libri3Mix" / "wav8k" / "max" / "dev" / "noise")
    (corpus / "Libri3Mix" / "wav8k" / "max" / "dev" / "noise").mkdir()
    msg = _prep_error(prepare_librimix, corpus, tmp_path / "save", n_spks=3, mode="max")
    assert "noise: 2 missing" in msg


def test_wrong_sample_rate(tmp_path, wham_copy):
    path = min((wham_copy / "wav8k" / "min" / "tt" / "s1").iterdir())
    x, sr = sf.read(path)
    sf.write(path, resample(x, sr, 16000), 16000, subtype="FLOAT")
    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save")
    assert str(path) in msg and "16000" in msg and "8000" in msg


def test_corrupt_wav(tmp_path, wham_copy):
    path = max((wham_copy / "wav8k" / "min" / "cv" / "mix_both").iterdir())
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save")
    assert msg.startswith(f"unreadable WAV file: {path}")


def test_length_mismatch(tmp_path, wham_copy):
    path = min((wham_copy / "wav8k" / "min" / "tr" / "noise").iterdir())
    x, sr = sf.read(path)
    sf.write(path, x[:-10], sr, subtype="FLOAT")
    msg = _prep_error(prepare_wham, wham_copy, tmp_path / "save")
    assert "length mismatch" in msg and str(path) in msg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rate": 44100}, "invalid sample_rate=44100"),
        ({"mode": "avg"}, "invalid mode='avg'"),
        ({"task": "separate"}, "invalid task='separate'"),
    ],
)
def test_bad_options_wham(tmp_path, wham_root, kwargs, match):
    assert match in _prep_error(prepare_wham, wham_root, tmp_path, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_spks": 4}, "invalid n_spks=4"),
        ({"train_set": "train-500"}, "invalid train_set='train-500'"),
        ({"task": "sep"}, "invalid task='sep'"),
        ({"sample_rate": 22050}, "invalid sample_rate=22050"),
    ],
)
def test_bad_options_librimix(tmp_path, libri_root, kwargs, match):
    assert match in _prep_error(prepare_librimix, libri_root, tmp_path, **kwargs)


def test_librimix_root_not_found(tmp_path):
    (tmp_path / "data" / "Libri3Mix").mkdir(parents=True)
    msg = _prep_error(prepare_librimix, tmp_path / "data", tmp_path / "save", n_spks=2)
    assert "Libri2Mix" in msg and "contains: Libri3Mix" in msg


# ---------------------------------------------------------------------- CLI


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_error(tmp_path):
    proc = _cli(
        "data_prep.wham",
        "--data_folder",
        str(tmp_path / "missing"),
        "--save_folder",
        str(tmp_path / "save"),
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr and str(tmp_path / "missing") in lines[0]


def test_cli_librimix_partial_error(tmp_path, libri_clean_only):
    proc = _cli(
        "data_prep.librimix",
        "--data_folder",
        str(libri_clean_only),
        "--save_folder",
        str(tmp_path),
        "--task",
        "sep_noisy",
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "mix_both" in lines[0]


def test_cli_success(tmp_path, wham_root, libri_root):
    proc = _cli(
        "data_prep.wham",
        "--data_folder",
        str(wham_root),
        "--save_folder",
        str(tmp_path),
        "--sample_rate",
        "16000",
        "--mode",
        "max",
        "--task",
        "enh_single",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"train: {tmp_path / 'wham_tr.csv'}" in proc.stdout
    assert len(_load(tmp_path / "wham_tt.csv", wham_root)) == WHAM_SIZES["test"]
    proc = _cli(
        "data_prep.librimix",
        "--data_folder",
        str(libri_root),
        "--save_folder",
        str(tmp_path),
        "--n_spks",
        "3",
        "--task",
        "sep_clean",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "libri3mix_train-100.csv").is_file()
    assert (tmp_path / "libri3mix_prep.json").is_file()


# ------------------------------------------- LibriMix: data_folder at each level

#: One hand-made mixture per split: (split folder, mixture ID, LibriSpeech enrollment of the s1 speaker).
LIBRI_HAND = [
    ("train-100", "103-1240-0000_1034-121119-0001", "train-clean-100/103/1240/103-1240-0005.flac"),
    ("dev", "1272-128104-0000_1462-170138-0001", "dev-clean/1272/128104/1272-128104-0004.flac"),
    ("test", "1089-134686-0000_121-127105-0031", "test-clean/1089/134686/1089-134686-0009.flac"),
]


def _hand_librimix(storage):
    """``<storage>/Libri2Mix/wav8k/min/{train-100,dev,test}/{mix_clean,s1,s2}`` (800 samples) and LibriSpeech."""
    base = storage / "Libri2Mix" / "wav8k" / "min"
    for split, mix_id, enroll in LIBRI_HAND:
        for folder, value in (("s1", 0.25), ("s2", -0.5), ("mix_clean", -0.25)):
            (base / split / folder).mkdir(parents=True, exist_ok=True)
            sf.write(base / split / folder / f"{mix_id}.wav", np.full(800, value), 8000, subtype="PCM_16")
        path = storage / "LibriSpeech" / enroll
        path.parent.mkdir(parents=True)
        sf.write(path, np.full(3200, 0.125), 16000, format="FLAC")
    return storage


@pytest.mark.parametrize(
    "level, prefix",
    [
        ("", "Libri2Mix/wav8k/min/"),  # the generator's storage folder
        ("Libri2Mix", "wav8k/min/"),
        ("Libri2Mix/wav8k", "min/"),
        ("Libri2Mix/wav8k/min", ""),  # where Asteroid recipes point
    ],
)
def test_librimix_data_folder_levels(tmp_path, level, prefix):
    storage = _hand_librimix(tmp_path / "LibriMix")
    data_folder = storage / level if level else storage
    paths = prepare_librimix(data_folder, tmp_path / "prep", task="sep_clean")
    for (split, mix_id, _), path in zip(LIBRI_HAND, paths.values()):
        row = Path(path).read_text().splitlines()[1].split(",")
        assert row[:3] == [mix_id, "0.1", f"$data_root/{prefix}{split}/mix_clean/{mix_id}.wav"]
        assert sf.read(_load(path, data_folder)[mix_id]["s2_wav"])[0][0] == -0.5


def test_librimix_data_folder_contradicts_options(tmp_path):
    storage = _hand_librimix(tmp_path / "LibriMix")
    wav8k = storage / "Libri2Mix" / "wav8k"
    msg = _prep_error(prepare_librimix, wav8k / "min", tmp_path / "s", task="sep_clean", sample_rate=16000)
    assert msg == (
        f"LibriMix data_folder {wav8k / 'min'} is in a wav8k folder but sample_rate=16000 "
        f"(point at {storage / 'Libri2Mix' / 'wav16k' / 'min'} or set sample_rate=8000)"
    )
    msg = _prep_error(prepare_librimix, wav8k / "min", tmp_path / "s", task="sep_clean", mode="max")
    assert msg == (
        f"LibriMix data_folder {wav8k / 'min'} is a LibriMix min folder but mode='max' "
        f"(point at {wav8k / 'max'} or set mode='min')"
    )
    msg = _prep_error(prepare_librimix, wav8k, tmp_path / "s", task="sep_clean", sample_rate=16000)
    assert msg == (
        f"LibriMix data_folder {wav8k} is a wav8k folder but sample_rate=16000 "
        f"(point at {storage / 'Libri2Mix' / 'wav16k'} or set sample_rate=8000)"
    )
    msg = _prep_error(prepare_librimix, wav8k / "min", tmp_path / "s", task="sep_clean", n_spks=3)
    assert msg == (
        f"LibriMix data_folder {wav8k / 'min'} is in a Libri2Mix folder but n_spks=3 "
        f"(point at {storage / 'Libri3Mix' / 'wav8k' / 'min'} or set n_spks=2)"
    )
    # a level without the task's folders names what is there
    msg = _prep_error(prepare_librimix, wav8k / "min", tmp_path / "s")
    assert msg.startswith(f"LibriMix (Libri2Mix) folder not found: {wav8k / 'min' / 'train-100' / 'mix_both'}")


def test_librimix_enrollment_from_the_min_folder(tmp_path):
    # pointed at Libri2Mix/wav8k/min, LibriSpeech is still found beside Libri2Mix and the
    # enrollment copies go to Libri2Mix/wav8k/enroll, reached through ..
    storage = _hand_librimix(tmp_path / "LibriMix")
    aux = tmp_path / "aux.lst"
    aux.write_text("".join(f"{mix_id}\t../{enroll}\n" for _, mix_id, enroll in LIBRI_HAND))
    data_folder = storage / "Libri2Mix" / "wav8k" / "min"
    paths = prepare_librimix(data_folder, tmp_path / "prep", task="sep_clean", enrollment=True, aux_list=aux)
    for (_, mix_id, enroll), path in zip(LIBRI_HAND, paths.values()):
        utt = Path(enroll).stem
        assert f"$data_root/../enroll/{utt}.wav" in Path(path).read_text()
        copy = storage / "Libri2Mix" / "wav8k" / "enroll" / f"{utt}.wav"
        assert Path(_load(path, data_folder)[mix_id]["enroll_wav"]).resolve() == copy
        assert sf.info(copy).samplerate == 8000 and sf.info(copy).frames == 1600
