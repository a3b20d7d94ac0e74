"""SADDEL's test conditions: written once, deterministically, resumably, with exact SNRs and test noise only."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import saddel_conditions
from data_prep.common import PrepError
from data_prep.mini import make_mini_librispeech, make_mini_musan, make_mini_nonspeech, make_mini_wsj0mix
from data_prep.noise_corpora import corpus_files, noise_split
from data_prep.saddel_conditions import (
    CONDITION_FILE,
    build_parser,
    condition_noise_files,
    main,
    prepare_saddel_condition,
    simulate_condition,
    wsj0_speech,
)
from modules.audio import resample
from modules.data import load_manifest

SCENARIOS = ["1sp+n", "2sp", "3sp", "2sp+n", "3sp+n"]
NOISY = {"1sp+n": "1sp_n", "2sp+n": "2sp_n", "3sp+n": "3sp_n"}
N_SOURCES = {"1sp+n": 1, "2sp": 2, "3sp": 3, "2sp+n": 2, "3sp+n": 3}
M_SNR = (-5.0, 20.0)
N_SNR = (10.0, 20.0)


@pytest.fixture(scope="module")
def saddel_corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saddel_corpora")
    return {
        "wsj0": make_mini_wsj0mix(tmp, n_train=1, n_valid=1, n_test=4, sample_rates=(8000,), modes=("min",)),
        "musan": make_mini_musan(tmp, n_train=16, n_valid=2, n_test=2),  # 20 files: 16 / 2 / 2
        "nonspeech": make_mini_nonspeech(tmp, n_train=1, n_valid=1, n_test=2),  # 4 files at 20 kHz, all test
        "librispeech": make_mini_librispeech(tmp, n_train=1, n_valid=1, n_test=10),
    }


def _wsj0_musan(saddel_corpora, out, **kwargs):
    options = dict(snr_range=M_SNR, noise_corpus="musan", noise_folder=saddel_corpora["musan"], progress=False)
    options.update(kwargs)
    return prepare_saddel_condition("M_C", "wsj0", saddel_corpora["wsj0"], out, **options)


@pytest.fixture(scope="module")
def m_c(saddel_corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("conditions")
    return out, _wsj0_musan(saddel_corpora, out)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _read(folder, manifest_path):
    return sf.read(str(manifest_path).replace("$data_root", str(folder)), dtype="float64")[0]


def _tree(folder):
    """{relative path: bytes} of every file below ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _check_noise_segment(folder, row, noise_root, rate):
    """The written noise is a scaled segment of the noise file resampled to ``rate``, wrapping round if shorter."""
    noise = _read(folder, row["noise_wav"])
    data, file_rate = sf.read(Path(noise_root) / row["noise_file"], dtype="float64")
    full = resample(data, file_rate, rate)
    start = int(row["noise_start"])
    segment = np.take(full, np.arange(start, start + len(noise)), mode="wrap")
    gain = noise @ segment / (segment @ segment)
    np.testing.assert_allclose(noise, gain * segment, atol=1e-6)
    return start + len(noise) > len(full)  # tiled


def _signals(folder, row, n_sources):
    sources = np.stack([_read(folder, row[f"s{k}_wav"]) for k in range(1, n_sources + 1)])
    noise = _read(folder, row["noise_wav"]) if "noise_wav" in row else None
    return _read(folder, row["mix_wav"]), sources, noise


# ------------------------------------------------------------------ layout, manifests, signals


def test_layout_and_manifests_load(m_c, saddel_corpora):
    out, paths = m_c
    folder = out / "M_C"
    assert list(paths) == SCENARIOS
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            CONDITION_FILE,
            "1sp_n",
            "1sp_n.csv",
            "2sp",
            "2sp.csv",
            "3sp",
            "3sp.csv",
            "2sp_n",
            "2sp_n.csv",
            "3sp_n",
            "3sp_n.csv",
        ]
    )
    wsj_ids = sorted(p.stem for p in (saddel_corpora["wsj0"] / "2speakers/wav8k/min/tt/mix").iterdir())
    for scenario, path in paths.items():
        n = N_SOURCES[scenario]
        header = next(csv.reader(open(path)))
        assert header[:3] == ["ID", "duration", "mix_wav"]
        assert ("noise_wav" in header) == (scenario in NOISY)
        if scenario in NOISY:
            assert header[-3:] == ["snr_db", "noise_file", "noise_start"]
        assert f"s{n}_wav" in header and f"s{n + 1}_wav" not in header
        data = load_manifest(path, folder, extra_keys=["duration"])
        assert len(data) == 4
        item = data[0]
        assert item["mix_sig"].shape[0] == round(float(item["duration"]) * 8000)
        if N_SOURCES[scenario] < 3:
            assert sorted(r["ID"] for r in _rows(path)) == wsj_ids
        for row in _rows(path):
            for key in ["mix", *(f"s{k}" for k in range(1, n + 1))] + (["noise"] if scenario in NOISY else []):
                info = sf.info(row[f"{key}_wav"].replace("$data_root", str(folder)))
                assert (info.samplerate, info.subtype) == (8000, "FLOAT")


