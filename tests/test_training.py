"""Stage hand-off, LR schedules and early stopping of the shared training loop."""

import os

import pytest
import torch
from speechbrain.nnet.schedulers import LinearWarmupScheduler, ReduceLROnPlateau
from test_brain import make_batch, tiny_separator

from modules.brain import SeparationBrain
from modules.checkpoints import CrashSafeCheckpointer
from modules.recipe import initialise_modules
from modules.training import EpochCounter, find_best_checkpoint, initialise_from, scheduler_interval


def saved_run(tmp_path, scores=(1.0, 3.0, 2.0)):
    """A run folder with one checkpoint per score; returns the separators saved, in order."""
    separators = []
    checkpointer = CrashSafeCheckpointer(tmp_path / "run" / "save")
    for i, score in enumerate(scores):
        sep = tiny_separator(seed=i)
        checkpointer.recoverables = {"separator": sep}
        checkpointer.save_checkpoint(meta={"si-snr": score}, name=f"ckpt{i}")
        separators.append(sep)
    return tmp_path / "run", separators


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_best_checkpoint_of_a_run_by_key_and_direction(tmp_path):
    run, _ = saved_run(tmp_path)
    assert find_best_checkpoint(run, "si-snr", "max").meta["si-snr"] == 3.0
    assert find_best_checkpoint(run / "save", "si-snr", "min").meta["si-snr"] == 1.0
    one = next(p for p in (run / "save").iterdir() if p.name.endswith("ckpt2"))
    assert find_best_checkpoint(one).meta["si-snr"] == 2.0  # a CKPT+ folder itself
    with pytest.raises(FileNotFoundError, match="no such run"):
        find_best_checkpoint(tmp_path / "nowhere")


def test_initialised_model_has_the_runs_best_weights(tmp_path):
    run, saved = saved_run(tmp_path)
    target = tiny_separator(seed=9)
    assert not same_weights(target, saved[1])
    initialise_from(run, {"separator": target}, collect_in=str(tmp_path / "links"))
    assert same_weights(target, saved[1])  # the si-snr 3.0 checkpoint


def test_initialise_from_maps_names_and_reports_mistakes(tmp_path):
    run, saved = saved_run(tmp_path)
    extractor = tiny_separator(seed=7)
    initialise_from(run, {"context_extractor": extractor}, mapping={"context_extractor": "separator"},
                    collect_in=str(tmp_path / "l1"))  # fmt: skip
    assert same_weights(extractor, saved[1])
    with pytest.raises(KeyError, match="has no"):
        initialise_from(run, {"a": extractor}, mapping={"a": "missing"}, collect_in=str(tmp_path / "l2"))
    with pytest.raises(KeyError, match="does not have"):
        initialise_from(run, {"a": extractor}, mapping={"b": "separator"}, collect_in=str(tmp_path / "l3"))
    with pytest.raises(KeyError, match="holds none"):
        initialise_from(run, {"other": extractor}, collect_in=str(tmp_path / "l4"))


def test_recipe_hand_off_loads_frozen_and_trainable_modules_and_records_it(tmp_path):
    run, saved = saved_run(tmp_path)
    out = tmp_path / "stage2"
    out.mkdir()
    hparams = {"sample_rate": 8000, "init_from": str(run), "frozen_modules": ["teacher"], "output_folder": str(out)}
    teacher, student = tiny_separator(seed=5), tiny_separator(seed=6)
    brain = SeparationBrain({"separator": student, "teacher": teacher}, hparams=hparams, run_opts={"device": "cpu"})
    hparams["init_modules"] = {"teacher": "separator", "separator": "separator"}
    loaded = initialise_modules(brain, hparams)
    assert sorted(loaded) == ["separator", "teacher"]
    assert same_weights(teacher, saved[1]) and same_weights(student, saved[1])
    assert "teacher\t" in (out / "init_from.txt").read_text()


def test_scheduler_interval():
    assert scheduler_interval(None) is None
    assert scheduler_interval(ReduceLROnPlateau()) == "epoch"
    assert scheduler_interval(LinearWarmupScheduler(1.0, 5, 50)) == "step"
    with pytest.raises(TypeError):
        scheduler_interval(3)


def test_warmup_schedule_advances_once_per_optimiser_step():
    torch.manual_seed(0)
    scheduler = LinearWarmupScheduler(1e-3, 4, 100)
    brain = SeparationBrain(
        {"separator": tiny_separator()},
        opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
        hparams={"sample_rate": 8000, "lr_scheduler": scheduler},
        run_opts={"device": "cpu", "grad_accumulation_factor": 2},
    )
    brain.init_optimizers()
    for step in range(1, 7):
        brain.step = step
        brain.fit_batch(make_batch(seed=step))
    assert brain.optimizer_step == 3 and scheduler.current_step == 3
    assert brain.optimizer.param_groups[0]["lr"] == pytest.approx(scheduler.calculate_lr(3))


def test_early_stopping_counter_is_recoverable(tmp_path):
    counter = EpochCounter(limit=20, patience=3, direction="max")
    checkpointer = CrashSafeCheckpointer(tmp_path, {"counter": counter})
    for epoch in counter:
        counter.update_metric({1: 1.0, 2: 2.0}.get(epoch, 1.5))
        checkpointer.save_checkpoint(meta={"epoch": epoch})
        if epoch == 4:
            break
    resumed = EpochCounter(limit=20, patience=3, direction="max")
    CrashSafeCheckpointer(tmp_path, {"counter": resumed}).recover_if_possible()
    epochs = []
    for epoch in resumed:
        epochs.append(epoch)
        resumed.update_metric(1.5)
    assert epochs == [5]  # best at epoch 2, patience 3: stops after epoch 5
    assert not EpochCounter(limit=3).should_stop
    assert list(EpochCounter(limit=3)) == [1, 2, 3]


def test_hand_off_file_paths_are_absolute(tmp_path):
    run, _ = saved_run(tmp_path)
    loaded = initialise_from(run, {"separator": tiny_separator()}, collect_in=str(tmp_path / "links"))
    assert os.path.isfile(loaded["separator"])
