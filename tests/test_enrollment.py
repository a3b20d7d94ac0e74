"""Enrollment utterances: the shared helpers and the LibriMix enrollment column."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import PrepError
from data_prep.enrollment import (
    Candidate,
    choose_enrollment,
    materialise_enrollment,
    read_aux_list,
    resolve_listed_path,
    search_roots,
)
from data_prep.librimix import prepare_librimix
from data_prep.mini import make_mini, make_mini_librimix

REPO = Path(__file__).resolve().parents[1]
ENROLL_HEADER = "enroll_wav,enroll_wav_format,enroll_wav_opts"


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    """Mini LibriMix with LibriSpeech enrollment utterances and aux lists."""
    return make_mini_librimix(
        tmp_path_factory.mktemp("libri"),
        n_train=12,
        n_valid=3,
        n_test=3,
        sample_rates=(8000,),
        modes=("min",),
        n_spks=(2,),
        enrollment=True,
    )


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------- helpers


def test_choose_enrollment_rules():
    cands = {
        "1": [Candidate(f"1-5-{i:04d}", f"s/{i}.wav") for i in range(6)],
        "2": [Candidate("2-5-0000", "t.wav")],
    }
    targets = [(f"1-5-{i:04d}_2-5-0000", "1", {f"1-5-{i:04d}", "2-5-0000"}) for i in range(6)]
    chosen, missing = choose_enrollment(targets, cands, seed=0)
    assert not missing
    for mix_id, _, excluded in targets:
        assert chosen[mix_id].utt_id not in excluded and chosen[mix_id].utt_id.startswith("1-")
    assert chosen == choose_enrollment(targets, cands, seed=0)[0]  # deterministic
    # the choice of a mixture does not depend on the others
    assert chosen[targets[3][0]] == choose_enrollment(targets[3:4], cands, seed=0)[0][targets[3][0]]
    others = [choose_enrollment(targets, cands, seed=s)[0] for s in range(1, 6)]
    assert any(o != chosen for o in others)
    _, missing = choose_enrollment([("2-5-0000_1-5-0001", "2", {"2-5-0000", "1-5-0001"})], cands)
    assert missing == ["2-5-0000_1-5-0001"]


def test_resolve_listed_path(tmp_path):
    flac = tmp_path / "LibriSpeech" / "test-clean" / "1089" / "134686" / "1089-134686-0009.flac"
    flac.parent.mkdir(parents=True)
    sf.write(flac, np.zeros(160), 16000, format="FLAC")
    roots = search_roots(tmp_path)
    assert resolve_listed_path("../test-clean/1089/134686/1089-134686-0009.flac", roots) == flac
    wav = flac.with_suffix(".wav")  # the authors converted LibriSpeech to 8 kHz wav
    flac.rename(wav)
    assert resolve_listed_path("../test-clean/1089/134686/1089-134686-0009.flac", roots) == wav
    assert resolve_listed_path("../test-clean/1089/999/1089-134686-0009.flac", roots) is None
    assert resolve_listed_path("1089-134686-0009.flac", roots) is None  # a bare name is not enough


def test_materialise_enrollment(tmp_path):
    src = tmp_path / "a.flac"
    sf.write(src, 0.1 * np.sin(np.arange(16001) / 5), 16000, format="FLAC")
    dst = tmp_path / "enroll" / "a.wav"
    assert materialise_enrollment(src, dst, 8000) == 8001
    info = sf.info(dst)
    assert (info.samplerate, info.frames, info.subtype) == (8000, 8001, "PCM_16")
    stamp = dst.stat().st_mtime_ns
    materialise_enrollment(src, dst, 8000)
    assert dst.stat().st_mtime_ns == stamp  # reused
    dst.write_bytes(dst.read_bytes()[:300])
    materialise_enrollment(src, dst, 8000)
    assert sf.info(dst).frames == 8001  # a truncated copy is redone


# ------------------------------------------------------------ LibriMix


def test_librimix_enrollment_from_aux_lists(tmp_path, libri):
    paths = prepare_librimix(libri, tmp_path, enrollment=True, aux_list=libri / "lists" / "libri2mix")
    aux = {}
    for lst in (libri / "lists" / "libri2mix").glob("*_aux.lst"):
        aux.update(read_aux_list(lst))
    for path in paths.values():
        assert Path(path).read_text().splitlines()[0].endswith(ENROLL_HEADER)
        data = _load(path, libri)
        assert len(data) and set(data) <= set(aux)
        for mix_id, row in data.items():
            enroll = Path(row["enroll_wav"])
            s1 = mix_id.split("_")[0]
            assert enroll.stem == Path(aux[mix_id].listed).stem  # read from the aux list
            assert enroll.stem.split("-")[0] == s1.split("-")[0] and enroll.stem != s1
            assert enroll.parent == libri / "Libri2Mix" / "wav8k" / "enroll"
            assert sf.info(enroll).samplerate == 8000 and row["enroll_wav_format"] == "wav"
    sidecar = json.loads((tmp_path / "libri2mix_prep.json").read_text())
    assert sidecar["enrollment"]["test"] == {"source": "aux_list", "dropped": 0}
    assert "$data_root/Libri2Mix/wav8k/enroll/" in Path(paths["test"]).read_text()


def test_librimix_enrollment_drawn_from_librispeech(tmp_path, libri):
    """Without a list, the paper's way: a full LibriSpeech utterance of the s1 speaker, never the mixed one, drawn
    by seed from the split's subset, written to an aux list that gives back the same enrollments."""

    def enroll(save, **options):
        paths = prepare_librimix(libri, tmp_path / save, enrollment=True, **options)
        return {i: r["enroll_wav"] for i, r in _load(paths["test"], libri).items()}

    a = enroll("a", enroll_seed=0)
    assert a and a == enroll("b", enroll_seed=0)
    speech = {p.stem: p for p in (libri / "LibriSpeech").rglob("*.flac")}
    for mix_id, path in a.items():
        utt = Path(path).stem
        assert utt in speech and "test-clean" in str(speech[utt])  # a LibriSpeech utterance of the test subset
        assert utt.split("-")[0] == mix_id.split("-")[0] and utt not in mix_id.split("_")
        full = sf.info(str(speech[utt])).duration
        assert sf.info(path).duration == pytest.approx(full, abs=1e-3) and sf.info(path).samplerate == 8000
    record = json.loads((tmp_path / "a" / "libri2mix_prep.json").read_text())["enrollment"]["test"]
    assert record["source"] == "librispeech" and record["dropped"] == 0
    listed = Path(record["list"])
    assert listed == tmp_path / "a" / "libri2mix_test_aux.lst" and len(listed.read_text().splitlines()) == len(a)
    assert enroll("c", aux_list=listed) == a  # the recorded list gives the same enrollments back


