"""Miniature corpora: the official generators' layouts, determinism, signal relations."""

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError
from data_prep.mini import (
    DATASETS,
    SADDEL_CORPORA,
    main,
    make_mini,
    make_mini_librimix,
    make_mini_librispeech,
    make_mini_musan,
    make_mini_nonspeech,
    make_mini_wham,
    make_mini_wsj0mix,
    write_wav,
)
from data_prep.synth import active_level, rms

REPO = Path(__file__).resolve().parents[1]
SIZES = {"n_train": 6, "n_valid": 3, "n_test": 3}
WHAM_FOLDERS = {"mix_clean", "mix_single", "mix_both", "s1", "s2", "noise"}
WHAM_NAME = re.compile(r"^([0-9a-z]{8})_(\d+(?:\.\d+)?)_([0-9a-z]{8})_-(\2)\.wav$")
LIBRI_UTT = r"\d+-\d+-\d{4}"


@pytest.fixture(scope="module")
def wham_root(tmp_path_factory):
    return make_mini_wham(tmp_path_factory.mktemp("mini"), seed=0, **SIZES)


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory):
    return make_mini_librimix(tmp_path_factory.mktemp("mini"), seed=0, n_train=4, n_valid=2, n_test=2)


def _read(path):
    return sf.read(path, dtype="float64")[0]


def _wham_names(root, rate, mode, split):
    return sorted(p.name for p in (root / f"wav{rate // 1000}k" / mode / split / "mix_both").iterdir())


# ------------------------------------------------------------------ layouts


def test_wham_layout(wham_root):
    assert wham_root.name == "WHAM"
    assert {p.name for p in wham_root.iterdir() if not p.name.startswith(".")} == {
        "wav8k",
        "wav16k",
    }
    for rate in (8000, 16000):
        for mode in ("min", "max"):
            base = wham_root / f"wav{rate // 1000}k" / mode
            assert {p.name for p in base.iterdir()} == {"tr", "cv", "tt"}
            for split, n in zip(("tr", "cv", "tt"), SIZES.values()):
                assert {p.name for p in (base / split).iterdir()} == WHAM_FOLDERS
                names = _wham_names(wham_root, rate, mode, split)
                assert len(names) == n
                for folder in WHAM_FOLDERS:
                    assert sorted(p.name for p in (base / split / folder).iterdir()) == names
                for name in names:
                    match = WHAM_NAME.match(name)
                    assert match, name
                    assert 0 < float(match.group(2)) <= 2.5
                    info = sf.info(base / split / "s1" / name)
                    assert (info.samplerate, info.subtype, info.channels) == (
                        rate,
                        "FLOAT",
                        1,
                    )


def test_wham_names_consistent_across_rates_and_modes(wham_root):
    ref = _wham_names(wham_root, 8000, "min", "tr")
    for rate in (8000, 16000):
        for mode in ("min", "max"):
            assert _wham_names(wham_root, rate, mode, "tr") == ref


def test_librimix_layout(libri_root):
    assert libri_root.name == "LibriMix"
    for n in (2, 3):
        top = libri_root / f"Libri{n}Mix"
        assert top.is_dir()
        id_re = re.compile(rf"^{LIBRI_UTT}(?:_{LIBRI_UTT}){{{n - 1}}}\.wav$")
        folders = {"mix_clean", "mix_both", "mix_single", "noise"} | {f"s{k}" for k in range(1, n + 1)}
        for rate in (8000, 16000):
            for mode in ("min", "max"):
                base = top / f"wav{rate // 1000}k" / mode
                assert {p.name for p in base.iterdir()} == {
                    "train-100",
                    "dev",
                    "test",
                    "metadata",
                }
                for split, count in (("train-100", 4), ("dev", 2), ("test", 2)):
                    assert {p.name for p in (base / split).iterdir()} == folders
                    names = sorted(p.name for p in (base / split / "mix_clean").iterdir())
                    assert len(names) == count
                    for folder in folders:
                        assert sorted(p.name for p in (base / split / folder).iterdir()) == names
                    for name in names:
                        assert id_re.match(name), name
                        info = sf.info(base / split / "mix_both" / name)
                        assert (info.samplerate, info.subtype, info.channels) == (
                            rate,
                            "PCM_16",
                            1,
                        )


