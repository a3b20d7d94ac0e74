"""Exporting a trained run as a model folder that SpeechBrain's own loaders read offline.

``export`` (``python -m modules.export <run folder> <export folder>``) writes the
form SpeechBrain model cards take:

* ``hyperparams.yaml``: the modules inference needs, built from the run's own
  yaml nodes, ``modules`` and a ``pretrainer`` whose loadables are those modules;
* ``<module>.ckpt``: their weights (the best checkpoint of the run by its
  ``best_key``; modules frozen during training, which are not in the run's
  checkpoints, are loaded from the run's ``init_from`` first);
* where the model is not one of SpeechBrain's inference classes,
  ``custom_interface.py`` with the interface class;
* ``export_info.json`` (what was exported, from where, how to load it) and a
  short ``README.md``.

Two families today:

``sepformer``
    A separator of the encoder / masker / decoder family
    (:class:`modules.models.MaskingSeparator` without a ``fusion`` module) whose
    outputs are all speakers, i.e. the baselines (Conv-TasNet, DPRNN,
    SepFormer). The folder is exactly an upstream separation model card
    (``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``, SpeechBrain classes
    only) and loads without this package::

        from speechbrain.inference.separation import SepformerSeparation
        model = SepformerSeparation.from_hparams(source="<export folder>")
        est_sources = model.separate_batch(mix)        # [B, T, n_spks]

``recipe``
    Every other model (NASS, whose noise output the Brain picks, and the
    DPCCN, DIP, context-aware and SADDEL families as they land): the run's
    modules that the Brain's ``separate_speakers`` calls, and
    ``custom_interface.py``'s ``RecipeSeparation``, which rebuilds the recipe's
    Brain around them, so the interface separates exactly as the run does (its
    ``split_outputs``). It needs this package installed (the models are its
    classes)::

        from speechbrain.inference.interfaces import foreign_class
        model = foreign_class(source="<export folder>", pymodule_file="custom_interface.py",
                              classname="RecipeSeparation")
        speakers = model.separate_batch(mix)            # [B, T, n_spks]
        speakers, noise = model.separate_with_noise(mix)  # noise: [B, T] or None
        model.separate_file("long.flac", "out/")        # chunked, any rate (modules.inference)

A new family plugs in with :func:`register_family` (a test on the loaded
Brain and a writer); a method whose Brain follows the chassis hooks needs none:
``recipe`` takes it as it is. :func:`modules.inference.load_model` loads an
exported folder through the same SpeechBrain loaders.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import torch

from modules.inference import EXPORT_INFO, Model, inference_yaml, load_run

__all__ = [
    "FAMILIES",
    "INTERFACE_TEMPLATE",
    "ExportedModel",
    "export_run",
    "inference_brain",
    "load_exported",
    "main",
    "modules_used_for_inference",
    "register_family",
]

logger = logging.getLogger(__name__)

INTERFACE_FILE = "custom_interface.py"
INTERFACE_CLASS = "RecipeSeparation"

#: ``custom_interface.py`` of the ``recipe`` family (written as it is into the export folder).
INTERFACE_TEMPLATE = '''"""SpeechBrain interface of a model exported by robust-sep-recipes (modules.export).

Load it offline with::

    from speechbrain.inference.interfaces import foreign_class
    model = foreign_class(source="<this folder>", pymodule_file="custom_interface.py", classname="RecipeSeparation")