def test_librimix_enrollment_drawn_from_corpus(tmp_path, libri):
    """Without LibriSpeech: another utterance of the s1 speaker from the split's own sources (with a warning)."""
    empty = tmp_path / "no_librispeech"
    empty.mkdir()

    def enroll(seed, save):
        paths = prepare_librimix(libri, tmp_path / save, enrollment=True, enroll_seed=seed, librispeech_folder=empty)
        return {i: r["enroll_wav"] for i, r in _load(paths["train"], libri).items()}

    a = enroll(0, "a")
    assert a and a == enroll(0, "b")
    assert a != enroll(3, "c") or len(a) < 3
    for mix_id, path in a.items():
        other_mix = Path(path).stem.split("_")
        k = int(Path(path).parent.name[1:])
        utt = other_mix[k - 1]
        assert utt.split("-")[0] == mix_id.split("-")[0]  # same speaker as s1
        assert utt not in mix_id.split("_")  # never an utterance of this mixture
    sidecar = json.loads((tmp_path / "a" / "libri2mix_prep.json").read_text())
    assert sidecar["enrollment"]["train"]["source"] == "corpus"
    assert sidecar["rows"]["train"] + sidecar["enrollment"]["train"]["dropped"] == 12


def test_librimix_without_enrollment_is_unchanged(tmp_path, libri):
    paths = prepare_librimix(libri, tmp_path)
    assert "enroll" not in Path(paths["test"]).read_text().splitlines()[0]
    options = json.loads((tmp_path / "libri2mix_prep.json").read_text())["options"]
    assert "enrollment" not in options