def test_librimix_metadata(libri_root):
    for n in (2, 3):
        srcs = [f"source_{k}_path" for k in range(1, n + 1)]
        expected = {
            "mix_clean": ["mixture_ID", "mixture_path", *srcs, "length"],
            "mix_both": ["mixture_ID", "mixture_path", *srcs, "noise_path", "length"],
            "mix_single": [
                "mixture_ID",
                "mixture_path",
                "source_1_path",
                "noise_path",
                "length",
            ],
        }
        for rate in (8000, 16000):
            base = libri_root / f"Libri{n}Mix" / f"wav{rate // 1000}k" / "max"
            assert len(list((base / "metadata").iterdir())) == 9
            for split in ("train-100", "dev", "test"):
                for mix_type, columns in expected.items():
                    with open(
                        base / "metadata" / f"mixture_{split}_{mix_type}.csv",
                        newline="",
                    ) as fh:
                        reader = csv.DictReader(fh)
                        rows = list(reader)
                    assert reader.fieldnames == columns
                    ids = sorted(p.stem for p in (base / split / mix_type).iterdir())
                    assert sorted(r["mixture_ID"] for r in rows) == ids
                    for row in rows:
                        mix = Path(row["mixture_path"])
                        assert mix.is_absolute() and mix.is_file()
                        assert mix.parent.name == mix_type
                        assert int(row["length"]) == sf.info(mix).frames
                        for col in columns[2:-1]:
                            assert Path(row[col]).is_file()


# ------------------------------------------------------------ determinism


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("maker", [make_mini_wham, make_mini_librimix, make_mini_wsj0mix])
def test_determinism(tmp_path, maker):
    kwargs = {
        "n_train": 2,
        "n_valid": 1,
        "n_test": 1,
        "sample_rates": (8000,),
        "modes": ("min",),
    }
    if maker is make_mini_librimix:
        kwargs["n_spks"] = (2,)
    a = _tree_bytes(maker(tmp_path / "a", seed=0, **kwargs))
    b = _tree_bytes(maker(tmp_path / "b", seed=0, **kwargs))
    c = _tree_bytes(maker(tmp_path / "c", seed=1, **kwargs))
    wavs = [k for k in a if k.endswith(".wav")]
    assert len(wavs) >= 12
    assert {k: v for k, v in a.items() if k.endswith(".wav")} == {k: v for k, v in b.items() if k.endswith(".wav")}
    # metadata holds absolute paths (different folders) but the same ids
    assert a.keys() == b.keys()
    assert set(a) != set(c)  # other names
    assert sorted(a[k] for k in wavs) != sorted(c[k] for k in c if k.endswith(".wav"))


def test_float_wav_bytes_do_not_depend_on_time(tmp_path):
    # libsndfile writes a timestamp into the PEAK chunk of float WAV files
    x = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    write_wav(tmp_path / "a.wav", x, 8000, "FLOAT")
    time.sleep(1.1)
    write_wav(tmp_path / "b.wav", x, 8000, "FLOAT")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav", dtype="float32")[0], x)


# ------------------------------------------------------- signal relations


def test_wham_mix_is_sum_of_sources(wham_root):
    for rate in (8000, 16000):
        for mode in ("min", "max"):
            base = wham_root / f"wav{rate // 1000}k" / mode
            for split in ("tr", "cv", "tt"):
                for name in _wham_names(wham_root, rate, mode, split):
                    sig = {f: _read(base / split / f / name) for f in WHAM_FOLDERS}
                    np.testing.assert_allclose(sig["mix_clean"], sig["s1"] + sig["s2"], atol=1e-6)
                    np.testing.assert_allclose(sig["mix_single"], sig["s1"] + sig["noise"], atol=1e-6)
                    np.testing.assert_allclose(sig["mix_both"], sig["s1"] + sig["s2"] + sig["noise"], atol=1e-6)
                    assert np.max(np.abs(sig["mix_both"])) < 1.0


