"""CrashSafeCheckpointer: interrupted saves and deletions never yield a loadable-looking broken checkpoint."""

import pytest
import torch

from modules.checkpoints import CrashSafeCheckpointer


def make(tmp_path, value):
    model = torch.nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.fill_(value)
    other = torch.nn.Linear(2, 2)
    return model, CrashSafeCheckpointer(tmp_path, recoverables={"model": model, "other": other})


def test_interrupted_save_is_ignored_and_cleaned(tmp_path, monkeypatch):
    model, ckpt = make(tmp_path, 1.0)
    ckpt.save_checkpoint(meta={"n": 1})

    with torch.no_grad():
        model.weight.fill_(2.0)
    calls = {"n": 0}
    real_save = torch.save

    def dying_save(obj, path, *a, **k):  # the process "dies" after the first parameter file
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"n": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert len(list(tmp_path.glob("CKPT+*"))) == 2  # the broken folder is on disk ...

    fresh_model, fresh = make(tmp_path, 0.0)
    recovered = fresh.recover_if_possible()
    assert recovered.meta["n"] == 1  # ... but never loaded
    assert torch.all(fresh_model.weight == 1.0)
    assert len(list(tmp_path.glob("CKPT+*"))) == 1  # and it was removed


def test_interrupted_deletion_is_ignored(tmp_path):
    _, ckpt = make(tmp_path, 1.0)
    first = ckpt.save_checkpoint(meta={"n": 1}, name="first")
    ckpt.save_checkpoint(meta={"n": 2}, name="second")
    # an rmtree killed halfway: one parameter file gone, CKPT.yaml still there
    (first.path.parent / "CKPT+second" / "other.ckpt").unlink()
    assert [c.meta["n"] for c in ckpt.list_checkpoints()] == [1]
    assert ckpt.recover_if_possible().meta["n"] == 1


def test_metadata_lists_parameter_files(tmp_path):
    _, ckpt = make(tmp_path, 1.0)
    saved = ckpt.save_checkpoint(meta={"n": 1})
    meta = ckpt.list_checkpoints()[0].meta
    assert meta["paramfiles"] == ["model.ckpt", "other.ckpt"]
    assert not list(saved.path.glob("*.pending"))


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A save that fails part-way (no space left): the partial folder goes, the previous one loads."""
    import errno

    from modules.checkpoints import CheckpointSaveError

    model, ckpt = make(tmp_path, 1.0)
    ckpt.save_and_keep_only(meta={"n": 1}, max_keys=["n"])
    with torch.no_grad():
        model.weight.fill_(2.0)
    calls = {"n": 0}
    real_save = torch.save

    def full_disk(obj, path, *a, **k):  # the second parameter file does not fit
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError) as failure:
        ckpt.save_and_keep_only(meta={"n": 2}, max_keys=["n"])
    monkeypatch.setattr(torch, "save", real_save)
    message = str(failure.value)
    assert "No space left on device" in message and "is intact" in message and "Free at least" in message
    assert "\n" not in message
    assert len(list(tmp_path.glob("CKPT+*"))) == 1  # the partial folder is gone, the old one kept

    fresh_model, fresh = make(tmp_path, 0.0)  # the rerun resumes from the previous checkpoint
    assert fresh.recover_if_possible().meta["n"] == 1
    assert torch.all(fresh_model.weight == 1.0)
