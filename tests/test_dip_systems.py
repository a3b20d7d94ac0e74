"""DIP systems 11-13: the pretraining corpus of a ``*_dip.yaml`` is set by its ``pretrain_*`` keys only.

The pretraining stage's entry ``fixed`` values (``modules.recipe.declared_stages``) are not replaced by the
command line: ``--train_set`` and ``--vox2mix_mixing_list`` stay the separator's.
"""

import os

import pytest
from conftest import REPO

from modules.recipe import declared_stages, parse_arguments, stage_overrides
from modules.reproduce import compose, load_rows

HPARAMS = REPO / "recipes/LibriMix/dip/hparams"
RECIPE = str(REPO / "recipes/LibriMix/dip/train.py")
SYSTEMS = sorted(p.name for p in HPARAMS.glob("*_dip.yaml"))


def plans(yaml_name, *cli):
    """``{stage: the overrides it runs with}`` as ``modules.recipe.run_stages`` merges them."""
    argv = [str(HPARAMS / yaml_name), *cli]
    hparams_file, _, overrides = parse_arguments(argv, str(HPARAMS.parent))
    stages = declared_stages(hparams_file, overrides)
    out = {}
    for i, (stage, given) in enumerate(zip(stages, stage_overrides(stages, RECIPE, argv))):
        mine = {**stage["overrides"], **given}
        if i > 0 and stage["handover"] not in given:
            mine[stage["handover"]] = stages[i - 1]["output_folder"]
        out[stage["name"]] = (os.path.basename(stage["hparams"]), mine)
    return out


def test_system_yamls_are_the_ones_with_a_pretraining_stage():
    assert SYSTEMS == ["bilstm_dip.yaml", "convtasnet_dip.yaml", "dprnn_dip.yaml", "mossformer_dip.yaml",
                       "sepformer_dip.yaml"]  # fmt: skip


def test_command_line_train_set_is_the_separators_and_pretrain_keys_set_the_pretraining():
    got = plans("convtasnet_dip.yaml", "--train_set=train-360")
    assert list(got) == ["pretrain", "separate"]
    (pre_yaml, pre), (sep_yaml, sep) = got["pretrain"], got["separate"]
    assert pre_yaml == "mic.yaml" and sep_yaml == "convtasnet_dip.yaml"
    assert pre["train_set"] == "train-100" and sep["train_set"] == "train-360"
    got = plans("convtasnet_dip.yaml", "--pretrain_train_set=train-360", "--vox2mix_mixing_list=/lists/test")
    pre, sep = got["pretrain"][1], got["separate"][1]
    assert pre["train_set"] == "train-360" and "train_set" not in sep  # the separator: the yaml's train-100
    assert pre["vox2mix_mixing_list"] == sep["vox2mix_mixing_list"] == "/lists/test"  # by default the same lists
    got = plans("convtasnet_dip.yaml", "--pretrain_vox2mix_mixing_list=/lists/train253", "--vox2mix_mixing_list=/t")
    assert got["pretrain"][1]["vox2mix_mixing_list"] == "/lists/train253"
    assert got["separate"][1]["vox2mix_mixing_list"] == "/t"


@pytest.mark.parametrize("yaml_name", SYSTEMS)
def test_every_system_yaml_hands_the_pretrain_keys_to_its_pretraining_only(yaml_name):
    got = plans(yaml_name, "--train_set=train-360", "--pretrain_vox2mix_mixing_list=/l253", "--output_folder=/out")
    assert list(got) == ["pretrain", "separate"]
    (pre_yaml, pre), (_, sep) = got["pretrain"], got["separate"]
    assert pre_yaml == "mic.yaml"
    assert (pre["train_set"], pre["vox2mix_mixing_list"]) == ("train-100", "/l253")
    assert sep["train_set"] == "train-360" and "vox2mix_mixing_list" not in sep
    assert sep["pretrained_frontend"] == "/out/pretrain"


def test_systems_11_to_13_rows_are_runnable_and_resolve(tmp_path):
    rows = [r for r in load_rows() if r.paper == "DIP" and r.run is not None]
    chosen = {r.run.key(): r.run for r in rows if str(r.run.overrides.get("experiment_name", "")).endswith(
        ("_sys11", "_sys12", "_500h"))}  # fmt: skip
    names = {run.overrides["experiment_name"] for run in chosen.values()}
    assert names == {"convtasnet_dip_sys11", "convtasnet_dip_sys12", "convtasnet_dip_500h", "dprnn_dip_500h",
                     "sepformer_dip_500h", "bilstm_dip_500h"}  # fmt: skip
    for i, run in enumerate(chosen.values()):
        hparams = compose(run, tmp_path / str(i), build=False)  # the last stage's, references resolved
        assert hparams["train_set"] == "train-100"  # the separator of every paper row trains on train-100
        assert ("pretrain_vox2mix_mixing_list" in run.data) == (not run.overrides["experiment_name"].endswith("11"))
