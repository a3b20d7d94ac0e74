"""The LibriSpeech reader: subsets found where users point, utterances with durations and transcripts."""

import shutil

import pytest
import soundfile as sf

from data_prep.common import PrepError
from data_prep.librispeech import find_librispeech_subset, list_librispeech
from data_prep.mini import main, make_mini_librispeech


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory):
    return make_mini_librispeech(tmp_path_factory.mktemp("libri"), seed=0, n_train=2, n_valid=2, n_test=10)


def test_utterances_of_a_subset(libri_root):
    utts = list_librispeech(libri_root, "test-clean")
    assert len(utts) == 10 and [u.utt_id for u in utts] == sorted(u.utt_id for u in utts)
    for u in utts:
        assert u.path == libri_root / "test-clean" / u.speaker / u.chapter / f"{u.utt_id}.flac"
        assert u.utt_id.startswith(f"{u.speaker}-{u.chapter}-")
        assert u.transcript and u.transcript == u.transcript.upper()
        assert 2.0 <= u.duration <= 8.0
    long = list_librispeech(libri_root, "test-clean", min_duration=6.0)
    assert 0 < len(long) < len(utts) and all(u.duration >= 6.0 for u in long)
    assert {u.speaker for u in utts}.isdisjoint({u.speaker for u in list_librispeech(libri_root, "dev-clean")})


def test_where_users_point(libri_root):
    subset = libri_root / "test-clean"
    for folder in (libri_root, libri_root.parent, subset):
        assert find_librispeech_subset(folder, "test-clean") == subset


def test_errors_and_partial_copies(libri_root, tmp_path):
    with pytest.raises(PrepError, match=r"subset 'test-other' not found .*subsets there: dev-clean, test-clean"):
        list_librispeech(libri_root, "test-other")
    with pytest.raises(PrepError, match="data_folder not found"):
        list_librispeech(tmp_path / "nowhere")
    copy = tmp_path / "LibriSpeech"
    shutil.copytree(libri_root, copy)
    for trans in (copy / "test-clean").rglob("*.trans.txt"):
        trans.unlink()  # a partial copy: no transcripts
    assert all(u.transcript is None for u in list_librispeech(copy))
    flac = next((copy / "test-clean").rglob("*.flac"))
    flac.rename(flac.with_name("1-2-0003.flac"))
    with pytest.raises(PrepError, match="unexpected LibriSpeech file name"):
        list_librispeech(copy)
    empty = tmp_path / "empty" / "test-clean" / "1" / "2"
    empty.mkdir(parents=True)
    with pytest.raises(PrepError, match=r"no \.flac files"):
        list_librispeech(tmp_path / "empty")


def test_mini_librispeech_is_deterministic_and_on_the_cli(libri_root, tmp_path, capsys):
    assert main(["--dataset", "librispeech", "--out", str(tmp_path), "--n_train", "2", "--n_valid", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        f"librispeech: mini corpus at {(tmp_path / 'LibriSpeech').absolute()} (2/2/8 train/dev/test utterances)" in out
    )
    again = make_mini_librispeech(tmp_path / "again", seed=0, n_train=2, n_valid=2, n_test=10)
    files = sorted(p.relative_to(libri_root) for p in libri_root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((libri_root / f).read_bytes() == (again / f).read_bytes() for f in files)
    info = sf.info(next(libri_root.rglob("*.flac")))
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)


def test_utterance_pool_manifests(libri_root, tmp_path):
    """Mixture-Remix's LibriSpeech pool: one row per whole utterance (speaker, frames, the file's rate), paths under
    $data_root (through '..' when LibriSpeech is elsewhere), a missing subset named, and no pool for remix_pool
    librimix."""
    import csv

    from data_prep.librispeech import POOL_HEADER, prepare_librispeech_pool, prepare_remix_sources

    data_folder = tmp_path / "LibriMix"
    data_folder.mkdir()
    out = prepare_librispeech_pool(tmp_path / "prep", data_folder, [libri_root.parent], ["test-clean"])
    with open(out["test-clean"], newline="") as f:
        rows = list(csv.DictReader(f))
    utts = list_librispeech(libri_root, "test-clean")
    assert list(rows[0]) == POOL_HEADER and [r["ID"] for r in rows] == [u.utt_id for u in utts]
    for row, utt in zip(rows, utts):
        assert row["spk_id"] == utt.speaker and row["file_rate"] == "16000" and row["utt_wav_format"] == "flac"
        assert int(row["frames"]) == sf.info(utt.path).frames
        assert (data_folder / row["utt_wav"].replace("$data_root/", "")).resolve() == utt.path.resolve()
    with pytest.raises(PrepError, match=r"'train-clean-360' .*remix_pool: librimix"):
        prepare_librispeech_pool(tmp_path / "prep", data_folder, [libri_root], ["train-clean-360"])
    calls = []
    assert prepare_remix_sources(lambda: calls.append(1) or {"train": "x"}, tmp_path, data_folder,
                                 remix_pool="librimix") == {"train": "x"}  # fmt: skip
    assert calls == [1]
    with pytest.raises(PrepError, match="remix_pool"):
        prepare_remix_sources(dict, tmp_path, data_folder, remix_pool="wsj0")
    paths = prepare_remix_sources(
        dict, tmp_path / "p2", data_folder, librispeech_folder=libri_root, subsets=["dev-clean"]
    )
    assert list(paths) == ["dev-clean"]