def test_snr_reached_mixture_is_the_sum_and_peaks(m_c):
    out, paths = m_c
    folder = out / "M_C"
    peaks = []
    for scenario, path in paths.items():
        for row in _rows(path):
            mix, sources, noise = _signals(folder, row, N_SOURCES[scenario])
            expected = sources.sum(0) + (0 if noise is None else noise)
            np.testing.assert_allclose(mix, expected, atol=1e-6)
            peaks.append(max(np.abs(mix).max(), np.abs(sources).max(), 0 if noise is None else np.abs(noise).max()))
            if scenario in NOISY:
                snr = 10 * np.log10((sources.sum(0) ** 2).sum() / (noise**2).sum())
                assert M_SNR[0] <= float(row["snr_db"]) <= M_SNR[1]
                assert abs(snr - float(row["snr_db"])) < 0.1
                assert abs(snr - float(row["snr_db"])) < 1e-3  # exact to float32 rounding
    # loud mixtures scaled down to the ceiling with their sources and noise, the others as they are
    assert max(peaks) <= 0.99 + 1e-6 and np.isclose(peaks, 0.99).any() and (np.array(peaks) < 0.98).any()
    # 1sp+n is the first source of each 2-speaker mixture, at its corpus level
    one = {r["ID"]: r for r in _rows(paths["1sp+n"])}
    two = {r["ID"]: r for r in _rows(paths["2sp"])}
    for mix_id, row in one.items():
        s1_one, s1_two = _read(folder, row["s1_wav"]), _read(folder, two[mix_id]["s1_wav"])
        ratio = s1_one @ s1_two / (s1_two @ s1_two)
        np.testing.assert_allclose(s1_one, ratio * s1_two, atol=1e-5)


def test_clean_wsj0_scenarios_are_the_corpus_mixtures(m_c, saddel_corpora):
    out, paths = m_c
    tt = saddel_corpora["wsj0"] / "2speakers/wav8k/min/tt"
    for row in _rows(paths["2sp"]):
        corpus_mix = sf.read(tt / "mix" / f"{row['ID']}.wav", dtype="float64")[0]
        np.testing.assert_allclose(_read(out / "M_C", row["mix_wav"]), corpus_mix, atol=1e-4)


def test_only_test_split_noise_of_musan(m_c, saddel_corpora):
    out, paths = m_c
    _, files = corpus_files(saddel_corpora["musan"], "musan")
    split = noise_split(files, 0, (0.8, 0.1, 0.1))
    record = json.loads((out / "M_C" / CONDITION_FILE).read_text())
    assert record["noise"]["files"] == split["test"] and len(split["test"]) == 2
    assert record["noise"]["snr_range"] == list(M_SNR) and record["parameters"]["seed"] == 0
    used = {row["noise_file"] for s in NOISY for row in _rows(paths[s])}
    assert used <= set(split["test"])
    assert not used & (set(split["train"]) | set(split["valid"]))
    assert all(r["done"] for r in record["scenarios"].values())


# ------------------------------------------------------------------ determinism and resume


def test_rerun_in_a_fresh_folder_is_byte_identical(m_c, saddel_corpora, tmp_path):
    out, _ = m_c
    _wsj0_musan(saddel_corpora, tmp_path)
    assert _tree(tmp_path / "M_C") == _tree(out / "M_C")
    # another seed draws other noise
    other = _wsj0_musan(saddel_corpora, tmp_path / "seed1", seed=1, scenarios=["2sp+n"])
    draws = [(r["snr_db"], r["noise_start"]) for r in _rows(other["2sp+n"])]
    assert draws != [(r["snr_db"], r["noise_start"]) for r in _rows(out / "M_C" / "2sp_n.csv")]