The modules are those of the trained run; the recipe's Brain (``brain_class`` in
hyperparams.yaml) is rebuilt around them, so the outputs are split into
speakers and noise as the run does. Needs the robust-sep-recipes package.
"""

import torch
from speechbrain.inference.interfaces import Pretrained


class RecipeSeparation(Pretrained):
    """Separation with the Brain of the recipe that trained the model."""

    HPARAMS_NEEDED = ["sample_rate", "brain_class", "brain_hparams"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from modules.export import inference_brain

        self.brain = inference_brain(self.hparams.brain_class, self.mods, self.hparams.brain_hparams, self.device)

    @torch.no_grad()
    def separate_with_noise(self, mix, **conditioning):
        """``mix [B, T]`` at ``sample_rate`` -> ``(speakers [B, T, C], noise [B, T] or None)``."""
        conditioning = {k: v.to(self.device) for k, v in conditioning.items()}
        return tuple(self.brain.separate_speakers(mix.to(self.device), **conditioning))

    def separate_batch(self, mix, **conditioning):
        """``mix [B, T]`` at ``sample_rate`` -> speakers ``[B, T, C]`` (as SepformerSeparation)."""
        return self.separate_with_noise(mix, **conditioning)[0]

    def separate_file(self, path, output_folder, **options):
        """Separates a file of any length, rate and channels (modules.inference.separate_file); returns the files."""
        from modules.export import ExportedModel
        from modules.inference import separate_file

        return separate_file(ExportedModel(self), path, output_folder, **options).files

    def forward(self, mix, **conditioning):
        """Same as separate_batch."""
        return self.separate_batch(mix, **conditioning)
'''

#: Keys of a run's yaml that describe the training machine or run, not the model: left out of ``brain_hparams``.
RUN_KEYS = ("output_folder", "save_folder", "train_log", "data_folder", "train_data", "valid_data", "test_data")


def inference_brain(brain_class, modules, brain_hparams, device="cpu"):
    """The recipe's Brain around already loaded modules, for inference (no checkpointer, fp32).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from modules.models import MaskingSeparator
    >>> sep = MaskingSeparator(Encoder(kernel_size=16, out_channels=8), MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=3),
    ...                        Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8, bias=False))
    >>> hp = {"sample_rate": 8000, "noise_speaker": True, "noise_slot": "fixed"}
    >>> brain = inference_brain("modules.nass.NASSBrain", {"separator": sep}, hp)
    >>> speakers, noise = brain.separate_speakers(torch.randn(1, 800))
    >>> speakers.shape, noise.shape
    (torch.Size([1, 800, 2]), torch.Size([1, 800]))
    """
    from modules.inference import import_object

    cls = import_object(brain_class) if isinstance(brain_class, str) else brain_class
    hparams = dict(brain_hparams)
    hparams["frozen_modules"] = [m for m in hparams.get("frozen_modules") or [] if m in modules]
    core_logger = logging.getLogger("speechbrain.core")
    level = core_logger.level
    core_logger.setLevel(logging.ERROR)  # "no trainable parameters": expected, the interface froze them
    try:
        brain = cls(
            modules=dict(modules.items()),
            hparams=hparams,
            run_opts={"device": str(device), "precision": "fp32", "eval_precision": "fp32"},
        )
    finally:
        core_logger.setLevel(level)
    brain.modules.eval()
    return brain


class ExportedModel(Model):
    """An interface loaded by SpeechBrain (``SepformerSeparation`` or ``RecipeSeparation``) as a :class:`Model`."""

    def __init__(self, interface, conditioning=()):
        self.interface = interface
        self.sample_rate = int(interface.hparams.sample_rate)
        self.device = torch.device(interface.device)
        brain = getattr(interface, "brain", None)
        self.conditioning = tuple(getattr(brain.hparams, "conditioning", None) or ()) if brain else tuple(conditioning)

    def separate_batch(self, mix, **conditioning):
        """``(speakers [B, T, C], noise or None)`` of a batch of mixtures, through the exported interface."""
        if hasattr(self.interface, "separate_with_noise"):
            return self.interface.separate_with_noise(mix, **conditioning)
        return self.interface.separate_batch(mix), None


def load_exported(folder, device="cpu"):
    """An exported folder, loaded with SpeechBrain's own loader, as an :class:`ExportedModel`."""
    folder = Path(folder)
    info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    run_opts = {"device": str(device)}
    if info["interface"] == "SepformerSeparation":
        from speechbrain.inference.separation import SepformerSeparation

        interface = SepformerSeparation.from_hparams(source=str(folder), run_opts=run_opts)
    else:
        from speechbrain.inference.interfaces import foreign_class

        interface = foreign_class(
            source=str(folder), pymodule_file=info["pymodule_file"], classname=info["classname"], run_opts=run_opts
        )
    return ExportedModel(interface)


# --------------------------------------------------------------------------- families
FAMILIES = []


def register_family(name, matches, write):
    """Adds an export family, tried before the ones registered earlier (``recipe`` is the fallback).

    Arguments
    ---------
    name : str
    matches : callable
        ``matches(brain, used_modules) -> bool`` on the loaded run's Brain.
    write : callable
        ``write(brain, used_modules, run_yaml_text, folder) -> dict`` writes
        ``hyperparams.yaml``, the checkpoints (and an interface file) into
        ``folder``; returns the ``export_info`` entries that say how to load it
        (``interface``, and ``pymodule_file`` / ``classname`` for ``foreign_class``).
    """
    FAMILIES.insert(0, (name, matches, write))


def _yaml_dump(data):
    import ruamel.yaml

    yaml = ruamel.yaml.YAML()
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


def _run_doc(run_yaml_text):
    import ruamel.yaml

    return ruamel.yaml.YAML().load(run_yaml_text)


def _header(brain, family):
    return (
        f"# Model exported by robust-sep-recipes (modules.export), family `{family}`.\n"
        f"# Run: {brain.export_source}\n# Checkpoint: {brain.export_checkpoint}\n"
    )


