"""Export -> SpeechBrain's own loader -> separate gives the trained run's output, for every model family."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from tiny_runs import COMMON, RUNS, tiny_run

from modules.export import export_run, load_exported, main
from modules.inference import import_object, load_model, recipe_brain_class, separate_signal
from modules.recipe import load_recipe, make_brain

#: run (tests/tiny_runs.py) -> expected export family
FAMILY = {"convtasnet": "sepformer", "dprnn": "sepformer", "sepformer": "sepformer", "nass": "recipe"}


@pytest.fixture(scope="module")
def runs():
    """One tiny trained run (one epoch on a mini WHAM!) per model family."""
    return {name: tiny_run(name) for name in FAMILY}


def recipe_reference(name, run):
    """The run's separator as the recipe's own test stage loads it (its yaml, its checkpointer, its Brain)."""
    method, hparams, extra = RUNS[name]
    recipe = REPO / "recipes" / "WHAM" / method / "train.py"
    argv = [f"hparams/{hparams}", f"--output_folder={run}", "--data_folder=.", "--overrides_file=hparams/tiny.yaml"]
    hp, run_opts = load_recipe([*argv, *COMMON, *extra, "--device=cpu"], str(recipe), experiment_directory=False)
    brain = make_brain(import_object(recipe_brain_class(recipe)), hp, run_opts, with_optimizer=False)
    brain.on_evaluate_start(max_key="si-snr")
    brain.modules.eval()
    return brain


@pytest.mark.parametrize("name", list(FAMILY))
def test_export_loads_with_speechbrain_and_separates_as_the_run(runs, tmp_path, name):
    info = export_run(runs[name], tmp_path / "model")
    assert info["family"] == FAMILY[name]
    folder = tmp_path / "model"
    files = sorted(p.name for p in folder.iterdir())
    x = torch.randn(2, 12000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        expected_speakers, expected_noise = recipe_reference(name, runs[name]).separate_speakers(x)
    if info["family"] == "sepformer":
        from speechbrain.inference.separation import SepformerSeparation

        assert files == ["README.md", "decoder.ckpt", "encoder.ckpt", "export_info.json", "hyperparams.yaml",
                         "masknet.ckpt"]  # fmt: skip
        text = (folder / "hyperparams.yaml").read_text()
        assert "!new:modules." not in text and "!new:speechbrain." in text  # SpeechBrain classes only
        model = SepformerSeparation.from_hparams(source=str(folder), run_opts={"device": "cpu"})
        speakers, noise = model.separate_batch(x), None
    else:
        from speechbrain.inference.interfaces import foreign_class

        assert files == ["README.md", "custom_interface.py", "export_info.json", "hyperparams.yaml", "separator.ckpt"]
        model = foreign_class(source=str(folder), pymodule_file="custom_interface.py", classname="RecipeSeparation")
        speakers, noise = model.separate_with_noise(x)
        assert noise.shape == (2, 12000)
        torch.testing.assert_close(noise, expected_noise, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.separate_batch(x), expected_speakers, rtol=1e-5, atol=1e-6)
    assert speakers.shape == expected_speakers.shape == (2, 12000, 2)
    torch.testing.assert_close(speakers, expected_speakers, rtol=1e-5, atol=1e-6)
    # and the separate tool reads the export folder as it reads the run
    signal = x[0].numpy().astype(np.float64)
    from_export = separate_signal(load_model(folder), signal, 8000, chunk_seconds=0.5, overlap_seconds=0.1)
    from_run = separate_signal(load_model(runs[name]), signal, 8000, chunk_seconds=0.5, overlap_seconds=0.1)
    np.testing.assert_allclose(from_export.speakers, from_run.speakers, rtol=1e-5, atol=1e-6)


def test_export_folder_is_self_contained_and_offline(runs, tmp_path, monkeypatch):
    """The folder can move; nothing is fetched (a network fetch would fail: no URL, no hub id)."""
    export_run(runs["nass"], tmp_path / "a")
    moved = tmp_path / "elsewhere" / "model"
    moved.parent.mkdir()
    (tmp_path / "a").rename(moved)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    model = load_exported(moved)
    assert not (tmp_path / "pretrained_models").exists()  # no copies collected in the working directory
    info = json.loads((moved / "export_info.json").read_text())
    assert info["brain_class"] == "modules.nass.NASSBrain" and info["n_speakers"] == 2 and info["noise_output"]
    files = model.interface.separate_file(str(_write_wav(tmp_path / "in.wav")), str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["in_s1.wav", "in_s2.wav", "in_noise.wav"]


def _write_wav(path):
    import soundfile

    soundfile.write(path, np.random.default_rng(0).standard_normal(20000) * 0.1, 16000)
    return path


def test_export_command_line(runs, tmp_path, capsys):
    assert main([str(runs["convtasnet"]), str(tmp_path / "m")]) == 0
    assert "sepformer family" in capsys.readouterr().out
    assert main([str(runs["convtasnet"]), str(tmp_path / "m")]) == 2  # not overwritten silently
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(runs["convtasnet"]), str(tmp_path / "m"), "--overwrite", "--family=recipe"]) == 0
    assert (tmp_path / "m" / "custom_interface.py").exists()  # any model can take the generic interface
    assert main([str(tmp_path), str(tmp_path / "n")]) == 2