def test_librimix_mix_is_sum_of_sources(libri_root):
    lsb = 1 / 32768
    for n in (2, 3):
        for rate in (8000, 16000):
            for mode in ("min", "max"):
                base = libri_root / f"Libri{n}Mix" / f"wav{rate // 1000}k" / mode
                for split in ("train-100", "dev", "test"):
                    for path in (base / split / "mix_clean").iterdir():
                        sig = {
                            f: _read(base / split / f / path.name)
                            for f in ["mix_clean", "mix_both", "mix_single", "noise"]
                            + [f"s{k}" for k in range(1, n + 1)]
                        }
                        clean = sum(sig[f"s{k}"] for k in range(1, n + 1))
                        tol = (n + 2) * lsb
                        np.testing.assert_allclose(sig["mix_clean"], clean, atol=tol)
                        np.testing.assert_allclose(sig["mix_both"], clean + sig["noise"], atol=tol)
                        np.testing.assert_allclose(sig["mix_single"], sig["s1"] + sig["noise"], atol=tol)
                        assert np.max(np.abs(sig["mix_both"])) < 1.0
                        # speech louder than noise, as in the generator (RMS dB)
                        assert rms(sig["s1"]) > rms(sig["noise"]) * 10 ** (-10 / 20)


def test_wham_snrs(wham_root):
    noise_snrs = []
    for rate, tol in ((16000, 0.01), (8000, 0.5)):
        for mode in ("min", "max"):
            base = wham_root / f"wav{rate // 1000}k" / mode
            for split in ("tr", "cv", "tt"):
                for name in _wham_names(wham_root, rate, mode, split):
                    s1, s2, noise = (_read(base / split / f / name) for f in ("s1", "s2", "noise"))
                    loudest = max(active_level(s1, rate), active_level(s2, rate))
                    snr = 20 * np.log10(loudest / rms(noise))
                    assert -6 - tol <= snr <= 3 + tol, (name, snr)
                    noise_snrs.append(snr)
                    if rate == 16000 and mode == "max":
                        # wsj0-2mix: s1 at +snr dB, s2 at -snr dB after level normalisation
                        rel = float(WHAM_NAME.match(name).group(2))
                        ratio = 20 * np.log10(active_level(s1, rate) / active_level(s2, rate))
                        assert ratio == pytest.approx(2 * rel, abs=0.1)
    assert np.ptp(noise_snrs) > 2  # drawn, not constant


def _trailing_zeros(x):
    nz = np.flatnonzero(x)
    return len(x) - (nz[-1] + 1 if nz.size else 0)


def test_wham_min_max_lengths(wham_root):
    for split in ("tr", "cv", "tt"):
        for name in _wham_names(wham_root, 16000, "max", split):
            mx = wham_root / "wav16k" / "max" / split
            mn = wham_root / "wav16k" / "min" / split
            s1, s2 = _read(mx / "s1" / name), _read(mx / "s2" / name)
            z1, z2 = _trailing_zeros(s1), _trailing_zeros(s2)
            assert min(z1, z2) == 0  # the longer source fills the max mixture
            n_min = sf.info(mn / "mix_both" / name).frames
            assert n_min == len(s1) - max(z1, z2)  # min = the shorter source
            for folder in WHAM_FOLDERS:
                assert sf.info(mn / folder / name).frames == n_min
                assert sf.info(mx / folder / name).frames == len(s1)
            # 8 kHz holds the same content at half the rate
            n8 = sf.info(wham_root / "wav8k" / "min" / split / "s1" / name).frames
            assert abs(n8 - n_min / 2) <= 1


def test_librimix_min_max_lengths(libri_root):
    shorter = 0
    for n in (2, 3):
        for split in ("train-100", "dev", "test"):
            mx = libri_root / f"Libri{n}Mix" / "wav16k" / "max" / split
            mn = libri_root / f"Libri{n}Mix" / "wav16k" / "min" / split
            for path in (mx / "mix_both").iterdir():
                n_max, n_min = (
                    sf.info(path).frames,
                    sf.info(mn / "mix_both" / path.name).frames,
                )
                assert n_min <= n_max
                shorter += n_min < n_max
                assert {sf.info(mx / f"s{k}" / path.name).frames for k in range(1, n + 1)} == {n_max}
    assert shorter > 0


def test_disjoint_speakers(wham_root, libri_root):
    def wham_speakers(split):
        spk = set()
        for name in _wham_names(wham_root, 8000, "min", split):
            m = WHAM_NAME.match(name)
            assert m.group(1)[:3] != m.group(3)[:3]  # two different speakers
            spk |= {m.group(1)[:3], m.group(3)[:3]}
        return spk

    sets = [wham_speakers(s) for s in ("tr", "cv", "tt")]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])

    for n in (2, 3):
        sets = []
        for split in ("train-100", "dev", "test"):
            spk = set()
            for path in (libri_root / f"Libri{n}Mix" / "wav8k" / "min" / split / "s1").iterdir():
                ids = [u.split("-")[0] for u in path.stem.split("_")]
                assert len(set(ids)) == n
                spk |= set(ids)
            sets.append(spk)
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


