"""The content check of data preparation: bad audio caught once, reported or left out, cached.

Each bad-content case (a NaN inside a file, an all-zero file, a source longer or
shorter than its mixture) is made in a copy of a mini corpus and must give, by
default, a one-line :class:`PrepError` naming the file and its reason, and with
``skip_bad_files`` a manifest without that mixture and ``<prefix>_rejected.csv``
with it. End to end on WHAM!, LibriMix and REAL-M (mixture-only), then the
shared check on the preparation of every dataset (and both mixture-only manifests
of Vox2Mix and Aishell2Mix), then the cache in the sidecar.
"""

import contextlib
import csv
import inspect
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep import aishell2mix, common, librimix, lrs2mix, realm, vox2mix, wham
from data_prep.common import (
    CONTENT_CACHE_KEY,
    REJECTED_HEADER,
    SILENCE_FLOOR,
    FileStats,
    PrepError,
    audio_stats,
    build_row,
    check_audio_content,
    row_audio,
    row_problems,
    sidecar_text,
)
from data_prep.mini import (
    make_mini_aishell2mix,
    make_mini_librimix,
    make_mini_lrs2mix,
    make_mini_realm,
    make_mini_vox2mix,
    make_mini_wham,
)

MODULES = {
    "wham": (wham, wham.prepare_wham),
    "librimix": (librimix, librimix.prepare_librimix),
    "vox2mix": (vox2mix, vox2mix.prepare_vox2mix),
    "lrs2mix": (lrs2mix, lrs2mix.prepare_lrs2mix),
    "aishell2mix": (aishell2mix, aishell2mix.prepare_aishell2mix),
    "realm": (realm, realm.prepare_realm),
}

#: Expected start of the reason of each bad-content case.
REASONS = {
    "nan": "100 non-finite samples (NaN or Inf)",
    "zero": "silent: -inf dBFS, below the floor of -100 dBFS",
    "longer": "length mismatch: ",
    "shorter": "length mismatch: ",
}


# ------------------------------------------------------------------ helpers


