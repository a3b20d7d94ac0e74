"""REAL-M: layout of the mini corpus, the DIP split by session name, transcriptions, bad input."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from data_prep import realm
from data_prep.common import PrepError, is_supervised
from data_prep.mini import make_mini_realm
from data_prep.realm import is_pretrain_session, prepare_realm, read_transcriptions, wav_name

REPO = Path(__file__).resolve().parents[1]
N_EARLY, N_NEW = 5, 3  # n_train -> early sessions; n_valid + n_test -> newer sessions


@pytest.fixture(scope="module")
def realm_root(tmp_path_factory):
    return make_mini_realm(tmp_path_factory.mktemp("realm"), seed=0, n_train=N_EARLY, n_valid=1, n_test=2)


@pytest.fixture()
def realm_copy(tmp_path, realm_root):
    copy = tmp_path / "REALM"
    shutil.copytree(realm_root, copy)
    return copy


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_mini_layout(realm_root):
    audio = realm_root / "audio_files_converted_8000Hz"
    sessions = sorted(p.name for p in audio.iterdir())
    early = ["early_collection1", "early_collection2", "early_collection3"]
    assert sessions == [*early, "session01", "session02", "session03"]
    n_wavs = 0
    for session in sessions:
        rows = _rows(realm_root / "transcriptions" / f"{session}.csv")
        header = (realm_root / "transcriptions" / f"{session}.csv").read_text().splitlines()[0]
        wavs = sorted(p.name for p in (audio / session).iterdir())
        if session.startswith("early_collection"):
            assert header == "sentence1,sentence2,WorkerId,filename"
            assert all(r["filename"].endswith(".mp3") for r in rows)
        else:
            assert header == "index,sentence1,sentence2,filename"
            assert all(r["filename"].endswith(".wav") for r in rows)
        assert sorted(wav_name(r["filename"]) for r in rows) == wavs
        for wav in wavs:
            info = sf.info(audio / session / wav)
            assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
            for k in (1, 2):
                assert (realm_root / "separations" / f"{wav[:-4]}source{k}hat.wav").is_file()
        n_wavs += len(wavs)
    assert n_wavs == N_EARLY + N_NEW


def test_split_rule():
    assert is_pretrain_session("early_collection1") and is_pretrain_session("early_collection3")
    assert not is_pretrain_session("session01") and not is_pretrain_session("collection_early")


def test_mp3_names_map_to_wav():
    assert wav_name("f8ac8330a6.mp3") == "f8ac8330a6.wav"
    assert wav_name("recordings/early/AB12.MP3") == "AB12.wav"
    assert wav_name("x.wav") == "x.wav" and wav_name("plain") == "plain.wav"


def test_prepare(tmp_path, realm_root):
    paths = prepare_realm(realm_root, tmp_path)
    assert {k: Path(v).name for k, v in paths.items()} == {"pretrain": "realm_pretrain.csv", "test": "realm_test.csv"}
    header = "ID,duration,mix_wav,mix_wav_format,mix_wav_opts,sentence1,sentence2,session"
    texts = {}
    for csv_path in (realm_root / "transcriptions").iterdir():
        for row in _rows(csv_path):
            texts[(csv_path.stem, wav_name(row["filename"]))] = (row["sentence1"], row["sentence2"])
    counts = {}
    for key, path in paths.items():
        assert Path(path).read_text().splitlines()[0] == header
        assert not is_supervised(path)
        data = _load(path, realm_root)
        counts[key] = len(data)
        for utt_id, row in data.items():
            mix = Path(row["mix_wav"])
            assert mix.stem == utt_id and mix.parent.name == row["session"]
            assert is_pretrain_session(row["session"]) == (key == "pretrain")
            assert (row["sentence1"], row["sentence2"]) == texts[(row["session"], mix.name)]
            assert row["duration"] == pytest.approx(sf.info(mix).frames / 8000)
    assert counts == {"pretrain": N_EARLY, "test": N_NEW}
    sidecar = json.loads((tmp_path / "realm_prep.json").read_text())
    assert sidecar["supervised"] == {"pretrain": False, "test": False}


def test_with_separations(tmp_path, realm_root, realm_copy):
    paths = prepare_realm(realm_root, tmp_path, with_separations=True)
    for path in paths.values():
        for utt_id, row in _load(path, realm_root).items():
            assert Path(row["sep1_wav"]).name == f"{utt_id}source1hat.wav" and Path(row["sep2_wav"]).is_file()
    victim = next((realm_copy / "separations").iterdir())
    victim.unlink()
    msg = _prep_error(prepare_realm, realm_copy, tmp_path / "x", with_separations=True)
    assert msg.startswith("1 separations not found") and victim.name in msg


def test_counts_checked_only_on_the_full_corpus(tmp_path, realm_root, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="data_prep.realm"):
        prepare_realm(realm_root, tmp_path / "a")
    assert "partial corpus" in caplog.text and "(full release: 600 / 836)" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    monkeypatch.setattr(realm, "FULL_TOTAL", N_EARLY + N_NEW)  # pretend this is the whole release
    with caplog.at_level(logging.WARNING, logger="data_prep.realm"):
        prepare_realm(realm_root, tmp_path / "b")
    assert f"{N_EARLY} pretrain / {N_NEW} test mixtures, expected 600 / 836" in caplog.text


def _hand_release(root, sessions, sep_names=None):
    """A hand-made REAL-M v0.1.0 tree: ``{session: n_recordings}``, 8-sample 8 kHz WAVs (not silent), transcriptions."""
    audio = root / "audio_files_converted_8000Hz"
    (root / "transcriptions").mkdir(parents=True)
    for idx, (session, n) in enumerate(sessions.items(), 1):
        (audio / session).mkdir(parents=True)
        early = session.startswith("early_collection")
        lines = ["sentence1,sentence2,WorkerId,filename" if early else "index,sentence1,sentence2,filename"]
        for i in range(n):
            stem = f"{idx}{i:05d}"
            sf.write(audio / session / f"{stem}.wav", [0.1 * (i % 3 + 1)] * 8, 8000, subtype="PCM_16")
            lines.append(f"one,two,A1B2,{stem}.mp3" if early else f"{i},one,two,{stem}.wav")
            for k, pattern in enumerate((sep_names or {}).get(stem, ()), 1):
                (root / "separations").mkdir(exist_ok=True)
                sf.write(root / "separations" / pattern.format(stem=stem, k=k), [0.1] * 8, 8000)
        (root / "transcriptions" / f"{session}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_full_release_counts(tmp_path, caplog):
    # 3 x 200 early_collection recordings + 836 newer ones = 1436, the release
    sessions = {"early_collection1": 200, "early_collection2": 200, "early_collection3": 200}
    sessions.update({"session1": 400, "session2": 436})
    root = _hand_release(tmp_path / "REAL-M-v0.1.0", sessions)
    with caplog.at_level(logging.INFO, logger="data_prep.realm"):
        paths = prepare_realm(root, tmp_path / "prep")
    assert [len(_rows(p)) for p in paths.values()] == [600, 836]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING] and "partial" not in caplog.text
    # the DIP paper's 837 test mixtures (1437 in all) is not the release: reported
    extra = root / "audio_files_converted_8000Hz" / "session2" / "2extra.wav"
    sf.write(extra, [0.1] * 8, 8000, subtype="PCM_16")
    with open(root / "transcriptions" / "session2.csv", "a") as fh:
        fh.write("436,one,two,2extra.wav\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="data_prep.realm"):
        paths = prepare_realm(root, tmp_path / "prep2")
    assert [len(_rows(p)) for p in paths.values()] == [600, 837]
    assert "600 pretrain / 837 test mixtures, expected 600 / 836 for the 1436 of the full release" in caplog.text


def test_separations_under_both_names(tmp_path):
    names = {
        "100000": ("{stem}source{k}hat.wav", "{stem}source{k}hat.wav"),
        "100001": ("{stem}.wavsource{k}hat.wav", "{stem}.wavsource{k}hat.wav"),
        "200000": ("{stem}.wavsource{k}hat.wav", "{stem}source{k}hat.wav"),
    }
    root = _hand_release(tmp_path / "REALM", {"early_collection1": 2, "session2": 1}, names)
    paths = prepare_realm(root, tmp_path / "prep", with_separations=True)
    rows = {r["ID"]: r for p in paths.values() for r in _rows(p)}
    assert rows["100000"]["sep1_wav"] == "$data_root/separations/100000source1hat.wav"
    assert rows["100001"]["sep2_wav"] == "$data_root/separations/100001.wavsource2hat.wav"
    assert (rows["200000"]["sep1_wav"], rows["200000"]["sep2_wav"]) == (
        "$data_root/separations/200000.wavsource1hat.wav",
        "$data_root/separations/200000source2hat.wav",
    )
    (root / "separations" / "100001.wavsource2hat.wav").unlink()
    msg = _prep_error(prepare_realm, root, tmp_path / "prep2", with_separations=True)
    assert msg.startswith(
        f"1 separations not found under {root / 'separations'} (e.g. separations/100001source2hat.wav"
    )


def test_transcription_quirks(tmp_path, realm_copy, caplog):
    csv_path = realm_copy / "transcriptions" / "early_collection1.csv"
    rows = _rows(csv_path)
    assert len(rows) >= 2
    rows[0]["sentence1"] = 'He paid $5, "cash"'
    dropped = wav_name(rows.pop()["filename"])
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with caplog.at_level(logging.WARNING, logger="data_prep.realm"):
        paths = prepare_realm(realm_copy, tmp_path)
    assert "have no row" in caplog.text and dropped in caplog.text
    data = _load(paths["pretrain"], realm_copy)  # a `$` would break SpeechBrain's loader
    assert dropped[:-4] not in data and len(data) == N_EARLY - 1
    assert data[wav_name(rows[0]["filename"])[:-4]]["sentence1"] == 'He paid \uff045, "cash"'
    assert json.loads((tmp_path / "realm_prep.json").read_text())["left_out"] == 1


def test_repeated_names_get_session_prefix(tmp_path, realm_copy, caplog):
    audio = realm_copy / "audio_files_converted_8000Hz"
    src = next((audio / "session01").iterdir())
    shutil.copy(src, audio / "session02" / src.name)
    with open(realm_copy / "transcriptions" / "session02.csv", "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerow([9, "a b", "c d", src.name])
    paths = prepare_realm(realm_copy, tmp_path)
    ids = set(_load(paths["test"], realm_copy))
    assert f"session01_{src.stem}" in ids and f"session02_{src.stem}" in ids


def test_bad_input(tmp_path, realm_copy):
    msg = _prep_error(prepare_realm, tmp_path / "nowhere", tmp_path / "s")
    assert msg == f"REAL-M data_folder not found: {tmp_path / 'nowhere'}"
    (tmp_path / "empty").mkdir()
    msg = _prep_error(prepare_realm, tmp_path / "empty", tmp_path / "s")
    assert msg.startswith(f"REAL-M folder not found: {tmp_path / 'empty' / 'audio_files_converted_8000Hz'}")
    trans = realm_copy / "transcriptions" / "early_collection2.csv"
    trans.write_text("text,file\nhello,x.mp3\n")
    msg = _prep_error(prepare_realm, realm_copy, tmp_path / "s")
    assert msg == f"{trans}: expected the columns sentence1, sentence2, filename; found: text, file"
    trans.unlink()
    msg = _prep_error(prepare_realm, realm_copy, tmp_path / "s")
    assert msg.startswith(f"REAL-M transcriptions not found: {trans}")
    for name in ("early_collection1", "early_collection2", "early_collection3"):
        shutil.rmtree(realm_copy / "audio_files_converted_8000Hz" / name)
    msg = _prep_error(prepare_realm, realm_copy, tmp_path / "s")
    assert "no early_collection* session" in msg and "pretrain manifest would be empty" in msg


def test_wrong_rate_and_unreadable(tmp_path, realm_copy):
    path = next((realm_copy / "audio_files_converted_8000Hz" / "session02").iterdir())
    x, _ = sf.read(path)
    sf.write(path, x, 16000, subtype="PCM_16")
    msg = _prep_error(prepare_realm, realm_copy, tmp_path)
    assert msg == f"wrong sample rate in {path}: found 16000 Hz, expected 8000 Hz"
    path.write_bytes(b"\x00" * 64)
    assert _prep_error(prepare_realm, realm_copy, tmp_path).startswith(f"unreadable WAV file: {path}")


def test_read_transcriptions_both_layouts(tmp_path):
    early = tmp_path / "early_collection1.csv"
    early.write_text('sentence1,sentence2,WorkerId,filename\n"one, two",three,W1,a.mp3\n')
    newer = tmp_path / "s.csv"
    newer.write_text("index,sentence1,sentence2,filename\n0,x,y,b.wav\n")
    assert dict(read_transcriptions(early)) == {"a.wav": ("one, two", "three")}
    assert dict(read_transcriptions(newer)) == {"b.wav": ("x", "y")}


def test_cli(tmp_path, realm_root):
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args):
        cmd = [sys.executable, "-m", "data_prep.realm", *map(str, args)]
        return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    proc = cli("--data_folder", tmp_path / "missing", "--save_folder", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: REAL-M data_folder not found: {tmp_path / 'missing'}"
    proc = cli("--data_folder", realm_root, "--save_folder", tmp_path, "--with_separations")
    assert proc.returncode == 0, proc.stderr
    assert f"pretrain: {tmp_path / 'realm_pretrain.csv'}" in proc.stdout
