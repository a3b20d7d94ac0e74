"""Chunked separation of long recordings: resampling, speaker alignment across chunks, seams, errors, runs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from tiny_runs import mini_wham, tiny_run

from modules.audio import resample
from modules.inference import (
    AudioInputError,
    ChunkStitcher,
    Model,
    StreamingResampler,
    align_streams,
    load_model,
    load_run,
    main,
    output_length,
    resolve_brain_class,
    separate_file,
    separate_files,
    separate_signal,
)
from modules.metrics import si_snr

SR = 8000


def turns(n, sr=SR, seconds=0.8, seed=0):
    """Two speech-like sources that take turns (one talks, then the other), plus a short overlap."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    turn = (t // seconds).astype(int)
    s1 = np.sin(2 * np.pi * 180 * t + 3 * np.sin(2 * np.pi * 3 * t)) * (turn % 2 == 0)
    s2 = np.sign(np.sin(2 * np.pi * 110 * t)) * 0.5 * (turn % 2 == 1)
    s1, s2 = s1 + 0.001 * rng.standard_normal(n), s2 + 0.001 * rng.standard_normal(n)
    return np.stack([s1, s2], -1)


class OracleChunks(Model):
    """A stand-in separator that returns the true sources of each chunk, in a scrambled order and gain.

    Chunks are recognised by their start (known from the chunk plan); every
    other chunk has its outputs swapped, and each chunk gets its own gain, as
    a real separator's outputs do from chunk to chunk.
    """

    def __init__(self, sources, chunk, swap=True, gains=True, sample_rate=SR):
        self.sources = torch.as_tensor(sources, dtype=torch.float32)
        self.mix = torch.as_tensor(np.asarray(sources).sum(-1), dtype=torch.float32)  # as the pipeline casts it
        self.chunk, self.swap, self.gains, self.sample_rate = chunk, swap, gains, sample_rate
        self.calls, self.swapped = 0, 0

    def _start(self, piece):
        n = len(piece)
        for start in torch.nonzero(self.mix == piece[0])[:, 0].tolist():
            if start + n <= len(self.mix) and torch.equal(self.mix[start : start + n], piece):
                return start
        raise AssertionError("chunk not found in the mixture")

    def separate_batch(self, mix):
        out = []
        for piece in mix:
            start = self._start(piece)
            est = self.sources[start : start + len(piece)].clone()
            if self.swap and self.calls % 2 == 1:
                est = est.flip(-1)
                self.swapped += 1
            if self.gains:
                est = est * (0.6 + 0.8 * ((self.calls * 7919) % 10) / 10)
            self.calls += 1
            out.append(est)
        return torch.stack(out), None


def test_streaming_resampler_equals_whole_signal_resampling():
    rng = np.random.default_rng(1)
    for orig, target in [(44100, 8000), (8000, 16000), (16000, 8000), (22050, 16000), (48000, 8000)]:
        x = rng.standard_normal((30011, 2))
        for block in (1, 997, 20000):
            r = StreamingResampler(orig, target, n_channels=2, min_block=64)
            pieces = [r.push(x[i : i + block]) for i in range(0, len(x), block)] + [r.finish()]
            y = np.concatenate(pieces)
            whole = resample(x.T, orig, target).T
            assert y.shape == whole.shape == (output_length(len(x), orig, target), 2)
            np.testing.assert_allclose(y, whole, atol=1e-12, err_msg=f"{orig}->{target}, blocks of {block}")


def test_speakers_stay_in_order_across_chunks_when_they_take_turns(monkeypatch):
    n, chunk, overlap = 6 * SR + 123, 1200, 300
    sources = turns(n)
    model = OracleChunks(sources, chunk, gains=False)
    out = separate_signal(model, sources.sum(-1), SR, chunk_seconds=chunk / SR, overlap_seconds=overlap / SR)
    assert model.swapped >= 10  # the model really swapped its outputs in every other chunk
    assert out.speakers.shape == (n, 2)
    ref = torch.as_tensor(sources)[None]
    est = torch.as_tensor(out.speakers)[None]
    assert float(si_snr(est, ref).min()) > 25  # speaker 1 stayed speaker 1 over the whole file
    # without the alignment, the same chunks give a scrambled output
    model = OracleChunks(sources, chunk, gains=False)
    stitched = []

    class Sink:
        def add_streams(self, k):
            pass

        def write(self, speakers, noise):
            stitched.append(speakers)

    naive = ChunkStitcher(model.separate_chunks, chunk, overlap, Sink())
    monkeypatch.setattr("modules.inference.align_streams", lambda prev, cur: cur)
    naive.push(torch.as_tensor(sources.sum(-1), dtype=torch.float32))
    naive.finish()
    scrambled = torch.as_tensor(np.concatenate(stitched))[None]
    assert float(si_snr(scrambled, ref).max()) < 5


