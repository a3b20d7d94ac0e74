"""Manifests of SADDEL's scenarios (1sp+n, 2sp, 3sp, 2sp+n, 3sp+n) from LibriMix and WHAM!, and SADDEL's own data.

SADDEL's own data, WSJ0-mix + MUSAN (the paper's Table 1), is
:func:`prepare_wsj0mix_scenarios`: the clean scenarios are WSJ0-2mix/3mix,
the noisy ones are mixed from their sources with MUSAN noise (on the fly in
training, written once for the test).

Each scenario is an existing preparation task, written to its own folder
``<save_folder>/<scenario folder>/`` (``1sp+n`` -> ``1sp_n``):

=========  ========================  ==========================
scenario   LibriMix                  WHAM!
=========  ========================  ==========================
1sp+n      Libri2Mix ``mix_single``  ``mix_single``
2sp        Libri2Mix ``mix_clean``   ``mix_clean``
3sp        Libri3Mix ``mix_clean``   made on the fly (see below)
2sp+n      Libri2Mix ``mix_both``    ``mix_both``
3sp+n      Libri3Mix ``mix_both``    made on the fly (see below)
=========  ========================  ==========================

WHAM! has two speakers only: its 3-speaker scenarios are mixed on the fly
from the sources and the noise of its ``mix_both`` manifests
(:mod:`modules.data.scenarios`), so :func:`prepare_wham_scenarios` always
prepares ``2sp+n`` when a 3-speaker scenario is asked for.

Command line::

    python -m data_prep.scenarios --dataset librimix --data_folder /data/LibriMix --save_folder results/prep
"""

import argparse
import logging
import sys
from pathlib import Path

from data_prep.common import PrepError, run_cli
from data_prep.librimix import prepare_librimix
from data_prep.wham import prepare_wham

logger = logging.getLogger(__name__)

SCENARIOS = ("1sp+n", "2sp", "3sp", "2sp+n", "3sp+n")
#: LibriMix: scenario -> (number of speakers of the corpus, task).
LIBRIMIX_TASKS = {
    "1sp+n": (2, "enh_single"),
    "2sp": (2, "sep_clean"),
    "3sp": (3, "sep_clean"),
    "2sp+n": (2, "sep_noisy"),
    "3sp+n": (3, "sep_noisy"),
}
#: WHAM!: scenario -> task (3-speaker scenarios are mixed on the fly from 2sp+n's sources and noise).
WHAM_TASKS = {"1sp+n": "enh_single", "2sp": "sep_clean", "2sp+n": "sep_noisy"}


def scenario_folder(save_folder, scenario):
    """Folder of a scenario's manifests.

    Example
    -------
    >>> scenario_folder("/s", "2sp+n").as_posix()
    '/s/2sp_n'
    """
    if scenario not in SCENARIOS:
        raise PrepError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    return Path(save_folder) / scenario.replace("+", "_")


def _check(scenarios):
    """The scenarios asked for, checked against SCENARIOS."""
    scenarios = list(scenarios)
    for scenario in scenarios:
        scenario_folder(".", scenario)
    if not scenarios:
        raise PrepError("no scenario to prepare")
    return scenarios


def prepare_librimix_scenarios(
    data_folder,
    save_folder,
    scenarios=SCENARIOS,
    sample_rate=8000,
    mode="min",
    train_set="train-100",
    skip_prep=False,
):
    """Prepares the LibriMix manifests of each scenario in its own folder.

    Arguments
    ---------
    data_folder : str or Path
        Folder holding ``Libri2Mix/`` and ``Libri3Mix/``.
    save_folder : str or Path
    scenarios : sequence of str
        Subset of :data:`SCENARIOS`.
    sample_rate, mode, train_set, skip_prep
        As :func:`data_prep.librimix.prepare_librimix`.

    Returns
    -------
    dict
        ``{scenario: {"train": path, "valid": path, "test": path}}``.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_librimix
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_librimix(tmp, n_train=2, n_valid=1, n_test=1, sample_rates=(8000,), modes=("min",))
    >>> paths = prepare_librimix_scenarios(root, f"{tmp}/prep")
    >>> {s: Path(p["test"]).relative_to(f"{tmp}/prep").as_posix() for s, p in paths.items()}["3sp+n"]
    '3sp_n/libri3mix_test.csv'
    """
    out = {}
    for scenario in _check(scenarios):
        n_spks, task = LIBRIMIX_TASKS[scenario]
        logger.info("Scenario %s: Libri%dMix, task %s", scenario, n_spks, task)
        out[scenario] = prepare_librimix(
            data_folder,
            scenario_folder(save_folder, scenario),
            n_spks=n_spks,
            sample_rate=sample_rate,
            mode=mode,
            task=task,
            train_set=train_set,
            skip_prep=skip_prep,
        )
    return out