def _plain_brain_hparams(run_yaml_text):
    """The run's plain hyperparameters (numbers, strings, lists), without paths of the training machine."""
    from hyperpyyaml import load_hyperpyyaml

    hparams = load_hyperpyyaml(inference_yaml(run_yaml_text, keep_modules=[]))
    hparams.pop("modules", None)
    out = {}
    for key, value in hparams.items():
        if key in RUN_KEYS or (isinstance(value, str) and os.path.isabs(value)):
            continue
        out[key] = value
    out["init_from"] = None  # the frozen modules' weights are in the export
    return out


def _is_sepformer_family(brain, used):
    from modules.brain import SeparationBrain
    from modules.models.separator import MaskingSeparator

    sep = brain.unwrapped("separator") if "separator" in brain.modules else None
    cls = type(brain)
    return (
        used == ["separator"]
        and type(sep) is MaskingSeparator
        and sep.fusion is None
        and not getattr(brain.hparams, "conditioning", None)
        and cls.split_outputs is SeparationBrain.split_outputs
        and cls.separate is SeparationBrain.separate
        and cls.separate_speakers is SeparationBrain.separate_speakers
    )


def _write_sepformer(brain, used, run_yaml_text, folder):
    import ruamel.yaml

    doc = _run_doc(run_yaml_text)
    sep_node = doc["modules"]["separator"]
    sep = brain.unwrapped("separator")
    n_outputs = brain.export_n_outputs
    out = ruamel.yaml.comments.CommentedMap()
    out["sample_rate"] = int(brain.hparams.sample_rate)
    out["num_spks"] = n_outputs  # SepformerSeparation decodes one output per "speaker"
    for name, key in (("encoder", "encoder"), ("masknet", "masker"), ("decoder", "decoder")):
        out[name] = sep_node[key]
    text = _yaml_dump(out)
    text += (
        "\nmodules:\n    encoder: !ref <encoder>\n    masknet: !ref <masknet>\n    decoder: !ref <decoder>\n"
        "\npretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n    loadables:\n"
        "        encoder: !ref <encoder>\n        masknet: !ref <masknet>\n        decoder: !ref <decoder>\n"
    )
    (folder / "hyperparams.yaml").write_text(_header(brain, "sepformer") + text, encoding="utf-8")
    for name, module in (("encoder", sep.encoder), ("masknet", sep.masker), ("decoder", sep.decoder)):
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return {"interface": "SepformerSeparation", "modules": ["encoder", "masknet", "decoder"]}


def _write_recipe(brain, used, run_yaml_text, folder):
    doc = _run_doc(run_yaml_text)
    brain_hparams = _plain_brain_hparams(run_yaml_text)
    text = _yaml_dump(
        {
            "sample_rate": int(brain.hparams.sample_rate),
            "brain_class": brain.export_brain_class,
            "brain_hparams": brain_hparams,
        }
    )
    modules_text = _yaml_dump({"modules": {name: doc["modules"][name] for name in used}})
    loadables = "".join(f"        {name}: !ref <modules[{name}]>\n" for name in used)
    text += "\n" + modules_text + "\npretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
    text += "    loadables:\n" + loadables
    (folder / "hyperparams.yaml").write_text(_header(brain, "recipe") + text, encoding="utf-8")
    for name in used:
        torch.save(brain.unwrapped(name).state_dict(), folder / f"{name}.ckpt")
    (folder / INTERFACE_FILE).write_text(INTERFACE_TEMPLATE, encoding="utf-8")
    return {
        "interface": "foreign_class",
        "pymodule_file": INTERFACE_FILE,
        "classname": INTERFACE_CLASS,
        "modules": used,
    }


FAMILIES.append(("recipe", lambda brain, used: True, _write_recipe))
register_family("sepformer", _is_sepformer_family, _write_sepformer)


# --------------------------------------------------------------------------- export
def _dummy_conditioning(brain, length):
    names = tuple(getattr(brain.hparams, "conditioning", None) or ())
    cond = {}
    for name in names:
        cond[name] = torch.randn(1, length, device=brain.device) * 0.1
        cond[f"{name}_lengths"] = torch.tensor([length], device=brain.device)
    return cond


def modules_used_for_inference(brain, seconds=2.0):
    """Names of ``brain.modules`` that ``separate_speakers`` calls (traced on a random input), and its outputs."""
    called = []
    hooks = [
        brain.unwrapped(name).register_forward_pre_hook(lambda *_, n=name: called.append(n)) for name in brain.modules
    ]
    length = int(seconds * brain.hparams.sample_rate)
    try:
        with torch.no_grad():
            result = brain.separate_speakers(
                torch.randn(1, length, device=brain.device) * 0.1, **_dummy_conditioning(brain, length)
            )
    finally:
        for hook in hooks:
            hook.remove()
    return [name for name in brain.modules if name in called], result


