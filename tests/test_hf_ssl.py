"""Pretrained SSL models through SpeechBrain's Hugging Face integration (issue 21): context-aware teachers, DIP
comparison frontends, the teacher-target cache key, ``--ssl_layers`` overrides and the ``--debug`` stand-in.

Nothing is downloaded: tiny random ``transformers`` models are saved to temporary folders and loaded through the
same code path as a hub id (``modules.models.ssl``); a made-up hub id is tried with the hub switched offline.
"""

import pytest
import torch
from conftest import REPO
from hyperpyyaml import load_hyperpyyaml

from modules.context_aware import GroupStageBrain, TeacherCache, audio_digest
from modules.models.ssl import (
    HF_MODEL_TYPES,
    PAPER_LAYERS,
    SSLFrontend,
    SSLUnavailableError,
    build_teacher,
    load_hf_ssl,
    load_ssl_backbone,
    save_tiny_hf_model,
)
from modules.recipe import declared_stages, lift_training_block, parse_arguments, stage_overrides

CONTEXT_AWARE = REPO / "recipes" / "LibriMix" / "context_aware"
DIP = REPO / "recipes" / "LibriMix" / "dip"
TYPES = sorted(HF_MODEL_TYPES)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    """A tiny random model folder per type (what a hub download holds); wav2vec2's normalises its input."""
    root = tmp_path_factory.mktemp("hf_ssl")
    return {t: save_tiny_hf_model(t, root / t, seed=i, do_normalize=t == "wav2vec2") for i, t in enumerate(TYPES)}


@pytest.fixture
def offline(monkeypatch):
    """The hub unreachable, as on a machine without internet (no network call is made)."""
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)