def prepare_wham_scenarios(
    data_folder, save_folder, scenarios=SCENARIOS, sample_rate=8000, mode="min", skip_prep=False
):
    """Prepares the WHAM! manifests of each scenario (the 3-speaker ones need 2sp+n's sources and noise).

    Arguments
    ---------
    data_folder : str or Path
        WHAM! root (holding ``wav8k/``, ``wav16k/``).
    save_folder : str or Path
    scenarios : sequence of str
    sample_rate, mode, skip_prep
        As :func:`data_prep.wham.prepare_wham`.

    Returns
    -------
    dict
        ``{task scenario: {"train": path, "valid": path, "test": path}}`` for
        1sp+n, 2sp and 2sp+n as needed.

    Example
    -------
    >>> import tempfile
    >>> from data_prep.mini import make_mini_wham
    >>> tmp = tempfile.mkdtemp()
    >>> root = make_mini_wham(tmp, n_train=2, n_valid=1, n_test=1, sample_rates=(8000,), modes=("min",))
    >>> sorted(prepare_wham_scenarios(root, f"{tmp}/prep", scenarios=["1sp+n", "3sp"]))
    ['1sp+n', '2sp+n']
    """
    wanted = set(_check(scenarios))
    if wanted & {"3sp", "3sp+n"}:
        wanted.add("2sp+n")
    out = {}
    for scenario in [s for s in SCENARIOS if s in wanted and s in WHAM_TASKS]:
        logger.info("Scenario %s: WHAM!, task %s", scenario, WHAM_TASKS[scenario])
        out[scenario] = prepare_wham(
            data_folder,
            scenario_folder(save_folder, scenario),
            sample_rate=sample_rate,
            mode=mode,
            task=WHAM_TASKS[scenario],
            skip_prep=skip_prep,
        )
    return out


#: SADDEL's noise SNR (dB), speech against noise: section 4.1.1, the training range, and the test range of Table 1.
SADDEL_SNR_DB = (-5.0, 20.0)
#: Name of the Table 1 test condition (WSJ0-mix test mixtures with MUSAN test noise) under ``<save>/conditions``.
WSJ0_MUSAN = "wsj0_musan"


