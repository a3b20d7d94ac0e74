"""README files in SpeechBrain's style: for our recipe folders and for an exported recipe.

``python -m modules.upstream readme recipes/<DATASET>/<method>`` writes
``recipes/<DATASET>/<method>/README.md`` for any recipe folder: what the
recipe does (its ``train.py`` docstring), one command per yaml, a tiny CPU run
on the mini corpus, the dataset, the results table (the paper's numbers from
``modules/paper_tables/`` beside the measured ones, ``—`` until a run
lands, with the status of each), how to export it for upstream, and the
citations (the method's paper, the backbones', the dataset's and
SpeechBrain's). ``tests/test_upstream.py`` checks that every command in these
files parses (script, yaml, every ``--key`` a key of the yaml).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ruamel.yaml

from modules.results import load_spec

__all__ = ["CITATIONS", "METHODS", "exported_readme", "readme_commands", "recipe_readme"]

REPO = Path(__file__).resolve().parents[2]

CITATIONS = {
    "speechbrain": """@misc{speechbrain,
  title={{SpeechBrain}: A General-Purpose Speech Toolkit},
  author={Mirco Ravanelli and Titouan Parcollet and Peter Plantinga and Aku Rouhe and others},
  year={2021},
  eprint={2106.04624},
  archivePrefix={arXiv},
  primaryClass={eess.AS}
}""",
    "speechbrain1": """@misc{speechbrainV1,
  title={Open-Source Conversational {AI} with {SpeechBrain} 1.0},
  author={Mirco Ravanelli and Titouan Parcollet and Adel Moumen and Sylvain de Langen and others},
  year={2024},
  eprint={2407.00463},
  archivePrefix={arXiv},
  primaryClass={cs.LG}
}""",
    "nass": """@inproceedings{zhang2024nass,
  title={Noise-Aware Speech Separation with Contrastive Learning},
  author={Zizheng Zhang and Chen Chen and Xiang Liu and Yuchen Hu and Eng Siong Chng},
  booktitle={ICASSP},
  year={2024},
  note={arXiv:2305.10761}
}""",
    "sepformer": """@inproceedings{subakan2021sepformer,
  title={Attention is All You Need in Speech Separation},
  author={Cem Subakan and Mirco Ravanelli and Samuele Cornell and Mirko Bronzi and Jianyuan Zhong},
  booktitle={ICASSP},
  year={2021},
  note={arXiv:2010.13154}
}""",
    "convtasnet": """@article{luo2019convtasnet,
  title={Conv-{TasNet}: Surpassing Ideal Time-Frequency Magnitude Masking for Speech Separation},
  author={Yi Luo and Nima Mesgarani},
  journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  year={2019},
  note={arXiv:1809.07454}
}""",
    "dprnn": """@inproceedings{luo2020dprnn,
  title={Dual-Path {RNN}: Efficient Long Sequence Modeling for Time-Domain Single-Channel Speech Separation},
  author={Yi Luo and Zhuo Chen and Takuya Yoshioka},
  booktitle={ICASSP},
  year={2020},
  note={arXiv:1910.06379}
}""",
    "mossformer": """@inproceedings{zhao2023mossformer,
  title={{MossFormer}: Pushing the Performance Limit of Monaural Speech Separation using Gated Single-Head
         Transformer with Convolution-Augmented Joint Self-Attentions},
  author={Shengkui Zhao and Bin Ma},
  booktitle={ICASSP},
  year={2023},
  note={arXiv:2302.11824}
}""",
    "wham": """@inproceedings{wichern2019wham,
  title={{WHAM!}: Extending Speech Separation to Noisy Environments},
  author={Gordon Wichern and Joe Antognini and Michael Flynn and Licheng Richard Zhu and Emmett McQuinn and
          Dwight Crow and Ethan Manilow and Jonathan Le Roux},
  booktitle={Interspeech},
  year={2019},
  note={arXiv:1907.01160}
}""",
    "librimix": """@misc{cosentino2020librimix,
  title={{LibriMix}: An Open-Source Dataset for Generalizable Speech Separation},
  author={Joris Cosentino and Manuel Pariente and Samuele Cornell and Antoine Deleforge and Emmanuel Vincent},
  year={2020},
  eprint={2005.11262},
  archivePrefix={arXiv}
}""",
}

#: Per method folder: title, the citation keys of its paper, and a note on the measured column.
METHODS = {
    "baseline": {
        "title": "Baseline separation (SepFormer, Conv-TasNet, DPRNN)",
        "papers": [],
        "variants": [("Clean mixtures (`mix_clean`)", "--task=sep_clean")],
    },
    "nass": {
        "title": "NASS: noise-aware speech separation with contrastive learning",
        "papers": ["nass"],
        "variants": [
            ("The paper's baseline rows (Tables 1, 3 and 4)", "--noise_speaker=False --pcl_direction=none"),
            ("Table 1, noise-speaker only", "--pcl_direction=none"),
            ("Table 2, S->N and N->S, lambda 1", "--pcl_direction=both --pcl_weight=1"),
            ("Table 2, S->N, lambda 1, M 1", "--pcl_weight=1 --pcl_patches=1 --pcl_mask_same_position=False"),
            ("The noise as a fixed last output instead of a PIT slot", "--noise_slot=fixed"),
        ],
    },
}

#: Per dataset folder: display name, where to get it, how ``--data_folder`` is given, mini corpus flag.
DATASETS = {
    "WHAM": {
        "name": "WHAM!",
        "get": "the [wham_scripts](http://wham.whisper.ai/) on top of wsj0-2mix (8 kHz, `min`)",
        "root": "<WHAM root>",
        "root_note": "the folder that holds `wav8k/` and `wav16k/`",
        "mini": "wham",
        "cite": "wham",
        "prep": "python -m data_prep.wham --data_folder <WHAM root> --save_folder <dir>",
    },
    "LibriMix": {
        "name": "LibriMix (Libri2Mix / Libri3Mix)",
        "get": "the [LibriMix](https://github.com/JorisCos/LibriMix) scripts (LibriSpeech + WHAM! noise)",
        "root": "<LibriMix root>",
        "root_note": "the folder that holds `Libri2Mix/` and `Libri3Mix/` (or one of them, or its `wav8k/min`)",
        "mini": "librimix",
        "cite": "librimix",
        "prep": "python -m data_prep.librimix --data_folder <LibriMix root> --save_folder <dir>",
    },
}

#: Backbone files that are variants of a cited model: the skip-path (Asteroid-shaped) Conv-TasNet, Asteroid's DPRNN.
_BACKBONE_PAPER = {"convtasnet_skip": "convtasnet", "dprnn_asteroid": "dprnn"}


def _docstring_summary(train_py):
    """The first paragraph of a recipe's ``train.py`` docstring, on one line."""
    doc = ast.get_docstring(ast.parse(Path(train_py).read_text(encoding="utf-8"))) or ""
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split())