# --------------------------------------------------- options and registry


def test_partial_librimix_generation(tmp_path):
    root = make_mini_librimix(
        tmp_path,
        n_train=1,
        n_valid=1,
        n_test=1,
        sample_rates=(8000,),
        modes=("min",),
        n_spks=(2,),
        mix_types=("mix_clean",),
    )
    base = root / "Libri2Mix" / "wav8k" / "min"
    assert {p.name for p in (base / "dev").iterdir()} == {"mix_clean", "s1", "s2"}
    assert sorted(p.name for p in (base / "metadata").iterdir()) == [
        "mixture_dev_mix_clean.csv",
        "mixture_test_mix_clean.csv",
        "mixture_train-100_mix_clean.csv",
    ]
    header = (base / "metadata" / "mixture_dev_mix_clean.csv").read_text().splitlines()[0]
    assert header == "mixture_ID,mixture_path,source_1_path,source_2_path,length"


def test_overwrite_rules(tmp_path):
    kwargs = {
        "n_train": 1,
        "n_valid": 1,
        "n_test": 1,
        "sample_rates": (8000,),
        "modes": ("min",),
    }
    root = make_mini_wham(tmp_path, **kwargs)
    stale = root / "wav8k" / "min" / "tt" / "s1" / "stale.wav"
    stale.write_bytes(b"x")
    make_mini_wham(tmp_path, **kwargs)  # replaces an earlier mini corpus
    assert not stale.exists()
    (tmp_path / "other" / "WHAM").mkdir(parents=True)
    (tmp_path / "other" / "WHAM" / "real.wav").write_bytes(b"x")
    with pytest.raises(PrepError, match="refusing to overwrite"):
        make_mini_wham(tmp_path / "other", **kwargs)
    assert (tmp_path / "other" / "WHAM" / "real.wav").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_rates": (44100,)}, "sample rate"),
        ({"modes": ("avg",)}, "mode"),
        ({"n_train": 0}, "n_train"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(PrepError, match=match):
        make_mini_wham(tmp_path, **kwargs)


def test_registry_and_cli(tmp_path):
    assert {"wham", "librimix"} <= set(DATASETS)
    with pytest.raises(PrepError, match="dataset"):
        make_mini("nope", tmp_path)
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep.mini",
            "--dataset",
            "all",
            "--out",
            str(out),
            "--n_train",
            "1",
            "--n_valid",
            "1",
            "--n_test",
            "1",
            "--sample_rates",
            "8000",
            "--modes",
            "min",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert str((out / "WHAM").absolute()) in proc.stdout
    assert str((out / "LibriMix").absolute()) in proc.stdout
    assert (out / "WHAM" / "wav8k" / "min" / "tt" / "mix_both").is_dir()
    assert (out / "LibriMix" / "Libri3Mix" / "wav8k" / "min" / "test" / "s3").is_dir()


def test_saddel_corpora_registry(tmp_path, capsys):
    # the corpora of SADDEL's conditions are written by name, not by "all" (the six datasets)
    assert SADDEL_CORPORA == {
        "wsj0mix": make_mini_wsj0mix,
        "musan": make_mini_musan,
        "nonspeech": make_mini_nonspeech,
        "librispeech": make_mini_librispeech,
    }
    assert not set(SADDEL_CORPORA) & set(DATASETS)
    sizes = {"n_train": 1, "n_valid": 1, "n_test": 1, "sample_rates": (8000,), "modes": ("min",)}
    roots = make_mini("wsj0mix", tmp_path, **sizes)
    assert (roots["wsj0mix"] / "3speakers" / "wav8k" / "min" / "tt" / "s3").is_dir()
    assert not (roots["wsj0mix"] / "2speakers" / "wav16k").exists()
    argv = ["--dataset", "musan", "--out", str(tmp_path), "--n_train", "2", "--n_valid", "1", "--n_test", "1"]
    assert main(argv) == 0
    assert f"musan: mini corpus at {(tmp_path / 'musan').absolute()} (4 noise files)" in capsys.readouterr().out
    assert len(list((tmp_path / "musan" / "noise").rglob("*.wav"))) == 4
    with pytest.raises(PrepError, match="sample rate"):
        make_mini("nonspeech", tmp_path, sample_rates=(44100,))
