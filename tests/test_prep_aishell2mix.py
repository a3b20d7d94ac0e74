"""Aishell2Mix: the published simulation rules on the mini corpus, dumps, supervision, enrollment, bad input."""

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

from data_prep import aishell2mix
from data_prep.aishell2mix import mixture_name, prepare_aishell2mix, read_cfg, snr_db
from data_prep.common import PrepError, is_supervised, manifest_header
from data_prep.enrollment import read_aux_list
from data_prep.mini import make_mini_aishell2mix, make_mini_librimix
from modules.audio import resample

REPO = Path(__file__).resolve().parents[1]
SIZES = {"tr": 4, "cv": 2, "tt": 3}
KEYS = {"tr": "train", "cv": "valid", "tt": "test"}
LSB = 1 / 32768
AISHELL_PATH = re.compile(r"^data_aishell/wav/(train|dev|test)/(S\d{4})/BAC009\2W\d{4}\.wav$")
MIX_NAME = re.compile(r"^(BAC009S\d{4}W\d{4})_(BAC009S\d{4}W\d{4})_(\d+(?:\.\d+)?(?:e-\d+)?)\.wav$")


@pytest.fixture(scope="module")
def a2m(tmp_path_factory):
    """The mini simulator inputs, and one simulation of them in a separate data folder."""
    root = make_mini_aishell2mix(tmp_path_factory.mktemp("a2m"), seed=0, n_train=4, n_valid=2, n_test=3)
    dump = tmp_path_factory.mktemp("dump") / "Aishell2Mix"
    paths = prepare_aishell2mix(dump, tmp_path_factory.mktemp("prep"), cfg_folder=root / "lst", aishell_folder=root)
    return root, dump, paths


def _read(path):
    return sf.read(path, dtype="float64")[0]


def _load(csv_path, data_folder):
    from speechbrain.dataio.dataio import load_data_csv

    return load_data_csv(csv_path, replacements={"data_root": str(data_folder)})


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ mini corpus