def export_run(run_folder, export_folder, brain_class=None, checkpoint=None, family=None, overwrite=False):
    """Writes a SpeechBrain model folder from a trained run (see the module docstring).

    Arguments
    ---------
    run_folder : str or Path
    export_folder : str or Path
    brain_class : str, optional
        The run's Brain (default: :func:`modules.inference.resolve_brain_class`).
    checkpoint : str, optional
        A ``CKPT+...`` folder instead of the best one.
    family : str, optional
        Force a family (``sepformer`` or ``recipe``); default: the first that matches.
    overwrite : bool
        Replace an existing export folder.

    Returns
    -------
    dict
        The ``export_info.json`` written.
    """
    folder = Path(export_folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(folder)
    model = load_run(run_folder, device="cpu", brain_class=brain_class, checkpoint=checkpoint)
    brain = model.brain
    used, result = modules_used_for_inference(brain)
    brain.export_n_outputs = result[0].shape[-1]  # speakers (all outputs for the sepformer family)
    brain.export_source = str(Path(run_folder).resolve())
    brain.export_checkpoint = model.checkpoint
    from modules.inference import resolve_brain_class

    cls, _ = resolve_brain_class(run_folder, brain_class)
    brain.export_brain_class = brain_class if isinstance(brain_class, str) else f"{cls.__module__}.{cls.__qualname__}"
    run_yaml_text = (Path(run_folder) / "hyperparams.yaml").read_text(encoding="utf-8")
    candidates = [f for f in FAMILIES if family is None or f[0] == family]
    if not candidates:
        raise ValueError(f"unknown export family {family!r} (have {[f[0] for f in FAMILIES]})")
    name, _, write = next((f for f in candidates if f[1](brain, used)), (None, None, None))
    if name is None:
        raise ValueError(f"the model of {run_folder} is not of the family {family!r}")
    folder.mkdir(parents=True, exist_ok=True)
    info = write(brain, used, run_yaml_text, folder)
    info.update(
        {
            "family": name,
            "brain_class": brain.export_brain_class,
            "sample_rate": int(brain.hparams.sample_rate),
            "n_speakers": brain.export_n_outputs,
            "noise_output": result[1] is not None,
            "run": brain.export_source,
            "checkpoint": brain.export_checkpoint,
        }
    )
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_readme(info), encoding="utf-8")
    logger.info("Exported %s (%s family) to %s", model.checkpoint, name, folder)
    return info


def _readme(info):
    if info["interface"] == "SepformerSeparation":
        load = (
            "from speechbrain.inference.separation import SepformerSeparation\n"
            'model = SepformerSeparation.from_hparams(source="<this folder>")\n'
            "est_sources = model.separate_batch(mix)  # mix [B, T] -> [B, T, n_spks]\n"
        )
    else:
        load = (
            "from speechbrain.inference.interfaces import foreign_class\n"
            f'model = foreign_class(source="<this folder>", pymodule_file="{info["pymodule_file"]}",\n'
            f'                      classname="{info["classname"]}")\n'
            "speakers, noise = model.separate_with_noise(mix)  # mix [B, T] -> [B, T, C], [B, T] or None\n"
        )
    return (
        f"# Separation model ({info['family']} family)\n\n"
        f"Exported by robust-sep-recipes from `{info['run']}` (checkpoint `{Path(info['checkpoint']).name}`), "
        f"Brain `{info['brain_class']}`, {info['sample_rate']} Hz input, {info['n_speakers']} speakers"
        f"{' and the noise' if info['noise_output'] else ''}.\n\n"
        f"```python\n{load}```\n\nLong recordings, any sample rate: "
        "`python -m modules.inference <this folder> recording.wav --output_folder out/`.\n"
    )


def main(argv=None):
    """``export`` / ``python -m modules.export``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="export",
        description="Write a SpeechBrain model folder (hyperparams.yaml + checkpoints) from a trained run.",
    )
    parser.add_argument("run", help="a trained run's output folder")
    parser.add_argument("export_folder", help="the folder to write")
    parser.add_argument("--brain", default=None, help="the run's Brain class, e.g. modules.nass.NASSBrain")
    parser.add_argument("--checkpoint", default=None, help="a CKPT+... folder (default: the run's best)")
    parser.add_argument("--family", default=None, help="sepformer or recipe (default: the first that fits)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        info = export_run(args.run, args.export_folder, args.brain, args.checkpoint, args.family, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.run} -> {args.export_folder} ({info['family']} family, loads with {info['interface']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