def _break(path, case):
    """Damage one audio file in place, as a buggy generator would."""
    x, rate = sf.read(path, dtype="float64")
    subtype = sf.info(path).subtype
    if case == "nan":  # only a float WAV can hold a NaN
        x[len(x) // 4 : len(x) // 4 + 100] = np.nan
        subtype = "FLOAT"
    elif case == "zero":
        x = np.zeros_like(x)
    elif case == "longer":
        x = np.concatenate([x, x[:160]])
    elif case == "shorter":
        x = x[:-160]
    stat = os.stat(path)
    sf.write(path, x, rate, subtype=subtype)
    # a later edit, whatever the clock granularity of the file system
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ids(csv_path):
    return [row["ID"] for row in _rows(csv_path)]


def _rejected(save_folder, prefix):
    path = Path(save_folder) / f"{prefix}_rejected.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == REJECTED_HEADER
        return list(reader)


def _prep_error(func, *args, **kwargs):
    with pytest.raises(PrepError) as err:
        func(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@contextlib.contextmanager
def _count_reads(monkeypatch):
    """Count audio reads (``soundfile.SoundFile.read``, which ``soundfile.read`` uses too) and ``soundfile.info``."""
    counts = {"read": 0, "info": 0}
    read, info = sf.SoundFile.read, sf.info

    def counting_read(*args, **kwargs):
        counts["read"] += 1
        return read(*args, **kwargs)

    def counting_info(*args, **kwargs):
        counts["info"] += 1
        return info(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(sf.SoundFile, "read", counting_read)
        m.setattr(sf, "info", counting_info)
        yield counts


def _check_bad_case(prepare, data_folder, save, prefix, split, utt_id, bad_path, case, **kwargs):
    """Default: the one-line error; with skip_bad_files: manifest without, rejected list with the mixture."""
    msg = _prep_error(prepare, data_folder, save / "default", **kwargs)
    assert ": 1 audio file of 1 mixture fails the content check: " in msg
    assert f"{bad_path} ({REASONS[case]}" in msg
    assert "--skip_bad_files" in msg and f"{prefix}_rejected.csv" in msg
    # no manifest written; the sidecar holds only the cache of what was read
    assert sorted(p.name for p in (save / "default").iterdir()) == [f"{prefix}_prep.json", f"{prefix}_rejected.csv"]
    assert "options" not in json.loads((save / "default" / f"{prefix}_prep.json").read_text())
    assert len(_rejected(save / "default", prefix)) == 1
    paths = prepare(data_folder, save / "skip", skip_bad_files=True, **kwargs)
    ids = _ids(paths[split])
    assert utt_id not in ids
    rejected = _rejected(save / "skip", prefix)
    assert [(r["ID"], r["split"], r["file"]) for r in rejected] == [(utt_id, split, str(bad_path))]
    assert rejected[0]["reason"].startswith(REASONS[case])
    if case in ("longer", "shorter"):
        assert f"{case} than its mixture" in rejected[0]["reason"]
    sidecar = json.loads((save / "skip" / f"{prefix}_prep.json").read_text())
    assert sidecar["rejected"][split] == 1 and sidecar["rows"][split] == len(ids)
    assert sidecar["options"]["skip_bad_files"] is True
    return paths


# ---------------------------------------------------------------- corpora


@pytest.fixture(scope="module")
def wham_root(tmp_path_factory):
    return make_mini_wham(
        tmp_path_factory.mktemp("corpus"), n_train=2, n_valid=1, n_test=2, sample_rates=(8000,), modes=("min",)
    )


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory):
    return make_mini_librimix(
        tmp_path_factory.mktemp("corpus"),
        n_train=2,
        n_valid=1,
        n_test=2,
        sample_rates=(8000,),
        modes=("min",),
        n_spks=(2,),
    )


@pytest.fixture(scope="module")
def realm_root(tmp_path_factory):
    return make_mini_realm(tmp_path_factory.mktemp("corpus"), n_train=2, n_valid=1, n_test=2)


@pytest.fixture(scope="module")
def vox_root(tmp_path_factory):
    return make_mini_vox2mix(tmp_path_factory.mktemp("corpus"), n_train=1, n_valid=1, n_test=2)


@pytest.fixture(scope="module")
def lrs2_root(tmp_path_factory):
    return make_mini_lrs2mix(tmp_path_factory.mktemp("corpus"), n_train=1, n_valid=1, n_test=2)


@pytest.fixture(scope="module")
def aishell_dump(tmp_path_factory):
    """A simulated mini Aishell2Mix, to be read as a dump (``tr``, ``cv`` mixture-only)."""
    root = make_mini_aishell2mix(tmp_path_factory.mktemp("corpus"), n_train=2, n_valid=1, n_test=2)
    dump = tmp_path_factory.mktemp("dump") / "Aishell2Mix"
    aishell2mix.prepare_aishell2mix(
        dump, tmp_path_factory.mktemp("prep"), cfg_folder=root / "lst", aishell_folder=root, splits=("tr", "tt")
    )
    return dump


# ------------------------------------------------------------ end to end


WHAM_CASES = [("test", "s1", "nan"), ("train", "s2", "zero"), ("train", "noise", "longer"), ("test", "mix", "zero")]


@pytest.mark.parametrize("split, key, case", WHAM_CASES)
def test_wham(tmp_path, wham_root, split, key, case):
    data = tmp_path / "WHAM"
    shutil.copytree(wham_root, data)
    clean = wham.prepare_wham(data, tmp_path / "clean")
    row = _rows(clean[split])[0]
    rel = row_audio(row)[key]
    _break(data / rel, case)
    _check_bad_case(wham.prepare_wham, data, tmp_path, "wham", split, row["ID"], data / rel, case)


@pytest.mark.parametrize(
    "split, key, case", [("test", "s2", "nan"), ("train", "s1", "zero"), ("test", "s1", "shorter")]
)
def test_librimix(tmp_path, libri_root, split, key, case):
    data = tmp_path / "LibriMix"
    shutil.copytree(libri_root, data)
    clean = librimix.prepare_librimix(data, tmp_path / "clean")
    row = _rows(clean[split])[-1]
    rel = row_audio(row)[key]
    _break(data / rel, case)
    _check_bad_case(librimix.prepare_librimix, data, tmp_path, "libri2mix", split, row["ID"], data / rel, case)


@pytest.mark.parametrize("case", ["nan", "zero"])
def test_realm_mixture_only(tmp_path, realm_root, case):
    data = tmp_path / "REALM"
    shutil.copytree(realm_root, data)
    clean = realm.prepare_realm(data, tmp_path / "clean")
    row = _rows(clean["test"])[0]
    assert list(row_audio(row)) == ["mix"]
    _break(data / row_audio(row)["mix"], case)
    _check_bad_case(realm.prepare_realm, data, tmp_path, "realm", "test", row["ID"], data / row_audio(row)["mix"], case)


def test_realm_separations_are_checked(tmp_path, realm_root):
    data = tmp_path / "REALM"
    shutil.copytree(realm_root, data)
    clean = realm.prepare_realm(data, tmp_path / "clean", with_separations=True)
    row = _rows(clean["pretrain"])[0]
    sep = data / row_audio(row)["sep2"]
    _break(sep, "nan")
    _check_bad_case(
        realm.prepare_realm, data, tmp_path, "realm", "pretrain", row["ID"], sep, "nan", with_separations=True
    )


def test_cli(tmp_path, wham_root):
    data = tmp_path / "WHAM"
    shutil.copytree(wham_root, data)
    row = _rows(wham.prepare_wham(data, tmp_path / "clean")["test"])[0]
    _break(data / row_audio(row)["s1"], "zero")
    argv = ["--data_folder", str(data), "--save_folder", str(tmp_path / "save")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert wham.main(argv) == 2
    message = err.getvalue()[err.getvalue().index("error: ") :]  # after the progress bars
    assert message.startswith("error: WHAM!: 1 audio file of 1 mixture fails the content check: ")
    assert message.count("\n") == 1 and message.endswith("\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert wham.main([*argv, "--skip_bad_files"]) == 0
    assert row["ID"] not in _ids(tmp_path / "save" / "wham_tt.csv")
    assert [r["ID"] for r in _rejected(tmp_path / "save", "wham")] == [row["ID"]]


@pytest.mark.parametrize("name", list(MODULES))
def test_every_prep_has_the_option(name):
    module, prepare = MODULES[name]
    assert inspect.signature(prepare).parameters["skip_bad_files"].default is False
    args = module.build_parser().parse_args(["--data_folder", "d", "--save_folder", "s", "--skip_bad_files"])
    assert args.skip_bad_files is True


# -------------------------------------------------- every dataset's preparation


#: name -> (corpus fixture, data folder inside the copy, prepare, kwargs, split broken, its audio keys)
DATASETS = {
    "wham": ("wham_root", "", wham.prepare_wham, {}, "test", ("mix", "s1", "s2", "noise")),
    "librimix": ("libri_root", "", librimix.prepare_librimix, {}, "test", ("mix", "s1", "s2", "noise")),
    "vox2mix-2mix": ("vox_root", "VoxCeleb2-2Mix", vox2mix.prepare_vox2mix, {}, "test", ("mix", "s1", "s2")),
    "vox2mix-dip": ("vox_root", "DIP", vox2mix.prepare_vox2mix, {"splits": ("tr", "tt")}, "test", ("mix",)),
    "lrs2mix": ("lrs2_root", "lrs2_rebuild", lrs2mix.prepare_lrs2mix, {}, "test", ("mix", "s1", "s2")),
    "aishell2mix-tr": (
        "aishell_dump",
        "",
        aishell2mix.prepare_aishell2mix,
        {"splits": ("tr", "tt")},
        "train",
        ("mix",),
    ),
    "aishell2mix-tt": (
        "aishell_dump",
        "",
        aishell2mix.prepare_aishell2mix,
        {"splits": ("tr", "tt")},
        "test",
        ("mix", "s1", "s2"),
    ),
    "realm": ("realm_root", "", realm.prepare_realm, {}, "test", ("mix",)),
}
PREFIXES = {"wham": "wham", "librimix": "libri2mix", "realm": "realm", "lrs2mix": "lrs2mix"}
CASES = [
    (name, case)
    for name, spec in DATASETS.items()
    for case in ("nan", "zero", "longer")
    if case != "longer" or "s1" in spec[5]
]


def _corpus_copy(request, tmp_path, name):
    fixture, sub, prepare, kwargs, split, keys = DATASETS[name]
    root = request.getfixturevalue(fixture)
    shutil.copytree(root, tmp_path / "corpus")
    return tmp_path / "corpus" / sub, prepare, kwargs, split, keys


@pytest.mark.parametrize("name", list(DATASETS))
def test_clean_corpus_passes(request, tmp_path, name):
    data, prepare, kwargs, split, keys = _corpus_copy(request, tmp_path, name)
    prefix = PREFIXES.get(name, name.split("-")[0])
    paths = prepare(data, tmp_path / "prep", **kwargs)
    assert not (tmp_path / "prep" / f"{prefix}_rejected.csv").exists()
    row = _rows(paths[split])[0]
    assert tuple(row_audio(row)) == keys
    sidecar = json.loads((tmp_path / "prep" / f"{prefix}_prep.json").read_text())
    every_file = {rel for path in paths.values() for r in _rows(path) for rel in row_audio(r).values()}
    assert set(sidecar[CONTENT_CACHE_KEY]) == every_file
    assert sidecar["rejected"] == {key: 0 for key in paths}
    assert sidecar["options"]["content_check"] == {"version": 1, "silence_floor": SILENCE_FLOOR}


@pytest.mark.parametrize("name, case", CASES)
def test_every_dataset(request, tmp_path, name, case):
    data, prepare, kwargs, split, _ = _corpus_copy(request, tmp_path, name)
    prefix = PREFIXES.get(name, name.split("-")[0])
    clean = prepare(data, tmp_path / "clean", **kwargs)
    row = _rows(clean[split])[0]
    rel = row_audio(row)["s1" if case == "longer" else "mix"]
    _break(data / rel, case)
    _check_bad_case(prepare, data, tmp_path, prefix, split, row["ID"], data / rel, case, **kwargs)


# ------------------------------------------------------------------- cache


def test_rerun_reads_nothing(tmp_path, wham_root, monkeypatch):
    data = tmp_path / "WHAM"
    shutil.copytree(wham_root, data)
    save = tmp_path / "save"
    with _count_reads(monkeypatch) as counts:
        paths = wham.prepare_wham(data, save)
    n_files = 5 * 4  # 5 mixtures; mix_both, s1, s2, noise
    assert counts["read"] == n_files
    with _count_reads(monkeypatch) as counts:
        assert wham.prepare_wham(data, save) == paths  # same options: nothing opened at all
    assert counts == {"read": 0, "info": 0}
    with _count_reads(monkeypatch) as counts:
        wham.prepare_wham(data, save, skip_bad_files=True)  # prepared again: headers scanned, no audio read
    assert counts["read"] == 0 and counts["info"] == n_files
    assert json.loads((save / "wham_prep.json").read_text())["options"]["skip_bad_files"] is True

    # a changed file is read again, and only that one
    row = _rows(paths["train"])[1]
    _break(data / row_audio(row)["noise"], "zero")
    with _count_reads(monkeypatch) as counts:
        wham.prepare_wham(data, save, skip_bad_files=True)
    assert counts["read"] == 0  # same options as the last run: still skipped (see prepare_manifests)
    os.unlink(paths["valid"])  # a missing manifest: prepared again
    with _count_reads(monkeypatch) as counts:
        msg = _prep_error(wham.prepare_wham, data, save)
    assert counts["read"] == 1 and str(data / row_audio(row)["noise"]) in msg

    # the failed check kept its cache: switching to skip_bad_files reads nothing
    with _count_reads(monkeypatch) as counts:
        wham.prepare_wham(data, save, skip_bad_files=True)
    assert counts["read"] == 0 and row["ID"] not in _ids(paths["train"])

    # fixed: the mixture comes back, the list of rejected files goes
    shutil.copy2(wham_root / row_audio(row)["noise"], data / row_audio(row)["noise"])
    os.unlink(paths["train"])
    with _count_reads(monkeypatch) as counts:
        wham.prepare_wham(data, save, skip_bad_files=True)
    assert counts["read"] == 1 and row["ID"] in _ids(paths["train"])
    assert not (save / "wham_rejected.csv").exists()


def test_interrupted_check_keeps_what_it_read(tmp_path, wham_root, monkeypatch):
    data = tmp_path / "WHAM"
    shutil.copytree(wham_root, data)
    calls = {"n": 0}
    original = common._read_audio

    def interrupted(path):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return original(path)

    with monkeypatch.context() as m:
        m.setattr(common, "_read_audio", interrupted)
        with pytest.raises(KeyboardInterrupt):
            wham.prepare_wham(data, tmp_path / "save")
    sidecar = json.loads((tmp_path / "save" / "wham_prep.json").read_text())
    assert len(sidecar[CONTENT_CACHE_KEY]) == 7 and "options" not in sidecar  # vouches for no manifest
    with _count_reads(monkeypatch) as counts:
        wham.prepare_wham(data, tmp_path / "save")
    assert counts["read"] == 20 - 7


def test_sidecar_cache_format(tmp_path, wham_root):
    paths = wham.prepare_wham(wham_root, tmp_path)
    text = (tmp_path / "wham_prep.json").read_text()
    sidecar = json.loads(text)
    files = sidecar[CONTENT_CACHE_KEY]
    rel = row_audio(_rows(paths["test"])[0])["s1"]
    stat = os.stat(wham_root / rel)
    x, rate = sf.read(wham_root / rel, dtype="float64")
    size, mtime_ns, frames, sample_rate, nonfinite, mean_square = files[rel]
    assert (size, mtime_ns, frames, sample_rate, nonfinite) == (stat.st_size, stat.st_mtime_ns, len(x), rate, 0)
    assert mean_square == pytest.approx(np.mean(x**2), rel=1e-4)
    assert f'    "{rel}": {json.dumps(files[rel])}' in [line.rstrip(",") for line in text.splitlines()]  # one a line
    assert sidecar_text(sidecar) == text


# ------------------------------------------------------ the shared functions


def _wav(tmp_path, x, subtype="FLOAT", rate=8000, name="a.wav"):
    path = tmp_path / name
    sf.write(path, np.asarray(x), rate, subtype=subtype)
    return path


def test_audio_stats(tmp_path):
    x = np.full(1000, 0.1)
    x[10] = np.inf
    assert audio_stats(_wav(tmp_path, x)) == FileStats(1000, 8000, 1, None)
    # finite samples whose squares overflow float32 are not "non-finite"
    stats = audio_stats(_wav(tmp_path, np.full(100, 1e20, dtype=np.float32)))
    assert stats.nonfinite == 0 and stats.mean_square == pytest.approx(1e40, rel=1e-6)


def test_silence_floor(tmp_path):
    rng = np.random.default_rng(0)
    step = 1 / 32768
    level = {}
    for name, x in {
        "-99 dBFS": np.full(8000, np.sqrt(10**-9.9)),
        "-101 dBFS": np.full(8000, np.sqrt(10**-10.1)),
        "one 16-bit step, alternating": step * (-1) ** np.arange(8000),
        "16-bit rounding noise": rng.uniform(-step / 2, step / 2, 8000),
        "zeros": np.zeros(8000),
    }.items():
        stats = audio_stats(_wav(tmp_path, x, name=f"{len(level)}.wav"))
        level[name] = common.file_problems(stats) == []
    assert level == {
        "-99 dBFS": True,
        "-101 dBFS": False,
        "one 16-bit step, alternating": True,
        "16-bit rounding noise": False,
        "zeros": False,
    }


def test_row_problems():
    row = {"ID": "a", "duration": 0.1}
    ok = FileStats(800, 8000, 0, 0.01)
    short = FileStats(700, 8000, 0, 0.01)
    # the enrollment and separations have lengths of their own
    assert row_problems(row, {"mix": ok, "s1": ok, "enroll": short, "sep1": short}) == {}
    assert row_problems(row, {"mix": ok, "noise": short}) == {
        "noise": ["length mismatch: 700 samples, shorter than its mixture (800)"]
    }
    # mixture-only rows: the mixture against its manifest duration
    assert row_problems({"ID": "a", "duration": 0.1}, {"mix": short}) == {
        "mix": ["length mismatch: 700 samples decoded, its manifest duration gives 800"]
    }
    assert row_problems(row, {"mix": "unreadable (x)", "s1": ok}) == {"mix": ["unreadable (x)"]}


def test_shared_file_read_once(tmp_path):
    for name in ("m1", "m2", "e"):
        _wav(tmp_path, np.full(800, 0.1), name=f"{name}.wav")
    rows = {"test": [build_row(m, 0.1, {"mix": f"{m}.wav", "enroll": "e.wav"}) for m in ("m1", "m2")]}
    report = check_audio_content(rows, tmp_path)
    assert report.bad == [] and report.n_read == 3 and sorted(report.files) == ["e.wav", "m1.wav", "m2.wav"]
    _wav(tmp_path, np.zeros(800), name="e.wav")
    report = check_audio_content(rows, tmp_path)
    assert [(b.utt_id, Path(b.path).name) for b in report.bad] == [("m1", "e.wav"), ("m2", "e.wav")]


def test_unreadable_audio_is_a_bad_file(tmp_path):
    _wav(tmp_path, np.full(800, 0.1), name="m.wav")
    path = _wav(tmp_path, np.full(800, 0.1), name="s.wav")
    path.write_bytes(path.read_bytes()[:40])  # header only, cut inside
    rows = {"test": [build_row("m", 0.1, {"mix": "m.wav", "s1": "s.wav"})]}
    (bad,) = check_audio_content(rows, tmp_path).bad
    assert bad.utt_id == "m" and bad.reason.startswith("unreadable (")


def test_sidecar_text_round_trip():
    for record in (
        {"version": 2, "options": {"a": [1, 2]}},
        {"version": 2, CONTENT_CACHE_KEY: {}},
        {CONTENT_CACHE_KEY: {"b.wav": [1, 2, 3, 8000, 1, None], "a.wav": [1, 2, 3, 8000, 0, 0.5]}},
    ):
        assert json.loads(sidecar_text(record)) == record