def test_mini_layout(a2m):
    root, _, _ = a2m
    wavs = sorted(p.relative_to(root).as_posix() for p in (root / "data_aishell").rglob("*.wav"))
    assert {AISHELL_PATH.match(w).group(1) for w in wavs} == {"train", "dev", "test"}
    for w in wavs:
        m = AISHELL_PATH.match(w)
        assert m, w
        ranges = {"train": (2, 723), "dev": (724, 763), "test": (764, 916)}[m.group(1)]
        assert ranges[0] <= int(m.group(2)[1:]) <= ranges[1]
    info = sf.info(root / wavs[0])
    assert (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
    for split, aset in (("tr", "train"), ("cv", "dev"), ("tt", "test")):
        cfgs = read_cfg(root / "lst" / f"{split}_cfg.lst")
        assert len(cfgs) == SIZES[split]
        for cfg in cfgs:
            for listed in (cfg.path1, cfg.path2):
                assert listed.startswith(f"/data_aishell/wav/{aset}/")
            assert cfg.end1 - cfg.start1 == cfg.end2 - cfg.start2 == 32000 and 0 <= cfg.snr <= 5
            n8k = -(-sf.info(root / cfg.path1.lstrip("/")).frames // 2)
            assert cfg.start1 <= n8k % 32000  # the published rule for the start
        aux = read_aux_list(root / "lst" / f"{split}_aux.lst")
        assert sorted(aux) == sorted(c.name[:-4] for c in cfgs)
        for mix, entry in aux.items():
            utt = entry.listed.rsplit("/", 1)[1][:-4]
            assert entry.listed.startswith(f"../{aset}/") and utt[6:11] == mix[6:11] and utt != mix.split("_")[0]


def test_mixture_name_as_published():
    assert mixture_name("/x/BAC009S0002W0122.wav", "/y/BAC009S0355W0276.wav", 0.63028) == (
        "BAC009S0002W0122_BAC009S0355W0276_0.6303.wav"
    )
    assert mixture_name("a.wav", "b.wav", 3.95399999) == "a_b_3.954.wav"
    assert mixture_name("a.wav", "b.wav", 2.0) == "a_b_2.0.wav"


# ------------------------------------------------------------------ simulation


def test_simulation_follows_published_rules(a2m):
    root, dump, _ = a2m
    n = 0
    for split in SIZES:
        for cfg in read_cfg(root / "lst" / f"{split}_cfg.lst"):
            sig = {}
            for folder in ("mix", "spk1", "spk2"):
                path = dump / split / folder / cfg.name
                info = sf.info(path)
                assert (info.samplerate, info.subtype, info.channels, info.frames) == (8000, "PCM_16", 1, 32000)
                sig[folder] = _read(path)
            assert snr_db(sig["spk1"], sig["spk2"]) == pytest.approx(cfg.snr, abs=0.05)  # same power definition
            peak = max(np.abs(x).max() for x in sig.values())
            assert peak == pytest.approx(0.9, abs=2 * LSB)
            np.testing.assert_allclose(sig["mix"], sig["spk1"] + sig["spk2"], atol=2 * LSB)
            # spk1 is the [start, end) segment of the utterance resampled to 8 kHz, scaled
            x, sr = sf.read(root / cfg.path1.lstrip("/"))
            ref = resample(x, sr, 8000)[cfg.start1 : cfg.end1]
            gain = np.dot(sig["spk1"], ref) / np.dot(ref, ref)
            np.testing.assert_allclose(sig["spk1"], gain * ref, atol=2 * LSB)
            n += 1
    assert n == sum(SIZES.values())


def test_manifests_and_supervision(a2m):
    _, dump, paths = a2m
    assert {k: Path(v).name for k, v in paths.items()} == {
        "train": "aishell2mix_tr.csv",
        "valid": "aishell2mix_cv.csv",
        "test": "aishell2mix_tt.csv",
    }
    for split, key in KEYS.items():
        header = Path(paths[key]).read_text().splitlines()[0]
        supervised = split == "tt"
        assert header == ",".join(manifest_header(["mix", "s1", "s2"] if supervised else ["mix"]))
        assert is_supervised(paths[key]) is supervised
        data = _load(paths[key], dump)
        assert len(data) == SIZES[split]
        for utt_id, row in data.items():
            assert MIX_NAME.match(f"{utt_id}.wav") and row["duration"] == 4.0
            assert Path(row["mix_wav"]).is_file()
            if supervised:
                assert Path(row["s1_wav"]).parent.name == "spk1" and Path(row["s2_wav"]).parent.name == "spk2"
    sidecar = json.loads((Path(paths["test"]).parent / "aishell2mix_prep.json").read_text())
    assert sidecar["supervised"] == {"train": False, "valid": False, "test": True}


def test_reads_an_existing_dump(tmp_path, a2m):
    _, dump, paths = a2m
    again = prepare_aishell2mix(dump, tmp_path, unsupervised=())
    for key, path in again.items():
        assert is_supervised(path)
        assert sorted(_load(path, dump)) == sorted(_load(paths[key], dump))


def test_interrupted_simulation_resumes(tmp_path, a2m, monkeypatch):
    root, _, _ = a2m
    dump = tmp_path / "A2M"
    original = aishell2mix.write_wav_atomic
    calls = []

    def crashing(path, *args, **kwargs):
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        calls.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(aishell2mix, "write_wav_atomic", crashing)
    with pytest.raises(RuntimeError):
        prepare_aishell2mix(dump, tmp_path / "prep", cfg_folder=root / "lst", aishell_folder=root, splits=("tt",))
    first = calls[2]  # the mixture of the first complete job
    stamp = first.stat().st_mtime_ns
    calls.clear()

    def counting(path, *args, **kwargs):
        calls.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(aishell2mix, "write_wav_atomic", counting)
    prepare_aishell2mix(dump, tmp_path / "prep", cfg_folder=root / "lst", aishell_folder=root, splits=("tt",))
    assert first.stat().st_mtime_ns == stamp and first not in calls
    assert len(calls) == 3 * (SIZES["tt"] - 1)


# ------------------------------------------------------------------ enrollment


def test_enrollment_from_aux_lists(tmp_path, a2m):
    root, dump, _ = a2m
    paths = prepare_aishell2mix(
        dump, tmp_path, cfg_folder=root / "lst", aishell_folder=root, aux_folder=root / "lst", enrollment=True
    )
    for split, key in KEYS.items():
        aux = read_aux_list(root / "lst" / f"{split}_aux.lst")
        header = Path(paths[key]).read_text().splitlines()[0]
        assert header.endswith("enroll_wav,enroll_wav_format,enroll_wav_opts")
        for utt_id, row in _load(paths[key], dump).items():
            enroll = Path(row["enroll_wav"])
            assert enroll.stem == aux[utt_id].listed.rsplit("/", 1)[1][:-4]  # the listed utterance
            spk1 = utt_id.split("_")[0]
            assert enroll.stem[6:11] == spk1[6:11] and enroll.stem != spk1  # same speaker, not the mixed one
            assert sf.info(enroll).samplerate == 8000
    sidecar = json.loads((tmp_path / "aishell2mix_prep.json").read_text())
    assert sidecar["enrollment"]["test"] == {"source": "aux_list", "dropped": 0}


def test_enrollment_drawn_by_seed(tmp_path, a2m):
    root, dump, _ = a2m

    def enrollments(seed, save, **kwargs):
        paths = prepare_aishell2mix(dump, tmp_path / save, enrollment=True, enroll_seed=seed, **kwargs)
        return {i: Path(r["enroll_wav"]).stem for p in paths.values() for i, r in _load(p, dump).items()}

    a = enrollments(0, "a", aishell_folder=root)
    assert a == enrollments(0, "b", aishell_folder=root)
    assert a != enrollments(7, "c", aishell_folder=root)
    for utt_id, enroll in a.items():
        mixed = utt_id.split("_")[:2]
        assert enroll[6:11] == mixed[0][6:11] and enroll not in mixed
    # without Aishell-1: other dumped segments of the speaker, or the mixture is left out
    corpus = enrollments(0, "d", splits=("tr",))  # the dump folder has no Aishell-1 tree
    sidecar = json.loads((tmp_path / "d" / "aishell2mix_prep.json").read_text())
    assert all(v["source"] == "corpus" for v in sidecar["enrollment"].values())
    assert corpus
    for utt_id, enroll in corpus.items():  # a dumped segment (named after its mixture) of the speaker
        assert enroll != utt_id and utt_id[6:11] in (enroll.split("_")[0][6:11], enroll.split("_")[1][6:11])


# ----------------------------------------------------------------- domain gap


def _features(x, sr=8000, frame=320, hop=80):
    """Pitch movement (semitone spread of an autocorrelation f0 track) and spectral tilt."""
    x = x / np.std(x)
    f0 = []
    for start in range(0, len(x) - frame, hop):
        seg = x[start : start + frame] - x[start : start + frame].mean()
        ac = np.correlate(seg, seg, "full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        lag = sr // 400 + int(np.argmax(ac[sr // 400 : sr // 70]))
        if ac[lag] / ac[0] > 0.6:
            f0.append(12 * np.log2(sr / lag / 100))
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    half = len(spec) // 2
    return [np.std(f0), np.log10(spec[half:].mean() / spec[:half].mean())]


def test_domain_differs_from_mini_librimix(tmp_path, a2m):
    """Tonal pitch, speakers and channel set the mini Aishell2Mix apart from the mini LibriMix."""
    _, dump, _ = a2m
    libri = make_mini_librimix(
        tmp_path, n_train=8, n_valid=1, n_test=1, sample_rates=(8000,), modes=("min",), n_spks=(2,)
    )
    ours = sorted((dump / "tr" / "spk1").glob("*.wav")) + sorted((dump / "tt" / "spk1").glob("*.wav"))
    theirs = sorted((libri / "Libri2Mix" / "wav8k" / "min" / "train-100" / "s1").glob("*.wav"))
    feats = np.array([_features(_read(p)) for p in ours + theirs])
    labels = np.array([1] * len(ours) + [0] * len(theirs))
    # tonal speakers move their pitch far more (lexical tones, wider ranges)
    assert np.median(feats[labels == 1, 0]) > 1.5 * np.median(feats[labels == 0, 0])
    correct = 0
    for i in range(len(labels)):  # leave-one-out nearest centroid on standardised features
        keep = np.arange(len(labels)) != i
        z = (feats - feats[keep].mean(axis=0)) / feats[keep].std(axis=0)
        centroids = [z[keep & (labels == c)].mean(axis=0) for c in (0, 1)]
        correct += int(np.argmin([np.linalg.norm(z[i] - c) for c in centroids]) == labels[i])
    assert correct / len(labels) >= 0.9


# ------------------------------------------------------------------ bad input


@pytest.fixture()
def inputs_copy(tmp_path, a2m):
    root, _, _ = a2m
    copy = tmp_path / "inputs"
    shutil.copytree(root, copy)
    return copy


def test_missing_folders_and_lists(tmp_path, a2m):
    root, dump, _ = a2m
    msg = _prep_error(prepare_aishell2mix, tmp_path / "nowhere", tmp_path / "s")
    assert msg == f"Aishell2Mix data_folder not found: {tmp_path / 'nowhere'}"
    partial = tmp_path / "partial"
    shutil.copytree(dump / "tt", partial / "tt")
    msg = _prep_error(prepare_aishell2mix, partial, tmp_path / "s")
    assert f"folder not found: {partial / 'tr' / 'mix'}" in msg
    shutil.rmtree(partial / "tt" / "spk2")
    msg = _prep_error(prepare_aishell2mix, partial, tmp_path / "s", splits=("tt",))
    assert f"folder not found: {partial / 'tt' / 'spk2'}" in msg
    msg = _prep_error(prepare_aishell2mix, tmp_path / "d", tmp_path / "s", cfg_folder=tmp_path / "nolists")
    assert msg.startswith(f"Aishell2Mix config list not found: {tmp_path / 'nolists' / 'tr_cfg.lst'}")
    msg = _prep_error(prepare_aishell2mix, tmp_path / "d", tmp_path / "s", cfg_folder=root / "lst")
    assert msg.startswith(f"Aishell-1 folder not found: {tmp_path / 'd'}")
    msg = _prep_error(prepare_aishell2mix, dump, tmp_path / "s", aishell_folder=tmp_path / "typo", enrollment=True)
    assert msg == f"Aishell-1 folder not found: {tmp_path / 'typo'}"


def test_missing_source_names_cfg_line(tmp_path, inputs_copy):
    cfg = read_cfg(inputs_copy / "lst" / "cv_cfg.lst")[1]
    (inputs_copy / cfg.path2.lstrip("/")).unlink()
    msg = _prep_error(prepare_aishell2mix, inputs_copy, tmp_path, cfg_folder=inputs_copy / "lst")
    assert msg.startswith(f"{inputs_copy / 'lst' / 'cv_cfg.lst'}:2: source not found: {cfg.path2}")
    assert not (inputs_copy / "tr").exists()  # every list is checked before anything is simulated


def test_wrong_rate_and_unreadable_source(tmp_path, inputs_copy):
    cfg = read_cfg(inputs_copy / "lst" / "tt_cfg.lst")[0]
    src = inputs_copy / cfg.path1.lstrip("/")
    x, _ = sf.read(src)
    sf.write(src, x[::2], 8000, subtype="PCM_16")
    msg = _prep_error(prepare_aishell2mix, inputs_copy, tmp_path, cfg_folder=inputs_copy / "lst")
    assert msg.startswith(f"{inputs_copy / 'lst' / 'tt_cfg.lst'}:1: wrong sample rate in {src}: found 8000 Hz")
    src.write_bytes(b"RIFF0000WAVEfmt garbage")
    msg = _prep_error(prepare_aishell2mix, inputs_copy, tmp_path, cfg_folder=inputs_copy / "lst")
    assert f"unreadable WAV file: {src}" in msg


def test_wrong_rate_in_dump(tmp_path, a2m):
    _, dump, _ = a2m
    copy = tmp_path / "dump"
    shutil.copytree(dump / "tt", copy / "tt")
    path = min((copy / "tt" / "spk1").iterdir())
    sf.write(path, _read(path), 16000, subtype="PCM_16")
    msg = _prep_error(prepare_aishell2mix, copy, tmp_path / "s", splits=("tt",))
    assert str(path) in msg and "found 16000 Hz, expected 8000 Hz" in msg


@pytest.mark.parametrize(
    "line, match",
    [
        ("/a/x.wav 0 32000 /b/y.wav 0 32000", "expected 7 fields"),
        ("/a/x.wav 0 32000 /b/y.wav 10 5 1.0", "malformed start/end '10', '5'"),
        ("/a/x.wav zero 32000 /b/y.wav 0 32000 1.0", "malformed start/end 'zero'"),
        ("/a/x.wav 0 32000 /b/y.wav 0 32000 nan", "malformed SNR 'nan'"),
    ],
)
def test_malformed_cfg_line(tmp_path, inputs_copy, line, match):
    lst = inputs_copy / "lst" / "tr_cfg.lst"
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    msg = _prep_error(prepare_aishell2mix, inputs_copy, tmp_path, cfg_folder=inputs_copy / "lst")
    assert msg.startswith(f"{lst}:3: ") and match in msg


def test_bad_aux_lists(tmp_path, a2m, inputs_copy):
    _, dump, _ = a2m
    lst = inputs_copy / "lst" / "tt_aux.lst"
    lines = lst.read_text().splitlines()
    name, listed = lines[1].split("\t")
    spk1 = name.split("_")[0]

    def run():
        return _prep_error(
            prepare_aishell2mix,
            dump,
            tmp_path,
            aishell_folder=inputs_copy,
            aux_folder=inputs_copy / "lst",
            enrollment=True,
            splits=("tt",),
        )

    lst.write_text("\n".join([lines[0], f"{name}\t{listed.rsplit('/', 1)[0]}/{spk1}.wav", *lines[2:]]) + "\n")
    assert run() == f"{lst}:2: the enrollment is the mixed utterance {spk1}"
    other = lines[0].split("\t")[1] if lines[0].split("_")[0][6:11] != spk1[6:11] else None
    if other is not None:
        lst.write_text("\n".join([lines[0], f"{name}\t{other}", *lines[2:]]) + "\n")
        assert run().startswith(f"{lst}:2: enrollment speaker ")
    lst.write_text("\n".join([lines[0], f"{name}\t../test/S0999/BAC009S0999W0001.wav", *lines[2:]]) + "\n")
    assert run() == f"{lst}:2: enrollment utterance not found: ../test/S0999/BAC009S0999W0001.wav"
    lst.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    assert run().startswith(f"1 mixtures of tt have no line in {lst}")
    lst.write_text("\n".join([lines[0], f"{name} {listed} extra"]) + "\n")
    assert run().startswith(f"{lst}:2: expected '<mixture><TAB><enrollment path>'")
    lst.unlink()
    assert run() == f"aux list not found: {lst}"


# ------------------------------------------------------------------------ CLI


def test_cli(tmp_path, a2m):
    _, dump, _ = a2m
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "data_prep.aishell2mix", *map(str, args)],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    proc = cli("--data_folder", tmp_path / "x", "--save_folder", tmp_path, "--cfg_folder", tmp_path / "none")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Aishell2Mix config list not found")
    proc = cli("--data_folder", dump, "--save_folder", tmp_path, "--splits", "tt", "--unsupervised")
    assert proc.returncode == 0, proc.stderr
    assert is_supervised(tmp_path / "aishell2mix_tt.csv")