def test_killed_run_resumes_to_the_same_files(m_c, saddel_corpora, tmp_path, monkeypatch):
    out, _ = m_c
    real_write = saddel_conditions.write_float_wav
    calls = []

    def killed_after(path, data, rate):
        if len(calls) == 13:  # 1sp+n done (4 x 3 files), 2sp's first mixture half written
            raise KeyboardInterrupt
        calls.append(path)
        real_write(path, data, rate)

    monkeypatch.setattr(saddel_conditions, "write_float_wav", killed_after)
    with pytest.raises(KeyboardInterrupt):
        _wsj0_musan(saddel_corpora, tmp_path)
    monkeypatch.undo()
    folder = tmp_path / "M_C"
    record = json.loads((folder / CONDITION_FILE).read_text())
    assert [s for s, v in record["scenarios"].items() if v["done"]] == ["1sp+n"]
    assert not (folder / "2sp.csv").exists()
    # a stale temporary file and a truncated file, as a harder kill leaves them
    (folder / "2sp" / "s1" / ".x.wav.abc.tmp").write_bytes(b"RIFF")
    victim = next((folder / "1sp_n" / "noise").iterdir())
    victim.write_bytes(victim.read_bytes()[:200])
    (folder / "1sp_n.csv").unlink()
    record["scenarios"]["1sp+n"]["done"] = False
    (folder / CONDITION_FILE).write_text(json.dumps(record))
    _wsj0_musan(saddel_corpora, tmp_path)
    assert _tree(folder) == _tree(out / "M_C")


def test_finished_condition_is_skipped_and_a_scenario_can_be_added(saddel_corpora, tmp_path, monkeypatch):
    paths = _wsj0_musan(saddel_corpora, tmp_path, scenarios=["2sp"])
    assert list(paths) == ["2sp"]
    before = _tree(tmp_path / "M_C")

    def no_write(*args):
        raise AssertionError("a finished scenario was written again")

    monkeypatch.setattr(saddel_conditions, "write_float_wav", no_write)
    _wsj0_musan(saddel_corpora, tmp_path, scenarios=["2sp"])
    monkeypatch.undo()
    _wsj0_musan(saddel_corpora, tmp_path, scenarios=["2sp", "2sp+n"])
    after = _tree(tmp_path / "M_C")
    assert {k: v for k, v in after.items() if k in before and k != CONDITION_FILE} == {
        k: v for k, v in before.items() if k != CONDITION_FILE
    }
    assert any(k.startswith("2sp_n/noise/") for k in after)


# ------------------------------------------------------------------ 100 Nonspeech and Librispeech-mix


def test_nonspeech_noise_is_resampled_from_its_own_rate(saddel_corpora, tmp_path):
    root, files = condition_noise_files(saddel_corpora["nonspeech"], "nonspeech")
    assert files == ["n1.wav", "n2.wav", "n3.wav", "n4.wav"] and sf.info(root / "n1.wav").samplerate == 20000
    speech = wsj0_speech(saddel_corpora["wsj0"], tmp_path / "prep", n_spks=(2,))
    paths = simulate_condition(speech, files, root, tmp_path, "N_H", ["1sp+n"], N_SNR, 3, progress=False)
    for row in _rows(paths["1sp+n"]):
        _check_noise_segment(tmp_path / "N_H", row, root, 8000)
        assert N_SNR[0] <= float(row["snr_db"]) <= N_SNR[1]
        assert sf.info(row["noise_wav"].replace("$data_root", str(tmp_path / "N_H"))).samplerate == 8000


def test_librispeech_mix_is_6s_at_8k_with_distinct_speakers(saddel_corpora, tmp_path):
    options = dict(noise_corpus="nonspeech", noise_folder=saddel_corpora["nonspeech"], snr_range=N_SNR, progress=False)
    paths = prepare_saddel_condition(
        "L_N_H", "librispeech", saddel_corpora["librispeech"], tmp_path, n_mixtures=3, **options
    )
    folder = tmp_path / "L_N_H"
    short = {p.stem for p in saddel_corpora["librispeech"].rglob("*.flac") if sf.info(p).duration < 6.0}
    assert short
    for scenario, path in paths.items():
        rows = _rows(path)
        assert len(rows) == 3
        for row in rows:
            utts = row["ID"].split("_")[1:]
            assert len(utts) == (3 if scenario.startswith("3") else 2)
            assert len({u.split("-")[0] for u in utts}) == len(utts)  # distinct speakers
            assert not set(utts) & short
            _, sources, noise = _signals(folder, row, N_SOURCES[scenario])
            info = sf.info(row["mix_wav"].replace("$data_root", str(folder)))
            assert (info.frames, info.samplerate, float(row["duration"])) == (48000, 8000, 6.0)
            levels = 10 * np.log10((sources**2).mean(1) / (sources[0] ** 2).mean())
            assert np.all(np.abs(levels) <= 2.5 + 1e-3)
            if noise is not None:
                snr = 10 * np.log10((sources.sum(0) ** 2).sum() / (noise**2).sum())
                assert abs(snr - float(row["snr_db"])) < 1e-3
                # 1-2 s noise files under 6 s of speech: tiled
                assert _check_noise_segment(folder, row, saddel_corpora["nonspeech"], 8000)
    # 1sp+n's source is the first utterance of the 2-speaker mixture, its first 6 s at 8 kHz
    row = _rows(paths["1sp+n"])[0]
    utt = row["ID"].split("_")[1]
    flac = next(saddel_corpora["librispeech"].rglob(f"{utt}.flac"))
    expected = resample(sf.read(flac, dtype="float64", frames=96000)[0], 16000, 8000)
    s1 = _read(folder, row["s1_wav"])
    np.testing.assert_allclose(s1, expected * (s1 @ expected) / (expected @ expected), atol=1e-5)