def test_librimix_aux_list_errors(tmp_path, libri):
    lists = tmp_path / "lists"
    lists.mkdir()
    lines = (libri / "lists" / "libri2mix" / "tt_aux.lst").read_text().splitlines()
    mix, listed = lines[0].split("\t")
    s1 = mix.split("_")[0]
    lst = lists / "tt_aux.lst"

    def run(*body):
        lst.write_text("\n".join(body) + "\n")
        return _prep_error(prepare_librimix, libri, tmp_path / "s", enrollment=True, aux_list=lst)

    head = listed.rsplit("/", 1)[0]
    speech = libri / "LibriSpeech" / head.split("/", 1)[1]
    mixed = speech / f"{s1}.flac"  # the mini LibriSpeech holds only enrollment utterances
    mixed.write_bytes((speech / Path(listed).name).read_bytes())
    try:
        assert run(f"{mix}\t{head}/{s1}.flac", *lines[1:]) == f"{lst}:1: the enrollment is the mixed utterance {s1}"
    finally:
        mixed.unlink()
    other = next(line.split("\t")[1] for line in lines if line.split("-")[0] != s1.split("-")[0])
    assert run(f"{mix}\t{other}", *lines[1:]).startswith(f"{lst}:1: enrollment speaker ")
    msg = run(f"{mix}\t../test-clean/1/2/1-2-0003.flac", *lines[1:])
    assert msg.startswith(f"{lst}:1: enrollment utterance not found: ../test-clean/1/2/1-2-0003.flac")
    assert run(*lines[1:]).startswith("1 mixtures of test are not in the aux list(s)")
    assert run(f"{mix}\t{listed}\textra").startswith(f"{lst}:1: expected '<mixture><TAB><enrollment path>'")
    msg = _prep_error(prepare_librimix, libri, tmp_path / "s", enrollment=True, aux_list=tmp_path / "none.lst")
    assert msg == f"aux list not found: {tmp_path / 'none.lst'}"
    msg = _prep_error(prepare_librimix, libri, tmp_path / "s", enrollment=True, librispeech_folder=tmp_path / "typo")
    assert msg == f"LibriSpeech folder not found: {tmp_path / 'typo'}"


def test_mini_cli_enrollment_and_prep_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args):
        cmd = [sys.executable, "-m", *map(str, args)]
        return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    sizes = ["--n_train", "2", "--n_valid", "1", "--n_test", "1", "--sample_rates", "8000", "--modes", "min"]
    proc = cli("data_prep.mini", "--dataset", "librimix", "--out", tmp_path, *sizes, "--enrollment")
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "LibriMix"
    assert (root / "lists" / "libri3mix" / "cv_aux.lst").is_file() and (root / "LibriSpeech" / "dev-clean").is_dir()
    base = ["data_prep.librimix", "--data_folder", root, "--save_folder", tmp_path / "prep", "--enrollment"]
    proc = cli(*base, "--aux_list", tmp_path / "missing")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: aux list not found: {tmp_path / 'missing'}"
    proc = cli(*base, "--aux_list", root / "lists" / "libri2mix")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "prep" / "libri2mix_dev.csv").read_text().splitlines()[0].endswith(ENROLL_HEADER)


def test_make_mini_passes_enrollment_to_librimix_only(tmp_path):
    roots = make_mini(
        "all", tmp_path, n_train=1, n_valid=1, n_test=1, sample_rates=(8000,), modes=("min",), enrollment=True
    )
    assert set(roots) == {"wham", "librimix", "vox2mix", "lrs2mix", "aishell2mix", "realm"}
    assert (roots["librimix"] / "lists" / "libri2mix" / "tt_aux.lst").is_file()