def test_align_streams_with_more_or_fewer_streams():
    t = torch.linspace(0, 1, 1000)
    a, b, c = torch.sin(50 * t), torch.sin(13 * t) ** 3, torch.sign(torch.sin(90 * t))
    prev = torch.stack([a, b], -1)[:300]
    grown = align_streams(prev, torch.stack([c, b, a], -1))  # a third stream appears
    assert torch.equal(grown, torch.stack([a, b, c], -1))
    shrunk = align_streams(prev, torch.stack([b], -1))  # speaker 1 went silent in this chunk
    assert torch.equal(shrunk[:, 1], b) and torch.equal(shrunk[:, 0], torch.zeros(1000))
    silent = align_streams(torch.zeros(300, 2), torch.stack([b, a], -1))  # nothing to match in silence: order kept
    assert torch.equal(silent, torch.stack([b, a], -1))


def test_chunk_seams_leave_no_clicks():
    n, chunk, overlap = 5 * SR, 4000, 800
    t = np.arange(n) / SR
    sources = np.stack([0.5 * np.sin(2 * np.pi * 150 * t), 0.3 * np.sin(2 * np.pi * 230 * t + 1)], -1)
    model = OracleChunks(sources, chunk, swap=False, gains=True)  # a different gain in every chunk
    out = separate_signal(model, sources.sum(-1), SR, chunk_seconds=chunk / SR, overlap_seconds=overlap / SR)
    hop = chunk - overlap
    seams = sorted({s + overlap for s in range(hop, n - chunk, hop)} | {s for s in range(hop, n - chunk, hop)})
    jumps = np.abs(np.diff(out.speakers, axis=0))
    own = max(np.abs(np.diff(sources[:, j] * g)).max() for j in range(2) for g in (1.4,))
    at_seams = max(jumps[max(0, s - 2) : s + 2].max() for s in seams)
    assert at_seams <= own  # no sample jump larger than the signal's own
    # a hard cut at the same places would jump by the gain change
    hard = np.concatenate([sources[:hop] * 0.6, sources[hop:] * 1.4])
    assert np.abs(np.diff(hard, axis=0))[hop - 1].max() > own


def test_lengths_are_preserved_exactly():
    model = OracleChunks(np.zeros((1, 2)), 1)
    model.separate_batch = lambda mix: (torch.stack([mix, 0.5 * mix], -1), None)
    for rate in (8000, 16000, 44100, 22050):
        for n in (1, 7, 799, 8000, 12345, 40000):
            x = np.random.default_rng(n).standard_normal(n)
            out = separate_signal(model, x, rate, chunk_seconds=0.5, overlap_seconds=0.1)
            assert out.speakers.shape == (n, 2), (rate, n)
            up = separate_signal(model, x, rate, output_rate=16000, chunk_seconds=0.5, overlap_seconds=0.1)
            assert len(up.speakers) == output_length(n, rate, 16000)


def test_resampled_and_multichannel_inputs(tmp_path):
    model = OracleChunks(np.zeros((1, 2)), 1)
    model.separate_batch = lambda mix: (torch.stack([mix.tanh(), mix - mix.tanh()], -1), None)
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((16000 * 2 + 17, 2)) * 0.3
    # one chunk: exactly "resample the mean to 8 kHz, separate, resample back"
    out = separate_signal(model, stereo, 16000, chunk_seconds=10)
    mono8k = torch.as_tensor(resample(stereo.mean(1), 16000, 8000), dtype=torch.float32)[None]
    expected = resample(model.separate_batch(mono8k)[0][0].double().numpy().T, 8000, 16000).T[: len(stereo)]
    np.testing.assert_allclose(out.speakers, expected, atol=1e-5)
    # a file gives what the array gives (FLAC in, 16 kHz out)
    soundfile.write(tmp_path / "stereo.flac", stereo.clip(-1, 1), 16000, subtype="PCM_24")
    read, _ = soundfile.read(tmp_path / "stereo.flac")
    result = separate_file(model, tmp_path / "stereo.flac", tmp_path / "out", chunk_seconds=0.7, overlap_seconds=0.2)
    written = [soundfile.read(f) for f in result.files]
    assert [w[1] for w in written] == [16000, 16000]
    in_memory = separate_signal(model, read, 16000, chunk_seconds=0.7, overlap_seconds=0.2)
    for j, (signal, _) in enumerate(written):
        assert len(signal) == len(stereo)
        np.testing.assert_allclose(signal, in_memory.speakers[:, j], atol=1e-6)