def _yaml_keys(path):
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f) or {}


def _backbone(yaml_path):
    """The backbone file stem a recipe yaml includes (``sepformer``), or None."""
    text = Path(yaml_path).read_text(encoding="utf-8")
    match = re.search(r"!include:\S*/backbones/(\w+)\.yaml", text)
    return match.group(1) if match else None


def _paper_rows(dataset, method, tables=None):
    spec = load_spec(tables)
    rows = []
    for table in spec.get("tables", []):
        for row in table.get("rows", []):
            match = row.get("match", {})
            if match.get("dataset") == dataset and match.get("method") == method:
                rows.append(row)
    return rows


def _results_table(dataset, method, hparams_dir):
    rows = _paper_rows(dataset, method)
    lines = [
        "| Configuration | yaml | SI-SNRi paper (dB) | SDRi paper (dB) | SI-SNRi measured | Status |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        match = row["match"]
        yaml_name = f"{match.get('hparams')}.yaml"
        if not (hparams_dir / yaml_name).is_file():
            continue
        extra = " `--num_spks=3`" if match.get("num_spks") == 3 else ""
        paper = row.get("paper", {})
        lines.append(
            f"| {row['label']} ({row.get('source', 'paper')}) | `{yaml_name}`{extra} | "
            f"{paper.get('si-snr_i', '—')} | {paper.get('sdr_i', '—')} | — | full-scale unverified |"
        )
    if len(lines) == 2:
        lines.append("| (no paper numbers recorded in modules/paper_tables/) | | | | — | |")
    return "\n".join(lines)


def _citations(dataset, method, yamls):
    keys = list(METHODS.get(method, {}).get("papers", []))
    for y in yamls:
        b = _backbone(y)
        b = _BACKBONE_PAPER.get(b, b)
        if b in CITATIONS and b not in keys:
            keys.append(b)
    cite = DATASETS.get(dataset, {}).get("cite")
    if cite:
        keys.append(cite)
    keys += ["speechbrain", "speechbrain1"]
    return "\n\n".join(CITATIONS[k] for k in keys)


def recipe_readme(recipe_dir):
    """README text for one of our recipe folders (``recipes/<DATASET>/<method>``)."""
    recipe_dir = Path(recipe_dir).resolve()
    dataset, method = recipe_dir.parent.name, recipe_dir.name
    rel = recipe_dir.relative_to(REPO)
    yamls = sorted((recipe_dir / "hparams").glob("*.yaml"))
    info = DATASETS.get(dataset, {"name": dataset, "root": "<root>", "root_note": "", "mini": None})
    title = METHODS.get(method, {}).get("title", method)
    from modules.upstream.exporter import script_for

    commands = [
        f"python {rel}/{script_for(y, recipe_dir)} hparams/{y.name} --data_folder={info['root']}" for y in yamls
    ]
    variants = []
    last = yamls[-1].name if yamls else None
    if dataset == "LibriMix" and yamls and "num_spks" in _yaml_keys(yamls[0]):
        variants.append(("Libri3Mix", "--num_spks=3"))
    variants += METHODS.get(method, {}).get("variants", [])
    run_last = f"python {rel}/{script_for(yamls[-1], recipe_dir)} hparams/{last}" if yamls else ""
    variants = [f"# {label}\n{run_last} --data_folder={info['root']} {flags}" for label, flags in variants]
    tiny = []
    if info.get("mini") and yamls:
        tiny = [
            f"python -m data_prep.mini --dataset {info['mini']} --out mini_data --n_train 20 --n_valid 4 "
            "--n_test 4 --sample_rates 8000 --modes min",
            f"python {rel}/{script_for(yamls[0], recipe_dir)} hparams/{yamls[0].name} "
            f"--data_folder=mini_data/{dataset} --overrides_file=hparams/tiny.yaml",
        ]
    parts = [
        f"# {title} on {info['name']}",
        "",
        _docstring_summary(recipe_dir / script_for(yamls[0], recipe_dir)) if yamls else "",
        "",
        "## Running the recipe",
        "",
        f"From the repository root (or from this folder, without the `{rel}/` prefix); "
        f"`{info['root']}` is {info.get('root_note') or 'the dataset root'}. The recipe prepares its "
        "manifests itself (on the main process), then trains, validates and tests:",
        "",
        "```bash",
        *commands,
        "```",
    ]
    if variants:
        intro = f"Other configurations (shown on `{last}`; every yaml takes them):"
        parts += ["", intro, "", "```bash", *variants, "```"]
    if tiny:
        parts += [
            "",
            "A smoke run on a miniature copy of the dataset (same layout, synthetic signals; seconds on a CPU):",
            "",
            "```bash",
            *tiny,
            "```",
        ]
    parts += [
        "",
        "## Data",
        "",
        f"{info['name']}: {info.get('get', 'see the repository README')}. "
        + (f"Preparation by hand: `{info['prep']}`." if info.get("prep") else ""),
        "",
        "## Results",
        "",
        "No full-scale run has been made yet: the measured column is filled in as runs land "
        "(`python -m modules.results tables <run folders>` reads them).",
        "",
        _results_table(dataset, method, recipe_dir / "hparams"),
        "",
        "## Contributing this recipe to SpeechBrain",
        "",
        "```bash",
        f"python -m modules.upstream export {rel} --out upstream_export",
        "python -m modules.upstream check upstream_export",
        "```",
        "",
        "writes an upstream-shaped recipe folder (self-contained `train.py`, resolved yaml, README, "
        "registry row) and checks it against SpeechBrain's recipe rules (see the repository README, "
        "section *Contributing upstream*).",
        "",
        "## Citing",
        "",
        "```bibtex",
        _citations(dataset, method, yamls),
        "```",
        "",
    ]
    return "\n".join(parts)


def exported_readme(
    dataset,
    upstream_dataset,
    method,
    folder,
    yamls,
    summary,
    unmet,
    extra_requirements,
    scripts=None,
    prep_name="prepare_data",
):
    """README text of an exported (upstream-shaped) recipe folder.

    Arguments
    ---------
    dataset, upstream_dataset, method : str
        Our dataset folder, upstream's name for it, our method folder.
    folder : str
        The recipe folder relative to the upstream root (``recipes/WHAMandWHAMR/separation/nass``).
    yamls : list of Path
        Our recipe yamls (for the citations and results rows).
    summary : str
        What the recipe does.
    unmet : list of str
        Upstream rules this folder cannot meet yet, with the reason.
    extra_requirements : list of str
    scripts : dict, optional
        ``{yaml path: script name}`` (default: ``train.py`` for every yaml).
    prep_name : str
        The preparation module's name (without ``.py``).
    """
    info = DATASETS.get(dataset, {"name": dataset, "root": "<root>", "root_note": ""})
    title = METHODS.get(method, {}).get("title", method)
    scripts = scripts or {}
    commands = [f"python {scripts.get(y, 'train.py')} hparams/{y.name} --data_folder={info['root']}" for y in yamls]
    lines = [
        f"# {title} on {info['name']}",
        "",
        summary,
        "",
        "## Installing extra dependencies",
        "",
    ]
    if extra_requirements:
        lines += ["```bash", "pip install -r extra_requirements.txt", "```"]
    else:
        lines += ["None: SpeechBrain's own requirements suffice."]
    lines += [
        "",
        "## How to run",
        "",
        f"From `{folder}`; `{info['root']}` is {info.get('root_note') or 'the dataset root'}. The recipe "
        f"prepares its manifests (`{prep_name}.py`), trains, validates and tests:",
        "",
        "```bash",
        *commands,
        "```",
        *_exported_variants(method, yamls, scripts, info),
        "",
        "## Results",
        "",
        "No full-scale run yet; the paper's numbers:",
        "",
        _results_table(dataset, method, yamls[0].parent if yamls else Path(".")),
        "",
        "## Status against SpeechBrain's recipe rules",
        "",
        "Checked by `python -m modules.upstream check` (robust-sep-recipes); not met yet:",
        "",
        *[f"- {u}" for u in unmet],
        "",
        "## Files",
        "",
        "`train.py` holds the Brain classes and the steps of a run (everything that reads the yaml); "
        f"the models, losses, metrics and data pipeline are the modules beside it; `{prep_name}.py` "
        "writes the CSV manifests. Exported from robust-sep-recipes "
        f"(`recipes/{dataset}/{method}/`) by `python -m modules.upstream export`.",
        "",
        "## Citing",
        "",
        "```bibtex",
        _citations(dataset, method, yamls),
        "```",
        "",
    ]
    return "\n".join(lines)


def _exported_variants(method, yamls, scripts, info):
    """The method's other configurations as commands of the exported folder."""
    variants = METHODS.get(method, {}).get("variants", [])
    if not variants or not yamls:
        return []
    run = f"python {scripts.get(yamls[-1], 'train.py')} hparams/{yamls[-1].name} --data_folder={info['root']}"
    lines = ["", f"Other configurations (shown on `{yamls[-1].name}`; every yaml takes them):", "", "```bash"]
    for label, flags in variants:
        lines += [f"# {label}", f"{run} {flags}"]
    return [*lines, "```"]


def readme_commands(text):
    """The shell commands of a README's fenced ``bash`` blocks.

    Example
    -------
    >>> readme_commands("x\\n```bash\\npython a.py b\\n```\\n```bibtex\\n@x\\n```")
    ['python a.py b']
    """
    commands, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands
