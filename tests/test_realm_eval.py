"""REAL-M reference-free evaluation: WER assignment, the offline recognisers, DNSMOS, the SI-SNR estimator."""

import csv
import json
import math

import numpy as np
import pytest
import soundfile
import test_context_aware as context_aware
import torch

from modules.evaluation.realm import evaluate_systems, main, read_manifest
from modules.evaluation.sisnr_estimator import BlindSISNREstimator, compress_snr
from modules.evaluation.wer import assign_transcripts, corpus_wer, mixture_errors, normalize_text, word_errors


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    """A mini REAL-M (2 + 2 + 2 mixtures) and its manifests, with REAL-M's reference separations."""
    from data_prep.mini import make_mini_realm
    from data_prep.realm import prepare_realm

    root = tmp_path_factory.mktemp("realm")
    data = make_mini_realm(root, seed=0, n_train=2, n_valid=2, n_test=2)
    paths = prepare_realm(data, root / "prep", with_separations=True)
    return {"data": data, "test": paths["test"]}


def test_wer_assignment_picks_the_better_pairing():
    refs = ["the quick brown fox", "jumps over the lazy dog"]
    swapped = ["jumps over a lazy dog", "the quick brown box"]  # stream 0 says sentence 2
    out = assign_transcripts(swapped, refs)
    assert [a["stream"] for a in out] == [1, 0]
    assert [(a["errors"], a["words"]) for a in out] == [(1, 4), (1, 5)]
    # the other pairing would cost far more; check against brute force
    direct = sum(word_errors(r, h)[0] for r, h in zip(refs, swapped))
    assert direct > 2 == sum(a["errors"] for a in out)
    # one stream only: the other transcription is all deletions
    single = assign_transcripts(["jumps over the lazy dog"], refs)
    assert [(a["stream"], a["errors"]) for a in single] == [(None, 4), (0, 0)]
    # three streams (a noise output left in): the best two are used
    three = assign_transcripts(["hmm", "jumps over the lazy dog", "the quick brown fox"], refs)
    assert [a["stream"] for a in three] == [2, 1] and sum(a["errors"] for a in three) == 0


def test_text_normalisation_and_mixture_wer():
    assert normalize_text("“Hello,” she said — it's 'twenty-one'!") == "hello she said it's twenty one"
    assert word_errors("Hello, World!", "hello world") == (0, 2)
    errors, words = mixture_errors("the cat sat on the mat", ["the cat sat", "on the mat"])
    assert (errors, words) == (6, 6)  # each transcription sees three extra words
    assert corpus_wer([errors], [words]) == 100.0
    assert math.isnan(corpus_wer([], []))


def test_pocketsphinx_transcribes_offline(realm, monkeypatch):
    from modules.evaluation.asr import PocketSphinxASR, make_asr

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    row = read_manifest(realm["test"], realm["data"])[0]
    signal, rate = soundfile.read(row["mix_wav"])
    asr = make_asr("pocketsphinx")
    assert isinstance(asr, PocketSphinxASR)
    text = asr.transcribe(signal[: 2 * rate], rate)
    assert isinstance(text, str) and text == normalize_text(text)  # lower-case words from its dictionary
    with pytest.raises(ValueError, match=r"could not be fetched.*pass --asr <folder>"):  # offline: one clear line
        make_asr("speechbrain:nobody-here/asr-not-cached-anywhere")


def test_dnsmos_is_finite_on_a_mini_file(realm):
    from modules.evaluation.dnsmos import dnsmos

    row = read_manifest(realm["test"], realm["data"])[0]
    signal, rate = soundfile.read(row["mix_wav"])
    scores = dnsmos(signal[: 3 * rate] * 40.0, rate)  # louder than full scale: levelled, not refused
    assert set(scores) == {"sig", "bak", "ovrl", "p808"}
    assert all(math.isfinite(v) and 1.0 <= v <= 5.0 for v in scores.values()), scores


def upstream_estimator():
    """The REAL-M recipe's estimator, built as its yaml builds it (SpeechBrain layers and names)."""
    from hyperpyyaml import load_hyperpyyaml

    layers = "".join(
        f"    cnn{i}: !new:speechbrain.nnet.CNN.Conv1d\n        in_channels: {2 if i == 1 else 128}\n"
        f"        kernel_size: 4\n        out_channels: 128\n        stride: {1 if i == 1 else 2}\n"
        "        skip_transpose: True\n        padding: 'valid'\n"
        + (f"    relu{i}: !new:torch.nn.ReLU\n" if i < 5 else "")
        for i in range(1, 6)
    )
    text = (
        "encoder: !new:speechbrain.nnet.containers.Sequential\n    input_shape: [null, 2, null]\n" + layers + "\n"
        "stat_pooling: !new:speechbrain.nnet.pooling.StatisticsPooling\n"
        "encoder_out: !new:speechbrain.nnet.containers.Sequential\n    input_shape: [null, 256]\n"
        "    layer1: !new:speechbrain.nnet.linear.Linear\n        input_size: 256\n        n_neurons: 256\n"
        "    relu: !new:torch.nn.ReLU\n"
        "    layer2: !new:speechbrain.nnet.linear.Linear\n        input_size: 256\n        n_neurons: 1\n"
        "    sigm: !new:torch.nn.Sigmoid\n"
    )
    return load_hyperpyyaml(text)


def test_sisnr_estimator_loads_a_speechbrain_checkpoint(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    torch.manual_seed(0)
    hp = upstream_estimator()
    ckpt = Checkpointer(tmp_path / "save", {"encoder": hp["encoder"], "encoder_out": hp["encoder_out"]})
    saved = ckpt.save_checkpoint(meta={"error": 1.0})
    assert sorted(p.name for p in saved.path.iterdir()) == ["CKPT.yaml", "encoder.ckpt", "encoder_out.ckpt"]
    ours = BlindSISNREstimator().load_speechbrain(saved.path)
    separated, mixture = torch.randn(3, 8000), torch.randn(3, 8000)

    def stnorm(x):
        return (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True)

    with torch.no_grad():  # the recipe's forward pass (train.py of recipes/REAL-M/sisnr-estimation)
        enc = hp["encoder"](torch.cat([stnorm(separated)[:, None], stnorm(mixture)[:, None]], dim=1))
        expected = hp["encoder_out"](hp["stat_pooling"](enc.permute(0, 2, 1))).squeeze() * 10.0
        got = ours(separated, mixture)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)  # the recipe's pooling adds noise up to 9e-5
    assert compress_snr(torch.tensor([12.0]))[0] == 1.0


class LoudnessASR:
    """A fast stand-in recogniser (PocketSphinx is tested above): one word per 0.5 s above -40 dBFS."""

    name = "pocketsphinx"

    def transcribe(self, signal, sample_rate):
        frames = np.asarray(signal)[: len(signal) // (sample_rate // 2) * (sample_rate // 2)].reshape(
            -1, sample_rate // 2
        )
        return " ".join("the" for f in frames if np.mean(f**2) > 1e-4)