def test_a_recursive_model_may_find_more_speakers_later(tmp_path):
    """SADDEL's hook: a model returning a per-chunk speaker mask; a new speaker opens a new output."""
    n, chunk = 3 * SR, 4000
    t = np.arange(n) / SR
    sources = np.stack([np.sin(2 * np.pi * 180 * t), 0.5 * np.sign(np.sin(2 * np.pi * 110 * t)) * (t >= 1.5)], -1)
    model = OracleChunks(sources, chunk, swap=False, gains=False)

    def separate_batch(mix):
        est, _ = OracleChunks.separate_batch(model, mix)
        mask = est.abs().amax(dim=1) > 0.01  # the "count": streams with energy
        return est, None, mask

    model.separate_batch = separate_batch
    soundfile.write(tmp_path / "m.wav", sources.sum(-1), SR, subtype="FLOAT")
    result = separate_file(model, tmp_path / "m.wav", tmp_path / "out", chunk_seconds=0.5, overlap_seconds=0.1)
    assert [p.rsplit("/", 1)[-1] for p in result.files] == ["m_s1.wav", "m_s2.wav"]
    s1, _ = soundfile.read(result.files[0])
    s2, _ = soundfile.read(result.files[1])
    assert len(s1) == len(s2) == n
    assert np.abs(s2[:8000]).max() == 0  # silent before it was found
    assert float(si_snr(torch.tensor(s2[12500:])[None, :, None], torch.tensor(sources[12500:, 1:])[None])) > 30