# ------------------------------------------------------------------ errors and command line


def _error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_clear_errors(m_c, saddel_corpora, tmp_path):
    out, _ = m_c
    # a folder written with other parameters
    assert "other parameters (noise snr_range" in _error(_wsj0_musan, saddel_corpora, out, snr_range=(-5, 5))
    assert "other parameters (seed" in _error(_wsj0_musan, saddel_corpora, out, seed=7)
    assert "other parameters (1sp+n n_mixtures: 4 there, 2 now)" in _error(
        _wsj0_musan, saddel_corpora, out, n_mixtures=2
    )
    # missing tt split
    wsj = tmp_path / "wsj"
    shutil.copytree(saddel_corpora["wsj0"], wsj)
    shutil.rmtree(wsj / "2speakers/wav8k/min/tt")
    msg = _error(_wsj0_musan, {**saddel_corpora, "wsj0": wsj}, tmp_path / "out")
    assert "WSJ0-2mix test set (tt)" in msg and "tt" in msg.split(":", 1)[1]
    # a folder not written by the simulator
    (tmp_path / "out2" / "M_C").mkdir(parents=True)
    (tmp_path / "out2" / "M_C" / "notes.txt").write_text("mine")
    assert "holds no condition.json" in _error(_wsj0_musan, saddel_corpora, tmp_path / "out2")
    # noisy scenarios need noise and a range; LibriSpeech needs its subset
    assert "need noise_corpus" in _error(
        prepare_saddel_condition, "X", "wsj0", saddel_corpora["wsj0"], tmp_path / "o", snr_range=M_SNR
    )
    assert "invalid snr_range" in _error(_wsj0_musan, saddel_corpora, tmp_path / "o3", snr_range=(20, -5))
    assert "subset 'test-other' not found" in _error(
        prepare_saddel_condition,
        "L",
        "librispeech",
        saddel_corpora["librispeech"],
        tmp_path / "o",
        scenarios=["2sp"],
        librispeech_subset="test-other",
    )
    assert "invalid condition name" in _error(prepare_saddel_condition, "a/b", "wsj0", saddel_corpora["wsj0"], tmp_path)


def test_cli(saddel_corpora, tmp_path, capsys):
    help_text = build_parser().format_help()
    for option in (
        "--condition",
        "--speech",
        "--snr_range",
        "--noise_corpus",
        "--noise_split_seed",
        "--seed",
        "--n_mixtures",
        "--peak_ceiling",
        "--skip_prep",
        "--no_progress",
    ):
        assert option in help_text
    argv = [
        "--condition",
        "N_H",
        "--speech",
        "wsj0",
        "--speech_folder",
        str(saddel_corpora["wsj0"]),
        "--out_folder",
        str(tmp_path),
        "--noise_corpus",
        "nonspeech",
        "--noise_folder",
        str(saddel_corpora["nonspeech"]),
        "--snr_range",
        "10",
        "20",
        "--scenarios",
        "1sp+n",
        "--n_mixtures",
        "2",
        "--no_progress",
    ]
    assert main(argv) == 0
    assert f"1sp+n: {tmp_path / 'N_H' / '1sp_n.csv'}" in capsys.readouterr().out
    assert len(_rows(tmp_path / "N_H" / "1sp_n.csv")) == 2
    assert main([*argv[:-1], "--seed", "5"]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.parametrize("yaml", ["saddel", "bl_ss", "bl_sd", "cascade", "a2pit"])
def test_libri_nh_test_set_needs_both_librispeech_and_nonspeech(yaml, tmp_path):
    """Table 3's Librispeech-mix with 100 Nonspeech is left out (not failed) when only LibriSpeech is given."""
    from hyperpyyaml import load_hyperpyyaml

    path = Path(__file__).resolve().parents[1] / "recipes" / "WSJ0Mix" / "saddel" / "hparams" / f"{yaml}.yaml"
    sets = {}
    for extra in ("", "\nnonspeech_folder: /ns"):
        with open(path, encoding="utf-8") as f:
            base = f"data_folder: /d\nmusan_folder: /m\nlibrispeech_folder: /ls\noutput_folder: {tmp_path}"
            hparams = load_hyperpyyaml(f, base + extra)  # the run folder (its checkpointer's save/) in tmp_path
        sets[extra] = set(hparams["extra_test_sets"])
    assert "librispeech_nonspeech" not in sets[""] and "librispeech_musan" in sets[""]
    assert "librispeech_nonspeech" in sets["\nnonspeech_folder: /ns"]