def direct_forward(folder, wavs):
    """``transformers``' own forward of a folder: its feature extractor, then the model (hidden states, CNN)."""
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    inputs = AutoFeatureExtractor.from_pretrained(folder)(list(wavs.numpy()), sampling_rate=16000,
                                                          return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        states = model(inputs.input_values, output_hidden_states=True).hidden_states
        cnn = model.feature_extractor(inputs.input_values).transpose(1, 2)
    return states, cnn


# ------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("model_type", TYPES)
def test_each_model_type_loads_and_matches_transformers(tiny_folders, model_type):
    """The recipe path (the DIP yaml's SSLFrontend, the group yaml's build_teacher) gives transformers' layers."""
    folder = tiny_folders[model_type]
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.05
    states, cnn = direct_forward(folder, wavs)
    frontend = SSLFrontend(folder, model_type)
    assert (frontend.embed_dim, frontend.num_layers, frontend.loaded_from) == (16, 12, folder)
    assert not frontend.train().training and not any(p.requires_grad for p in frontend.parameters())
    got = frontend(wavs, layers=[0, 9, 12])
    assert got.shape == (3, 2, 24, 16)  # 8000 samples: 24 frames of 20 ms
    for i, k in enumerate((0, 9, 12)):
        torch.testing.assert_close(got[i], states[k], rtol=1e-4, atol=1e-4)
    if model_type == "unispeech_sat":  # not a teacher of the context-aware paper
        return
    teacher = build_teacher(model_type, taps=["mel", "phoneme", "word"], loader="huggingface", hub=folder)
    assert teacher.layers == PAPER_LAYERS[model_type]
    out = teacher(wavs)
    torch.testing.assert_close(out["mel"], cnn, rtol=1e-4, atol=1e-4)  # the CNN output, before the projection
    for tap in ("phoneme", "word"):  # transformer layer k is hidden_states[k]
        torch.testing.assert_close(out[tap], states[PAPER_LAYERS[model_type][tap]], rtol=1e-4, atol=1e-4)
    assert teacher.tap_dims == {"mel": 16, "phoneme": 16, "word": 16}
    mel_only = build_teacher(model_type, taps=["mel"], loader="huggingface", hub=folder)  # the CNN alone runs
    torch.testing.assert_close(mel_only(wavs)["mel"], cnn, rtol=1e-4, atol=1e-4)


def test_wrong_model_type_and_missing_folder(tiny_folders, tmp_path):
    with pytest.raises(ValueError, match="expects 'wavlm'"):
        load_hf_ssl(tiny_folders["hubert"], "wavlm")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_hf_ssl(str(tmp_path / "no_such_folder"), "wavlm")


def test_unreachable_hub_id_is_one_clear_line_and_a_debug_stand_in(offline, tmp_path):
    hub_id = "made-up-org/no-such-ssl-model"
    with pytest.raises(SSLUnavailableError) as err:
        load_hf_ssl(hub_id, "wavlm", save_path=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and hub_id in message and "--ssl_hub=<folder>" in message
    stand_in = load_ssl_backbone(hub_id, "wavlm", save_path=str(tmp_path), unreachable="stand_in")
    assert stand_in.stand_in_reason == message and stand_in.loaded_from is None
    assert stand_in.model_type == "wavlm" and stand_in.num_layers == 12  # same type, every paper layer exists


# --------------------------------------------------------------------------------------------- cache
def test_cache_key_is_teacher_weights_layer_and_audio(tiny_folders, tmp_path):
    """Same inputs: a hit; another layer, other weights in the same folder or other samples: a miss; a file of the
    older format (keyed by path and length) is never read."""
    folder = tmp_path / "teacher"
    save_tiny_hf_model("hubert", folder, seed=0)
    teacher = build_teacher("hubert", taps=["word"], loader="huggingface", hub=str(folder))
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(1))
    digest = audio_digest(audio)
    targets = teacher(audio[None])["word"][0]
    cache = TeacherCache(tmp_path / "cache", teacher.identity, teacher.layers)
    assert cache.load(digest, "word") is None
    cache.store(digest, "word", targets)
    again = TeacherCache(tmp_path / "cache", teacher.identity, teacher.layers)
    torch.testing.assert_close(again.load(digest, "word").float(), targets, rtol=2e-3, atol=2e-3)
    assert again.hits == 1
    other_layer = TeacherCache(tmp_path / "cache", teacher.identity, {"word": 8})
    assert other_layer.load(digest, "word") is None
    changed = audio.clone()
    changed[100] += 1e-3  # same length (and, for the old cache, the same path): other samples
    assert cache.load(audio_digest(changed), "word") is None
    save_tiny_hf_model("hubert", folder, seed=1)  # new weights written over the same folder
    retrained = build_teacher("hubert", taps=["word"], loader="huggingface", hub=str(folder))
    assert retrained.identity != teacher.identity
    assert TeacherCache(tmp_path / "cache", retrained.identity, retrained.layers).load(digest, "word") is None
    # an entry of the older format (path and length, no key) where the new key's file would be: ignored
    stale = TeacherCache(tmp_path / "stale", teacher.identity, teacher.layers)
    path = stale.path(stale.key(digest, "word"))
    path.parent.mkdir(parents=True)
    torch.save({"source": "/data/s1/a.wav", "n_samples": 16000, "tap": "word", "targets": targets.half()}, path)
    assert stale.load(digest, "word") is None and stale.misses == 1
    old_layout = tmp_path / "stale" / "hubert-base-0123" / "word" / "ab"  # the older version's folders: never looked at
    old_layout.mkdir(parents=True)
    torch.save({"source": "x", "n_samples": 16000, "tap": "word", "targets": targets.half()}, old_layout / "ab.pt")
    assert stale.load(digest, "word") is None


# ------------------------------------------------------------------------ context-aware recipe, overrides
def group_hparams(argv):
    """The group stage's hparams as the stage runner loads them from a system command line (tiny Conv-TasNet)."""
    argv = ["hparams/convtasnet.yaml", "--data_folder=.", "--overrides_file=hparams/tiny.yaml", *argv]
    hparams_file, _, overrides = parse_arguments(argv, str(CONTEXT_AWARE))
    stages = declared_stages(hparams_file, overrides)
    group = stage_overrides(stages, str(CONTEXT_AWARE / "train.py"), argv)[0]
    with open(stages[0]["hparams"], encoding="utf-8") as f:
        return lift_training_block(load_hyperpyyaml(f, group))


def group_brain(hparams, debug):
    return GroupStageBrain(modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams,
                           run_opts={"device": "cpu", "debug": debug})  # fmt: skip


def test_ssl_layers_override_from_the_command_line(tiny_folders, tmp_path):
    """``--ssl_layers="{word: 8}"`` on the system's command line reaches the group stage's teacher (per tap)."""
    argv = [f"--ssl_hub={tiny_folders['hubert']}", f"--output_folder={tmp_path}", "--ssl_layers={word: 8}"]
    hparams = group_hparams(argv)
    assert hparams["teacher"].layers == {"mel": "cnn", "phoneme": 11, "word": 8}
    assert hparams["teacher"].backbone.loaded_from == tiny_folders["hubert"]
    default = group_hparams([f"--ssl_hub={tiny_folders['hubert']}", f"--output_folder={tmp_path}"])
    assert default["teacher"].layers == PAPER_LAYERS["hubert"]


def test_group_stage_debug_stand_in_and_real_run_refusal(offline, tmp_path, caplog):
    """A hub id that cannot be downloaded: the yaml loads with a tiny random teacher of the same type; a --debug
    Brain warns and goes on, a real run stops with the one-line error."""
    argv = ["--ssl_model=wavlm", "--ssl_hub=made-up-org/no-such-wavlm", f"--output_folder={tmp_path}",
            f"--ssl_save_path={tmp_path / 'pm'}"]  # fmt: skip
    hparams = group_hparams(argv)
    teacher = hparams["teacher"]
    assert teacher.backbone.model_type == "wavlm" and "made-up-org/no-such-wavlm" in teacher.stand_in_reason
    with caplog.at_level("WARNING", logger="modules.context_aware"):
        group_brain(hparams, debug=True)
    assert "--debug run" in caplog.text
    with pytest.raises(OSError, match="--ssl_hub=<folder>"):
        group_brain(hparams, debug=False)


# ------------------------------------------------------------------------------------ DIP comparison rows
DIP_ROWS = {
    "convtasnet_wav2vec2.yaml": ("wav2vec2", "facebook/wav2vec2-base"),
    "convtasnet_hubert.yaml": ("hubert", "facebook/hubert-base-ls960"),
    "convtasnet_unispeech_sat.yaml": ("unispeech_sat", "microsoft/unispeech-sat-base"),
    "convtasnet_wavlm.yaml": ("wavlm", "microsoft/wavlm-base"),
    "convtasnet_unispeech_sat_plus.yaml": ("unispeech_sat", "microsoft/unispeech-sat-base-plus"),
    "convtasnet_wavlm_plus.yaml": ("wavlm", "microsoft/wavlm-base-plus"),
}


def test_dip_comparison_yamls_name_their_row_and_checkpoint():
    import re

    for name, (model_type, hub) in DIP_ROWS.items():
        text = (DIP / "hparams" / name).read_text()
        header = text.split("seed:", 1)[0]
        assert "Table IV" in header and "Table V" in header and hub in " ".join(header.split()), name
        keys = dict(re.findall(r"^(ssl_model_type|ssl_hub): (\S+)", text, flags=re.M))
        assert keys == {"ssl_model_type": model_type, "ssl_hub": hub}, name


@pytest.mark.slow
@pytest.mark.parametrize("yaml", ["convtasnet_wavlm_plus.yaml", "bilstm_wavlm_plus.yaml"])  # Tables IV-V, Table VI
def test_dip_comparison_frontend_tiny_run(yaml, tiny_folders, tmp_path):
    """prep -> train -> test of a WavLM+ row with its hub id replaced by a tiny local folder."""
    from data_prep.mini import make_mini_librimix
    from modules.dip import DIPBrain
    from modules.recipe import run_recipe

    corpus = make_mini_librimix(tmp_path / "data", seed=0, n_train=2, n_valid=1, n_test=2, sample_rates=(16000,),
                                modes=("min",))  # fmt: skip
    out = tmp_path / "out"
    argv = [f"hparams/{yaml}", f"--data_folder={corpus}", f"--output_folder={out}",
            "--overrides_file=hparams/tiny.yaml", "--N_epochs=1", "--device=cpu", "--noprogressbar",
            "--training_signal_len=16000", "--vox2mix_folder=.", "--lrs2mix_folder=.", "--realm_folder=.",
            "--extra_test_sets=null", "--perceptual_metrics=False", f"--ssl_hub={tiny_folders['wavlm']}"]  # fmt: skip
    brain = run_recipe(DIPBrain, str(DIP / "train.py"), argv)
    assert type(brain.modules.frontend).__name__ == "SSLFrontend" and brain.modules.frontend.loaded_from
    rows = (out / "test_results.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[-1].startswith("avg,2,")
    assert (out / "frontend_checkpoint.txt").read_text() == f"frontend\t{tiny_folders['wavlm']}\n"
    assert not list((out / "save").rglob("frontend*.ckpt"))  # frozen: not checkpointed