def test_evaluation_of_systems_on_mini_realm(realm, tmp_path, monkeypatch):
    monkeypatch.setattr("modules.evaluation.asr.make_asr", lambda spec, **kwargs: LoudnessASR())
    rows = read_manifest(realm["test"], realm["data"])
    separations = tmp_path / "seps"  # a "system" given as a folder of <ID>_s<k>.wav (REAL-M's own, renamed)
    separations.mkdir()
    for row in rows:
        for k in (1, 2):
            signal, rate = soundfile.read(row[f"sep{k}_wav"])
            soundfile.write(separations / f"{row['ID']}_s{k}.wav", signal, rate)
    estimator = tmp_path / "estimator"
    estimator.mkdir()
    torch.save(BlindSISNREstimator().state_dict(), estimator / "estimator.ckpt")
    out = tmp_path / "eval"
    code = main(["--manifest", str(realm["test"]), "--data_folder", str(realm["data"]), "--system", "reference",
                 "--system", f"mine={separations}", "--estimator", str(estimator), "--output_folder", str(out),
                 "--noprogressbar"])  # fmt: skip
    assert code == 0
    comparison = (out / "comparison.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in comparison[2:]] == ["mixture", "reference", "mine"]
    assert "WER pocketsphinx (%)" in comparison[0] and "SI-SNR estimate (dB)" in comparison[0]
    for system in ("mixture", "reference", "mine"):
        with open(out / system / "results.csv", newline="") as f:
            results = list(csv.DictReader(f))
        summary = json.loads((out / system / "summary.json").read_text())
        assert [r["ID"] for r in results] == [r["ID"] for r in rows] and summary["n_mixtures"] == len(rows)
        errors = sum(int(r["pocketsphinx_errors"]) for r in results)
        words = sum(int(r["pocketsphinx_words"]) for r in results)
        assert summary["pocketsphinx_wer"] == pytest.approx(100 * errors / words, abs=0.01)
        expected_words = sum(len(normalize_text(r[s]).split()) for r in rows for s in ("sentence1", "sentence2"))
        assert words == expected_words  # every reference word counted once per mixture
    # the same separations given twice give the same scores
    ref = json.loads((out / "reference" / "summary.json").read_text())
    mine = json.loads((out / "mine" / "summary.json").read_text())
    assert ref["pocketsphinx_wer"] == mine["pocketsphinx_wer"] and ref["sisnr_hat"] == mine["sisnr_hat"]
    assert math.isnan(json.loads((out / "mixture" / "summary.json").read_text())["sisnr_hat"])


def test_a_model_system_separates_and_caches(realm, tmp_path):
    from tiny_runs import tiny_run

    run = tiny_run("convtasnet")
    summaries = evaluate_systems(realm["test"], [f"ctn={run}"], tmp_path, data_folder=realm["data"], asr=(),
                                 use_dnsmos=False, limit=1)  # fmt: skip
    cached = sorted(p.name for p in (tmp_path / "ctn" / "separations").iterdir())
    row = read_manifest(realm["test"], realm["data"])[0]
    assert cached == [f"{row['ID']}_s1.wav", f"{row['ID']}_s2.wav"] and summaries["ctn"]["n_mixtures"] == 1
    assert len(soundfile.read(tmp_path / "ctn" / "separations" / cached[0])[0]) == soundfile.info(row["mix_wav"]).frames
    assert np.isfinite(soundfile.read(tmp_path / "ctn" / "separations" / cached[1])[0]).all()


def test_estimator_recipe_trains_on_our_separations(tmp_path):
    """The small recipe: oracle SI-SNR of a run's separations, estimator checkpoints the scorer reads."""
    from conftest import run_recipe_cmd
    from tiny_runs import mini_wham, tiny_run

    from modules.inference import load_model
    from modules.losses import pit_si_snr_loss
    from modules.training import find_best_checkpoint

    run, out = tiny_run("convtasnet"), tmp_path / "estimator_run"
    run_recipe_cmd("REALM", "sisnr_estimator", "hparams/estimator.yaml", mini_wham(), out, f"--separators=[{run}]",
                   "--latent_dim=8", "--hidden=16")  # fmt: skip
    with open(out / "test_results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["snt_id"] != "avg"]
    assert len(rows) == 2
    model = load_model(run)
    estimator = BlindSISNREstimator(latent_dim=8, hidden=16).load_speechbrain(
        find_best_checkpoint(out, key="error", mode="min").path
    )
    for row in rows:
        mix, _ = soundfile.read(mini_wham() / "wav8k" / "min" / "tt" / "mix_both" / f"{row['snt_id']}.wav")
        sources = np.stack(
            [
                soundfile.read(mini_wham() / "wav8k" / "min" / "tt" / s / f"{row['snt_id']}.wav")[0]
                for s in ("s1", "s2")
            ],
            -1,
        )
        mix_t = torch.tensor(mix, dtype=torch.float32)[None]
        speakers = model.separate_batch(mix_t)[0]
        loss, perm = pit_si_snr_loss(speakers, torch.tensor(sources, dtype=torch.float32)[None])
        assert float(row["si-snr_oracle"]) == pytest.approx(-float(loss[0]), abs=1e-3)  # mean oracle SI-SNR
        streams = speakers[0].T[perm[0]]
        with torch.no_grad():
            estimate = estimator(streams, mix_t.expand_as(streams)).mean()
        assert float(row["si-snr_estimate"]) == pytest.approx(float(estimate), abs=1e-3)


@pytest.mark.parametrize("debug", [False, True])
def test_estimator_without_separators_runs_only_under_debug(debug, caplog):
    """No separators: a real run refuses; a --debug run (upstream's recipe test) separates the data's own mixtures
    with an untrained Conv-TasNet, with a warning, and trains the estimator on its oracle SI-SNR."""
    import speechbrain as sb

    from modules.data import collate
    from modules.evaluation.sisnr_training import SISNREstimatorBrain

    torch.manual_seed(0)
    brain = SISNREstimatorBrain(
        {"estimator": BlindSISNREstimator(latent_dim=8, hidden=16)},
        hparams={"separators": [], "sample_rate": 8000},
        run_opts={"device": "cpu", "debug": debug},
    )
    items = [{"id": i, "s1_sig": torch.randn(1600), "s2_sig": torch.randn(1600)} for i in "ab"]
    batch = collate([dict(item, mix_sig=item["s1_sig"] + item["s2_sig"]) for item in items])
    if not debug:
        with pytest.raises(ValueError, match="separators: give the trained runs"):
            brain.compute_forward(batch, sb.Stage.TRAIN)
        return
    with caplog.at_level("WARNING"):
        outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert "untrained Conv-TasNet" in caplog.text
    assert outputs.oracle.shape == outputs.compressed.shape == (2, 2)
    loss = brain.compute_objectives(outputs, batch, sb.Stage.TRAIN)
    loss.backward()
    assert torch.isfinite(loss) and brain.modules.estimator.encoder.cnn1.conv.weight.grad is not None


# ------------------------------------------------------------------ the REAL-M test stage of a recipe (issue 22)
corpora = context_aware.corpora  # the mini LibriMix / LRS2Mix / REAL-M fixture of the context-aware tests


def _separations_at(rows, folder, rate):
    """REAL-M's own separations of ``rows`` written as ``<ID>_s<k>.wav`` at ``rate`` (a run's separations_realm/)."""
    from modules.audio import resample

    folder.mkdir(parents=True)
    for row in rows:
        for k in (1, 2):
            signal, orig = soundfile.read(row[f"sep{k}_wav"])
            soundfile.write(folder / f"{row['ID']}_s{k}.wav", resample(signal, orig, rate), rate, subtype="FLOAT")
    return folder


class FakeBrain:
    """What :func:`evaluate_test_stage` reads of a Brain: ``hparams`` (a namespace, as SpeechBrain's) and ``device``."""

    def __init__(self, output_folder, **hparams):
        from types import SimpleNamespace

        self.hparams = SimpleNamespace(output_folder=str(output_folder), **hparams)
        self.device = "cpu"


def test_separations_at_the_recipe_rate_are_scored_at_the_mixture_rate(realm, tmp_path, monkeypatch):
    from modules.evaluation.realm import FolderSystem, evaluate_separations

    monkeypatch.setattr("modules.evaluation.asr.make_asr", lambda spec, **kwargs: LoudnessASR())
    rows = read_manifest(realm["test"], realm["data"])
    mixture, rate = soundfile.read(rows[0]["mix_wav"])
    at_16k = _separations_at(rows, tmp_path / "seps16k", 16000)
    streams = FolderSystem("x", at_16k).streams(rows[0], mixture, rate)
    assert rate == 8000 and [abs(len(s) - len(mixture)) <= 1 for s in streams] == [True, True]
    reference, _ = soundfile.read(rows[0]["sep1_wav"])
    assert np.corrcoef(streams[0][: len(reference)], reference[: len(streams[0])])[0, 1] > 0.99
    summary = evaluate_separations(realm["test"], at_16k, tmp_path / "eval", data_folder=realm["data"],
                                   asr=["pocketsphinx"], use_dnsmos=False)  # fmt: skip
    assert set(summary) == {"n_mixtures", "pocketsphinx_wer"} and summary["n_mixtures"] == len(rows)
    assert (tmp_path / "eval" / "separated" / "results.csv").is_file()
    with pytest.raises(FileNotFoundError, match="no folder of separations"):
        evaluate_separations(realm["test"], tmp_path / "absent", tmp_path / "eval", data_folder=realm["data"])


def test_test_stage_adds_scores_to_the_run_summary_and_the_paper_tables(realm, tmp_path, monkeypatch):
    from modules.evaluation.realm import evaluate_test_stage
    from modules.evaluation.realm_figure import draw_realm_figure
    from modules.evaluation.realm_figure import main as figure_main
    from modules.results import collect_runs, fill_tables

    monkeypatch.setattr("modules.evaluation.asr.make_asr", lambda spec, **kwargs: LoudnessASR())
    rows = read_manifest(realm["test"], realm["data"])
    run = tmp_path / "run"
    _separations_at(rows, run / "separations_realm", 16000)
    (run / "test_summary_realm.json").write_text(json.dumps({"test_set": "realm", "n_mixtures": len(rows)}))
    (run / "test_summary_realm.md").write_text("Test set realm\n")
    (run / "hyperparams.yaml").write_text("# Generated\n# /x/recipes/LibriMix/context_aware/hparams/convtasnet.yaml\n"
                                          "target: hybrid\nssl_model: hubert\n")  # fmt: skip
    sets = {"realm": {"manifest": realm["test"], "data_folder": realm["data"]}}
    written = ["test_results.csv", "test_results_realm.csv"]
    assert evaluate_test_stage(FakeBrain(run, extra_test_sets=sets, realm_eval=False), written) is None
    assert evaluate_test_stage(FakeBrain(run, extra_test_sets=sets), written[:1]) is None  # REAL-M not tested
    assert evaluate_test_stage(FakeBrain(tmp_path / "none", extra_test_sets=sets), written) is None  # no separations
    assert not (run / "evaluation_realm").exists()
    brain = FakeBrain(run, extra_test_sets=sets, realm_asr=["pocketsphinx"], realm_dnsmos=False)
    scores = evaluate_test_stage(brain, written)
    summary = json.loads((run / "test_summary_realm.json").read_text())
    assert summary["pocketsphinx_wer"] == scores["pocketsphinx_wer"] and summary["n_mixtures"] == len(rows)
    assert "WER pocketsphinx (%)" in (run / "test_summary_realm.md").read_text()
    with open(run / "evaluation_realm" / "separated" / "results.csv", newline="") as f:
        assert [r["ID"] for r in csv.DictReader(f)] == [r["ID"] for r in rows]
    # the collector fills a paper-table row from it; the figure draws its bar
    row = {"label": "Hybrid", "match": {"method": "context_aware", "target": "hybrid"}, "test_set": "realm"}
    spec = {"tables": [{"title": "Fig. 2", "metrics": ["pocketsphinx_wer"], "rows": [row]}]}
    (_, _, [filled]), = fill_tables(spec, collect_runs([tmp_path]))  # fmt: skip
    assert filled["n_runs"] == 1 and filled["pocketsphinx_wer measured"] == pytest.approx(scores["pocketsphinx_wer"])
    bars = draw_realm_figure([tmp_path], tmp_path / "fig2.png")
    assert bars == {"convtasnet (hybrid, hubert)": {"pocketsphinx_wer": scores["pocketsphinx_wer"]}}
    assert (tmp_path / "fig2.png").stat().st_size > 0
    assert figure_main([str(tmp_path / "run" / "evaluation_realm"), "--output", str(tmp_path / "x.png")]) == 2
    # a recogniser that cannot be loaded: the separations stay, the error is logged, nothing is written
    monkeypatch.undo()
    failing = FakeBrain(run, extra_test_sets=sets, realm_asr=["speechbrain:nobody-here/asr-absent"], realm_dnsmos=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert evaluate_test_stage(failing, written) is None


def test_context_aware_test_stage_scores_realm_with_pocketsphinx(corpora, tmp_path):
    """A tiny context-aware baseline run through its REAL-M test stage (PocketSphinx only: no DNSMOS here)."""
    out = tmp_path / "out"
    options = ["--realm_eval=True", "--realm_dnsmos=False"]
    argv = context_aware.recipe_argv(corpora, out, "baseline_convtasnet.yaml", *options)
    context_aware.run_context_aware(context_aware.RECIPE, argv)
    summary = json.loads((out / "test_summary_realm.json").read_text())
    assert summary["n_scored"] == 0 and 0 <= summary["pocketsphinx_wer"] and "dnsmos_ovrl" not in summary
    assert (out / "realm_wer.png").stat().st_size > 0
    assert "pocketsphinx_wer" in (out / "results_table.md").read_text()
