"""MUSAN noise and 100 Nonspeech Sounds: mini corpora, the seeded file split, manifests and readers."""

import csv
import json
import logging
import shutil
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError
from data_prep.mini import make_mini_musan, make_mini_nonspeech
from data_prep.noise_corpora import (
    corpus_files,
    main,
    noise_split,
    prepare_noise_corpus,
    read_noise,
    split_counts,
)
from modules.data.mixing import folder_pool

HEADER = "ID,duration,noise_wav,noise_wav_format,noise_wav_opts,sample_rate,corpus,subset"
N_MUSAN = 10  # 9 free-sound, 1 sound-bible
N_NONSPEECH = 5


@pytest.fixture(scope="module")
def musan_root(tmp_path_factory):
    return make_mini_musan(tmp_path_factory.mktemp("noise"), seed=0, n_train=8, n_valid=1, n_test=1)


@pytest.fixture(scope="module")
def nonspeech_root(tmp_path_factory):
    return make_mini_nonspeech(tmp_path_factory.mktemp("noise"), seed=0, n_train=3, n_valid=1, n_test=1)


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ the mini corpora


def test_mini_musan_layout(musan_root):
    assert musan_root.name == "musan"
    assert {p.name for p in musan_root.iterdir() if not p.name.startswith(".")} == {"README", "noise"}
    noise = musan_root / "noise"
    assert {p.name for p in noise.iterdir()} == {"free-sound", "sound-bible"}
    counts = {}
    for subset in ("free-sound", "sound-bible"):
        names = sorted(p.name for p in (noise / subset).iterdir())
        assert names[:2] == ["ANNOTATIONS", "LICENSE"]
        wavs = names[2:]
        assert wavs == [f"noise-{subset}-{i:04d}.wav" for i in range(len(wavs))]
        for name in wavs:
            info = sf.info(noise / subset / name)
            assert (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
            assert 1.0 <= info.duration <= 2.0
            x = sf.read(noise / subset / name)[0]
            assert 1e-4 < np.mean(x**2) and np.max(np.abs(x)) < 1.0
        assert (noise / subset / "ANNOTATIONS").read_text().splitlines()[0].startswith(f"noise-{subset}-0000 ")
        counts[subset] = len(wavs)
    assert counts == {"free-sound": 9, "sound-bible": 1}


def test_mini_nonspeech_layout(nonspeech_root):
    names = {p.name for p in nonspeech_root.iterdir() if not p.name.startswith(".")}
    assert names == {f"n{i}.wav" for i in range(1, N_NONSPEECH + 1)}
    for name in names:
        info = sf.info(nonspeech_root / name)
        assert (info.samplerate, info.subtype, info.channels) == (20000, "PCM_16", 1)


def test_mini_noise_is_deterministic(tmp_path):
    for maker in (make_mini_musan, make_mini_nonspeech):
        trees = []
        for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
            root = maker(tmp_path / folder, seed=seed, n_train=2, n_valid=1, n_test=1)
            trees.append({p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.wav"))})
        assert trees[0] == trees[1] and trees[0].keys() == trees[2].keys() and trees[0] != trees[2]


# ------------------------------------------------------------------ the split


def test_split_counts():
    assert split_counts(930, (0.8, 0.1, 0.1)) == (744, 93, 93)  # all of MUSAN's noise
    assert split_counts(100, (0, 0, 1)) == (0, 0, 100)  # 100 Nonspeech, test-only
    assert split_counts(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert split_counts(3, (0.9, 0.05, 0.05)) == (1, 1, 1)  # every non-zero fraction gets a file
    assert split_counts(7, (0.5, 0.0, 0.5)) == (3, 0, 4)  # ties go to test first
    assert _prep_error(split_counts, 2, (0.8, 0.1, 0.1)) == "2 files cannot fill 3 splits (fractions [0.8, 0.1, 0.1])"
    for bad in ((0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), (float("nan"), 0, 1), "abc"):
        assert _prep_error(split_counts, 10, bad).startswith(f"invalid fractions={bad!r}")


def test_split_is_deterministic_disjoint_and_complete():
    files = [f"free-sound/noise-free-sound-{i:04d}.wav" for i in range(843)]
    files += [f"sound-bible/noise-sound-bible-{i:04d}.wav" for i in range(87)]
    split = noise_split(files, seed=0, fractions=(0.8, 0.1, 0.1))
    assert [len(v) for v in split.values()] == [744, 93, 93]
    assert sorted(chain(*split.values())) == sorted(files)  # complete, nothing twice
    assert not set(split["test"]) & set(split["train"]) and not set(split["valid"]) & set(split["train"])
    assert not set(split["test"]) & set(split["valid"])
    assert all(v == sorted(v) for v in split.values())
    rng = np.random.default_rng(1)
    assert noise_split(list(rng.permutation(files)), 0, (0.8, 0.1, 0.1)) == split  # order of the input
    assert noise_split(files, 0, (0.8, 0.1, 0.1)) == split
    assert noise_split(files, 1, (0.8, 0.1, 0.1))["test"] != split["test"]  # another seed, another split
    # the rule is a hash of seed and name, no random generator: pinned, the same on any machine
    small = noise_split([f"n{i}.wav" for i in range(1, 11)], seed=0, fractions=(0.6, 0.2, 0.2))
    assert small == {
        "train": ["n1.wav", "n10.wav", "n5.wav", "n6.wav", "n7.wav", "n9.wav"],
        "valid": ["n3.wav", "n8.wav"],
        "test": ["n2.wav", "n4.wav"],
    }
    # Paths come back as given; test files are the first of one order: fewer test files, a subset
    paths = [Path(f) for f in files[:50]]
    assert all(isinstance(p, Path) for p in noise_split(paths, 3)["train"])
    smaller = noise_split(files, 0, (0.9, 0.05, 0.05))["test"]
    assert set(smaller) <= set(split["test"])


def test_split_errors():
    assert _prep_error(noise_split, ["a.wav", "b.wav", "a.wav"]) == "duplicate noise files: a.wav"
    assert _prep_error(noise_split, ["a.wav"], seed=0.5) == "invalid seed=0.5 (an integer)"
    assert _prep_error(noise_split, ["a.wav"], seed=True) == "invalid seed=True (an integer)"
    assert noise_split(["a.wav"], seed=np.int64(2), fractions=(1, 0, 0))["train"] == ["a.wav"]


# ------------------------------------------------------------------ MUSAN


@pytest.mark.parametrize("level, prefix", [("", "noise/"), ("noise", ""), ("..", "musan/noise/")])
def test_prepare_musan(tmp_path, musan_root, level, prefix):
    data_folder = (musan_root / level).resolve()
    paths = prepare_noise_corpus(data_folder, tmp_path, "musan", sample_rate=16000)
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": "musan_noise_train.csv",
        "valid": "musan_noise_valid.csv",
        "test": "musan_noise_test.csv",
    }
    root, files = corpus_files(data_folder, "musan")
    assert root == prefix.rstrip("/") and len(files) == N_MUSAN
    expected = noise_split(files, 0, (0.8, 0.1, 0.1))  # the simulator's view of the same split
    seen = set()
    for split, path in paths.items():
        text = Path(path).read_text()
        assert text.splitlines()[0] == HEADER and str(musan_root) not in text
        rows = _rows(path)
        assert [f"{r['subset']}/{r['ID']}.wav" for r in rows] == expected[split]
        data = _load(path, data_folder)
        for row in rows:
            assert row["noise_wav"] == f"$data_root/{prefix}{row['subset']}/{row['ID']}.wav"
            wav = data[row["ID"]]["noise_wav"]
            info = sf.info(wav)
            assert float(row["duration"]) == info.frames / info.samplerate
            assert (int(row["sample_rate"]), row["corpus"]) == (16000, "musan")
            assert row["subset"] in ("free-sound", "sound-bible") and Path(wav).parent.name == row["subset"]
        seen |= {r["ID"] for r in rows}
    assert len(seen) == N_MUSAN  # ANNOTATIONS and LICENSE are not audio: never listed
    sidecar = json.loads((tmp_path / "musan_noise_prep.json").read_text())
    assert sidecar["split"] == {"train": 8, "valid": 1, "test": 1}
    assert sidecar["options"]["seed"] == 0 and sidecar["options"]["fractions"] == [0.8, 0.1, 0.1]


def test_musan_16k_noise_for_an_8k_recipe(tmp_path, musan_root, caplog):
    with caplog.at_level(logging.INFO, logger="data_prep.noise_corpora"):
        paths = prepare_noise_corpus(musan_root, tmp_path / "prep", "musan", 8000, export_folder=tmp_path / "n8k")
    assert (
        f"MUSAN noise: {N_MUSAN} files at 16000 Hz, the recipe at 8000 Hz: the manifests record each file's rate "
        "and the noise is resampled to 8000 Hz on load" in caplog.text
    )
    rows = _rows(paths["train"])
    assert {r["sample_rate"] for r in rows} == {"16000"}  # the file's rate, never relabelled
    row = rows[0]
    x = read_noise(row, 8000, data_folder=musan_root)
    assert len(x) == round(float(row["duration"]) * 8000)
    assert read_noise(musan_root / row["noise_wav"][len("$data_root/") :], 16000).shape == (
        round(float(row["duration"]) * 16000),
    )
    # the recipes' noise_folder reader takes the exported split at the recipe's rate, not the corpus itself
    with pytest.raises(ValueError, match="resample the folder first"):
        folder_pool(musan_root / "noise", 8000)
    pool = folder_pool(tmp_path / "n8k" / "train", 8000)
    assert sorted(Path(p).name for p in pool.paths) == sorted(f"{r['ID']}.wav" for r in rows)
    test_files = {p.name for p in (tmp_path / "n8k" / "test").rglob("*.wav")}
    assert test_files == {f"{r['ID']}.wav" for r in _rows(paths["test"])}
    assert not test_files & {Path(p).name for p in pool.paths}
    exported = next((tmp_path / "n8k" / "train").rglob("*.wav"))
    assert exported.parent.name in ("free-sound", "sound-bible") and sf.info(exported).samplerate == 8000


def test_export_follows_the_split(tmp_path, musan_root):
    # an export with another seed into the same folder: no file of the old split stays behind
    export = tmp_path / "n8k"
    for seed in (0, 1):
        paths = prepare_noise_corpus(musan_root, tmp_path / str(seed), "musan", seed=seed, export_folder=export)
        for split, path in paths.items():
            files = {p.relative_to(export / split).as_posix() for p in (export / split).rglob("*.wav")}
            assert files == {f"{r['subset']}/{r['ID']}.wav" for r in _rows(path)}
    assert not {p.name for p in (export / "test").rglob("*.wav")} & {p.name for p in (export / "train").rglob("*.wav")}


def test_musan_subsets_and_errors(tmp_path, musan_root):
    copy = tmp_path / "musan"
    shutil.copytree(musan_root, copy)
    shutil.rmtree(copy / "noise" / "sound-bible")
    msg = _prep_error(prepare_noise_corpus, copy, tmp_path / "s", "musan")
    assert msg == (
        f"MUSAN noise folder not found: {copy / 'noise' / 'sound-bible'} (expected "
        "<musan>/noise/{free-sound,sound-bible}; set subsets to the ones there); "
        f"{copy / 'noise'} contains: free-sound"
    )
    paths = prepare_noise_corpus(copy, tmp_path / "s", "musan", subsets=("free-sound",))
    assert sum(len(_rows(p)) for p in paths.values()) == N_MUSAN - 1
    for name in (f for f in (copy / "noise" / "free-sound").iterdir() if f.suffix == ".wav"):
        name.unlink()
    msg = _prep_error(prepare_noise_corpus, copy, tmp_path / "s2", "musan", subsets=("free-sound",))
    assert msg == f"no .wav files in {copy / 'noise' / 'free-sound'}; it contains: ANNOTATIONS, LICENSE"
    msg = _prep_error(prepare_noise_corpus, tmp_path / "nowhere", tmp_path / "s", "musan")
    assert msg == f"MUSAN noise data_folder not found: {tmp_path / 'nowhere'}"
    (tmp_path / "empty").mkdir()
    msg = _prep_error(prepare_noise_corpus, tmp_path / "empty", tmp_path / "s", "musan")
    assert msg.startswith(f"MUSAN noise folders not found under {tmp_path / 'empty'} (expected noise/")
    for kwargs, start in (
        ({"corpus": "wham"}, "invalid corpus="),
        ({"sample_rate": 44100}, "invalid sample_rate="),
        ({"fractions": (0.5, 0.5, 0.5)}, "invalid fractions="),
        ({"seed": "x"}, "invalid seed="),
        ({"subsets": ("music",)}, "invalid subsets="),
    ):
        assert _prep_error(prepare_noise_corpus, musan_root, tmp_path / "s", **kwargs).startswith(start)
    msg = _prep_error(prepare_noise_corpus, musan_root, tmp_path / "s", "musan", subsets=("sound-bible",))
    assert msg == "1 files cannot fill 3 splits (fractions [0.8, 0.1, 0.1])"


def test_musan_content_check(tmp_path, musan_root):
    copy = tmp_path / "musan"
    shutil.copytree(musan_root, copy)
    path = copy / "noise" / "free-sound" / "noise-free-sound-0003.wav"
    sf.write(path, np.zeros(sf.info(path).frames), 16000, subtype="PCM_16")
    msg = _prep_error(prepare_noise_corpus, copy, tmp_path / "s", "musan")
    assert f"{path} (silent: -inf dBFS" in msg
    paths = prepare_noise_corpus(copy, tmp_path / "s", "musan", skip_bad_files=True)
    ids = {split: [r["ID"] for r in _rows(p)] for split, p in paths.items()}
    assert sum(map(len, ids.values())) == N_MUSAN - 1 and path.stem not in chain(*ids.values())
    clean = prepare_noise_corpus(musan_root, tmp_path / "clean", "musan")
    for split, p in clean.items():  # the split is made first: a file left out moves no other
        assert [r["ID"] for r in _rows(p) if r["ID"] != path.stem] == ids[split]


def test_seed_and_fractions(tmp_path, musan_root):
    tests = set()
    for seed in range(4):
        paths = prepare_noise_corpus(musan_root, tmp_path / str(seed), "musan", seed=seed)
        tests.add(_rows(paths["test"])[0]["ID"])
    assert len(tests) > 1
    paths = prepare_noise_corpus(musan_root, tmp_path / "f", "musan", fractions=(0.7, 0.0, 0.3))
    assert {k: len(_rows(v)) for k, v in paths.items()} == {"train": 7, "test": 3}  # no empty valid manifest


# ------------------------------------------------------------------ 100 Nonspeech Sounds


@pytest.mark.parametrize("level", ["", ".."])
def test_prepare_nonspeech(tmp_path, nonspeech_root, level, caplog):
    data_folder = (nonspeech_root / level).resolve()
    with caplog.at_level(logging.INFO, logger="data_prep.noise_corpora"):
        paths = prepare_noise_corpus(data_folder, tmp_path, "nonspeech", sample_rate=8000)
    assert list(paths) == ["test"] and Path(paths["test"]).name == "nonspeech_test.csv"  # test-only by default
    rows = _rows(paths["test"])
    assert [r["ID"] for r in rows] == [f"n{i}" for i in range(1, N_NONSPEECH + 1)]
    assert {(r["sample_rate"], r["corpus"]) for r in rows} == {("20000", "nonspeech")}
    prefix = "" if level == "" else "Nonspeech/"
    assert rows[0]["noise_wav"] == f"$data_root/{prefix}n1.wav"
    assert "5 files at 20000 Hz, the recipe at 8000 Hz" in caplog.text and "resampled to 8000 Hz on load" in caplog.text
    x = read_noise(rows[1], 8000, data_folder=data_folder)
    assert len(x) == -(-sf.info(nonspeech_root / "n2.wav").frames * 8000 // 20000)  # ceil, as resample_poly
    paths = prepare_noise_corpus(data_folder, tmp_path / "all", "nonspeech", fractions=(0.6, 0.2, 0.2))
    assert {k: len(_rows(v)) for k, v in paths.items()} == {"train": 3, "valid": 1, "test": 1}


def test_nonspeech_files_and_errors(tmp_path, nonspeech_root, caplog):
    copy = tmp_path / "ns"
    shutil.copytree(nonspeech_root, copy)
    (copy / "n3.wav").unlink()
    (copy / "readme.txt").write_text("x")
    shutil.copy(copy / "n1.wav", copy / "other.wav")
    with caplog.at_level(logging.WARNING, logger="data_prep.noise_corpora"):
        assert corpus_files(copy, "nonspeech") == ("", ["n1.wav", "n2.wav", "n4.wav", "n5.wav"])
    assert "4 files in" in caplog.text and "not n1.wav ... n4.wav (a partial copy?)" in caplog.text
    (tmp_path / "two" / "a").mkdir(parents=True)
    shutil.copy(copy / "n1.wav", tmp_path / "two" / "a" / "n1.wav")
    shutil.copytree(tmp_path / "two" / "a", tmp_path / "two" / "b")
    msg = _prep_error(prepare_noise_corpus, tmp_path / "two", tmp_path / "s", "nonspeech")
    assert msg.endswith(f"several folders under {tmp_path / 'two'} hold n<k>.wav files (a, b): point at one")
    msg = _prep_error(prepare_noise_corpus, tmp_path / "two" / "a" / "n1.wav", tmp_path / "s", "nonspeech")
    assert msg.startswith("100 Nonspeech Sounds data_folder not found: ")
    (tmp_path / "none").mkdir()
    msg = _prep_error(prepare_noise_corpus, tmp_path / "none", tmp_path / "s", "nonspeech")
    assert msg == f"100 Nonspeech Sounds files n1.wav ... not found in {tmp_path / 'none'} or a folder below it; " + (
        "it contains: (empty)"
    )


def test_cli(tmp_path, musan_root, nonspeech_root, capsys):
    assert main(["--corpus", "nonspeech", "--data_folder", str(tmp_path / "x"), "--save_folder", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: 100 Nonspeech Sounds data_folder not found: {tmp_path / 'x'}"
    ]
    argv = ["--data_folder", str(musan_root), "--save_folder", str(tmp_path), "--fractions", "0.6", "0.2", "0.2"]
    assert main([*argv, "--seed", "3", "--sample_rate", "16000"]) == 0
    out = capsys.readouterr().out
    assert f"train: {tmp_path / 'musan_noise_train.csv'}" in out and "test: " in out
    assert json.loads((tmp_path / "musan_noise_prep.json").read_text())["options"]["seed"] == 3
    assert main(["--corpus", "nonspeech", "--data_folder", str(nonspeech_root), "--save_folder", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"test: {tmp_path / 'nonspeech_test.csv'}"