def prepare_wsj0mix_scenarios(
    data_folder, musan_folder, save_folder, sample_rate=8000, mode="min", test_snr_db=SADDEL_SNR_DB,
    noise_split_seed=0, test_seed=0, n_test=None, skip_prep=False,
):  # fmt: skip
    """SADDEL's own data (Table 1): WSJ0-2mix/3mix and MUSAN noise, its test conditions written once.

    * ``<save_folder>/wsj0mix/wsj0{2,3}mix_{tr,cv,tt}.csv``: the WSJ0-mix
      manifests (:func:`data_prep.wsj0mix.prepare_wsj0mix`): 2sp and 3sp as
      they are; their sources are what the noisy scenarios are mixed from.
    * ``<save_folder>/musan_<rate>/{train,valid,test}/``: MUSAN's noise files
      split by :func:`data_prep.noise_corpora.noise_split` (seed
      ``noise_split_seed``, 80/10/10) and written at the recipe's rate
      (manifests ``<save_folder>/musan_noise_{train,valid,test}.csv``): the
      training mixtures take their noise from ``train``, the validation ones
      from ``valid``, the test conditions from ``test`` only.
    * ``<save_folder>/conditions/wsj0_musan/``: the noisy test sets 1sp+n,
      2sp+n and 3sp+n of Table 1, the WSJ0 ``tt`` speech with MUSAN test noise
      at an SNR drawn in ``test_snr_db`` (:func:`data_prep.saddel_conditions.prepare_saddel_condition`),
      the same files for every system and every rerun.

    Arguments
    ---------
    data_folder : str or Path
        The MERL scripts' output folder (holding ``2speakers/``, ``3speakers/``).
    musan_folder : str or Path
        MUSAN (``musan/`` or its ``noise/``).
    save_folder : str or Path
    sample_rate, mode
        As :func:`data_prep.wsj0mix.prepare_wsj0mix`.
    test_snr_db : sequence of float
        SNR range of the noisy test sets.
    noise_split_seed, test_seed : int
        Seeds of the noise split and of the test conditions' draws.
    n_test : int, optional
        Test mixtures per scenario (default: all of WSJ0-mix's 3000).
    skip_prep : bool

    Returns
    -------
    dict
        ``{"wsj0mix": {n_spks: {split: path}}, "noise": {split: folder}, "test": {scenario: path}}``.
    """
    from data_prep.noise_corpora import prepare_noise_corpus
    from data_prep.saddel_conditions import prepare_saddel_condition
    from data_prep.wsj0mix import prepare_wsj0mix

    save_folder = Path(save_folder)
    wsj0 = {}
    for n in (2, 3):
        wsj0[n] = prepare_wsj0mix(
            data_folder, save_folder / "wsj0mix", n_spks=n, sample_rate=sample_rate, mode=mode, skip_prep=skip_prep
        )
    export = save_folder / f"musan_{sample_rate // 1000}k"
    prepare_noise_corpus(musan_folder, save_folder, corpus="musan", sample_rate=sample_rate, seed=noise_split_seed,
                         export_folder=export, skip_prep=skip_prep)  # fmt: skip
    test = prepare_saddel_condition(
        WSJ0_MUSAN, "wsj0", data_folder, save_folder / "conditions", snr_range=test_snr_db, noise_corpus="musan",
        noise_folder=musan_folder, scenarios=["1sp+n", "2sp+n", "3sp+n"], seed=test_seed, sample_rate=sample_rate,
        n_mixtures=n_test, noise_split_seed=noise_split_seed, wsj0_mode=mode, skip_prep=skip_prep,
    )  # fmt: skip
    return {"wsj0mix": wsj0, "noise": {s: str(export / s) for s in ("train", "valid", "test")}, "test": dict(test)}


def prepare_scenarios(
    dataset, data_folder, save_folder, scenarios=SCENARIOS, sample_rate=8000, mode="min", train_set="train-100",
    skip_prep=False,
):  # fmt: skip
    """:func:`prepare_librimix_scenarios` (``dataset="librimix"``) or :func:`prepare_wham_scenarios` (``"wham"``)."""
    if dataset == "librimix":
        return prepare_librimix_scenarios(data_folder, save_folder, scenarios, sample_rate, mode, train_set, skip_prep)
    if dataset == "wham":
        return prepare_wham_scenarios(data_folder, save_folder, scenarios, sample_rate, mode, skip_prep)
    raise PrepError(f"dataset must be librimix or wham, not {dataset!r}")


def build_parser():
    """Command-line parser of ``python -m data_prep.scenarios``.

    Example
    -------
    >>> build_parser().parse_args(["--dataset", "wham", "--data_folder", "d", "--save_folder", "s"]).scenarios
    ['1sp+n', '2sp', '3sp', '2sp+n', '3sp+n']
    """
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.scenarios", description="Write the manifests of SADDEL's scenarios."
    )
    parser.add_argument("--dataset", choices=("librimix", "wham"), required=True)
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--sample_rate", type=int, default=8000)
    parser.add_argument("--mode", default="min")
    parser.add_argument("--train_set", default="train-100", help="LibriMix only")
    parser.add_argument("--skip_prep", action="store_true", help="only print the paths")
    return parser


def main(argv=None):
    """Entry point of ``python -m data_prep.scenarios``; returns the exit status."""
    return run_cli(build_parser(), prepare_scenarios, argv)


if __name__ == "__main__":
    sys.exit(main())