def test_bad_files_are_reported_and_the_others_still_processed(tmp_path):
    model = OracleChunks(np.zeros((1, 2)), 1)
    model.separate_batch = lambda mix: (torch.stack([mix, -mix], -1), None)
    folder = tmp_path / "in"
    folder.mkdir()
    soundfile.write(folder / "a_good.wav", np.random.default_rng(0).standard_normal(3000) * 0.1, SR)
    soundfile.write(folder / "b_empty.wav", np.zeros(0), SR)
    (folder / "c_broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    bad = np.full(SR * 2, 0.1)
    bad[SR + 5] = np.nan
    soundfile.write(folder / "d_nan.wav", bad, SR, subtype="FLOAT")
    soundfile.write(folder / "e_good.flac", np.random.default_rng(1).standard_normal(3000) * 0.1, SR)
    results = separate_files(model, [str(folder), str(tmp_path / "missing.wav")], tmp_path / "out")
    assert [k.rsplit("/", 1)[-1] for k in results] == [
        "a_good.wav", "b_empty.wav", "c_broken.wav", "d_nan.wav", "e_good.flac", "missing.wav"
    ]  # fmt: skip
    messages = {k.rsplit("/", 1)[-1]: v for k, v in results.items()}
    assert "empty" in messages["b_empty.wav"]
    assert "cannot read" in messages["c_broken.wav"] and "cannot read" in messages["missing.wav"]
    assert "NaN" in messages["d_nan.wav"]
    assert len(messages["a_good.wav"].files) == 2 and len(messages["e_good.flac"].files) == 2
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a_good_s1.wav", "a_good_s2.wav", "e_good_s1.wav", "e_good_s2.wav"]  # no partial outputs


def test_empty_signal_and_bad_chunking_are_errors():
    model = OracleChunks(np.zeros((1, 2)), 1)
    with pytest.raises(AudioInputError, match="empty"):
        separate_signal(model, np.zeros(0), SR)
    with pytest.raises(ValueError, match="overlap"):
        separate_signal(model, np.zeros(100), SR, chunk_seconds=0.1, overlap_seconds=0.08)


# ----------------------------------------------------------------------------- trained runs
@pytest.fixture(scope="module")
def nass_run():
    """A NASS run (tiny Conv-TasNet, one epoch) on a mini WHAM!: noise output through the Brain's split_outputs."""
    return {"run": tiny_run("nass"), "data": mini_wham()}


def test_a_trained_run_separates_long_files_like_whole_ones(nass_run, tmp_path):
    model = load_run(nass_run["run"])
    assert type(model.brain).__name__ == "NASSBrain"
    assert model.brain_class_source.endswith("run_info.json")  # written by run_recipe
    (Path(nass_run["run"]) / "run_info.json").rename(Path(nass_run["run"]) / "run_info.moved")
    try:  # without it, the Brain class is read from the recipe's train.py
        assert load_run(nass_run["run"]).brain_class_source.endswith("recipes/WHAM/nass/train.py")
    finally:
        (Path(nass_run["run"]) / "run_info.moved").rename(Path(nass_run["run"]) / "run_info.json")
    mixtures = sorted((nass_run["data"] / "wav8k" / "min" / "tt" / "mix_both").glob("*.wav"))
    x, sr = soundfile.read(mixtures[0])
    whole_speakers, whole_noise = model.separate_batch(torch.tensor(x, dtype=torch.float32)[None])
    out = separate_signal(model, x, sr)  # shorter than a chunk: one piece
    np.testing.assert_allclose(out.speakers, whole_speakers[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(out.noise, whole_noise[0].numpy(), atol=1e-6)
    # a long recording (the test mixtures one after the other) in chunks: files for s1, s2 and the noise
    long = np.concatenate([soundfile.read(m)[0] for m in mixtures] * 2)
    soundfile.write(tmp_path / "long.wav", np.stack([long, long], -1), SR, subtype="FLOAT")  # stereo
    code = main([str(nass_run["run"]), str(tmp_path / "long.wav"), "--output_folder", str(tmp_path / "sep"),
                 "--chunk_seconds=1.5", "--overlap_seconds=0.5", "--output_rate=16000", "--noprogressbar",
                 "--device=cpu"])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "sep").iterdir())
    assert names == ["long_noise.wav", "long_s1.wav", "long_s2.wav"]
    for name in names:
        signal, rate = soundfile.read(tmp_path / "sep" / name)
        assert rate == 16000 and len(signal) == output_length(len(long), SR, 16000)
        assert np.isfinite(signal).all() and np.abs(signal).max() > 0


def test_brain_class_from_run_info_or_flag(nass_run, tmp_path):
    import shutil

    run = tmp_path / "moved_run"
    shutil.copytree(nass_run["run"], run)
    (run / "run_info.json").unlink()  # a run of an older version, moved away from its recipe
    (run / "hyperparams.yaml").write_text(
        "\n".join(
            ["# Generated", "# /elsewhere/hparams.yaml", *(run / "hyperparams.yaml").read_text().splitlines()[2:]]
        )
    )
    with pytest.raises(ValueError, match="--brain"):
        resolve_brain_class(run)
    assert main([str(run), "x.wav", "--device=cpu"]) == 2
    assert resolve_brain_class(run, "modules.nass.NASSBrain")[0].__name__ == "NASSBrain"
    (run / "run_info.json").write_text(json.dumps({"brain_class": "modules.nass.NASSBrain"}))
    model = load_model(run)
    assert type(model.brain).__name__ == "NASSBrain" and model.brain_class_source.endswith("run_info.json")
    with pytest.raises(FileNotFoundError, match="neither a trained run"):
        load_model(tmp_path)


def test_enrollment_is_required_by_extraction_models():
    model = OracleChunks(np.zeros((1, 2)), 1)
    model.conditioning = ("enroll",)
    seen = {}

    def separate_batch(mix, enroll, enroll_lengths):
        seen["enroll"] = enroll.shape
        return mix[..., None] * enroll.mean(), None

    model.separate_batch = separate_batch
    with pytest.raises(AudioInputError, match="enrollment"):
        separate_signal(model, np.ones(5000), SR)
    out = separate_signal(model, np.ones(5000), SR, enroll=np.full(800, 2.0), chunk_seconds=0.25, overlap_seconds=0.05)
    assert seen["enroll"][0] == 1 and out.speakers.shape == (5000, 1)
    assert math.isclose(float(out.speakers.mean()), 2.0, rel_tol=1e-5)
