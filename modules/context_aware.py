"""Context-aware two-stage training: the group stage (Brain, teacher targets and their cache) and the results table.

Paper: Wang et al., "Context-Aware Two-Step Training Scheme for Domain Invariant
Speech Separation" (arXiv:2503.12589); no public code
exists, so the paper is the whole specification and every open point below is
a documented choice with a yaml option.

A separator split into a SIMO context extractor and a SISO segregator
(:mod:`modules.models.context_aware`) is trained in two stages:

1. **Group stage** (:class:`GroupStageBrain`, Fig. 1 B): the encoder, the context
   extractor and a shared predictor (:class:`modules.models.context_aware.ContextPredictor`)
   are trained so that each speaker's prediction ``U~_i`` matches the
   representation ``U_i`` of the clean source ``s_i`` taken from a frozen SSL
   model (:mod:`modules.models.ssl`), with the contextual loss of equation 1
   (:func:`modules.losses.pairwise_info_nce`) and PIT over speakers. The
   ``target`` (Table I) is ``signal`` (Sys. 2: SI-SDR of signals decoded from
   the context), ``mel``, ``phoneme``, ``word`` (Sys. 3-5: one SSL tap) or
   ``hybrid`` (Sys. 6-8: the signal SI-SDR plus the three contextual losses,
   summed with ``loss_weights``, one speaker assignment for all terms). The
   segregator and the separator's decoder are not trained (no gradient).
2. **Segregate stage** (Fig. 1 C): the whole separator, initialised from the
   group stage's best checkpoint (``init_from``; the predictor and the teacher
   are not part of it), trained with SI-SDR by the chassis'
   :class:`modules.brain.SeparationBrain`; its test scores LM2Mix test, the
   LM2Mix dev set and LRS2Mix test and writes REAL-M separations
   (``extra_test_sets``, those given: :func:`modules.data.available_test_sets`),
   and :func:`write_results_table` puts them in the layout of Table I.

A system's yaml (e.g. ``convtasnet.yaml``, the segregate stage) declares both
stages in its ``stages`` list, and :func:`modules.recipe.run_recipe` runs them in
order from one command, or one of them (``--stages=group`` /
``--stages=segregate``), each an ordinary recipe run in its own folder
(``<output_folder>/group``, ``<output_folder>/segregate``); rerunning a killed
command resumes where it stopped (a finished group stage is skipped). The group
stage's yaml names its Brain (``brain_class``; the Brain brings its datasets,
:func:`build_group_datasets`), so given alone it trains that stage only; the segregate stage and the baselines
run :class:`SegregateBrain`.

Choices the paper leaves open (yaml keys in brackets):

* Teacher input (``teacher_context``): the teacher sees each whole clean source
  utterance (as long as the mixture) and the targets of a training crop are its
  frames inside the crop; crops start on the 20 ms grid (multiples of 320
  samples) so that the frames coincide. Running the teacher on the crop alone
  (``crop``) gives other targets near the crop's edges (attention context and
  the CNN's group normalisation over time) and cannot be cached.
* Teacher batching: each item's sources go through the teacher together and
  unpadded (the base models' group normalisation spans the whole input, so a
  padded item would get other targets).
* Cache (``teacher_cache``, ``teacher_cache_folder``): the targets of every source
  utterance are computed once and stored in half precision, one file per
  utterance and layer (:class:`TeacherCache`), then cropped with the audio. The
  key is the teacher (hub id or folder and a checksum of its weights), the layer
  and a hash of the samples fed to the teacher, so a changed teacher, layer or
  file is a miss; it is refused with speed perturbation or dynamic mixing (the
  sources change every epoch: nothing would ever be read back). The recipes'
  default folder (``results/LibriMix/context_aware/teacher_cache``) is one for
  every run, system and seed started from the same working folder, one
  sub-folder per teacher: Table I's HuBERT systems share one cache.
* Teacher (``ssl_loader``, ``ssl_hub``, ``ssl_save_path``): by default a hub id
  or local folder loaded with SpeechBrain's Hugging Face integration
  (:func:`modules.models.ssl.build_teacher`; ``ssl_hub: null`` is the BASE
  checkpoint of ``ssl_model``: ``facebook/hubert-base-ls960``,
  ``microsoft/wavlm-base``, ``facebook/wav2vec2-base``; the paper names the
  models, not the checkpoints, and its layers are those of 12-layer models);
  ``ssl_loader: torchaudio`` reads a local weights file (``ssl_checkpoint``).
  Under ``--debug`` a hub id that cannot be downloaded gets a tiny random model
  of the same type with a warning (upstream's recipe test); a real run refuses.
* Candidates of InfoNCE (``info_nce_negatives``), temperature
  (``info_nce_temperature``, 0.1 as the paper), predictor pooling
  (``predictor_pooling``), the hybrid weights (``loss_weights``, all 1), the
  SSL layers (``ssl_layers``, the paper's by default), the split point
  (``split_at``, half of the blocks).
* The signal target (Sys. 2 and hybrid): the predictor's own head maps each
  context embedding to a mask on the encoder output and decodes it with its own
  transposed convolution (:class:`modules.models.context_aware.SignalHead`);
  it is dropped with the predictor.
* The group stage has no loss threshold (the chassis' -30 dB rule is for SI-SNR);
  it ranks its checkpoints and stops early on its validation loss
  (``best_key: loss``); the segregate stage starts from that best checkpoint
  (``init_key: loss``).

Departures (deliberate; README "Context-aware two-stage training"):

* MossFormer (Table II) is not implemented: SepFormer stands in for it (MossFormer
  is not in SpeechBrain 1.1.2 and was not written here).
* The paper's Conv-TasNet and DPRNN are Asteroid's; here they are written with
  Asteroid's structure at its LibriMix sizes (``modules.models.convtasnet.TCNMaskNet``
  with skip connections, 5.07M parameters; ``modules.models.dprnn_asteroid``,
  3.65M; Asteroid's counts and, with the same weights, its outputs). How the
  skip-path Conv-TasNet is split (the skip sum travels with the residual path in
  the context) is a choice the paper leaves open
  (:class:`modules.models.context_aware.ConvTasNetSplitMasker`).
* "Halved after 5 epochs without improvement" is SpeechBrain's
  ``ReduceLROnPlateau(patience=4)`` (it halves on the (patience + 1)-th epoch);
  Asteroid's code (torch's ``patience=5``) halves on the 6th.
* The test sets (LM2Mix dev and test, LRS2Mix test, REAL-M) are tested in one run;
  REAL-M (8 kHz) is resampled to 16 kHz (:func:`prepare_resampled`), the paper
  does not say how it fed REAL-M to 16 kHz models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import soundfile
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from modules.audio import resample
from modules.brain import SeparationBrain
from modules.data import build_datasets
from modules.files import write_csv_atomic, write_text_atomic
from modules.losses import pairwise_info_nce, pairwise_si_snr, pit_from_pairwise
from modules.losses.matching import matched_scores
from modules.models.ssl import SSL_SAMPLE_RATE, ssl_frame_lengths

logger = logging.getLogger(__name__)

__all__ = [
    "CONTEXT_TARGETS",
    "SSL_HOP",
    "GroupStageBrain",
    "SegregateBrain",
    "TeacherCache",
    "audio_digest",
    "build_group_datasets",
    "contextual_taps",
    "grid_crop",
    "prepare_resampled",
    "uses_signal",
    "write_results_table",
]

#: Group-stage targets of Table I and the loss terms each one sums.
CONTEXT_TARGETS = {
    "signal": ("signal",),
    "mel": ("mel",),
    "phoneme": ("phoneme",),
    "word": ("word",),
    "hybrid": ("signal", "mel", "phoneme", "word"),
}
#: SSL frame hop in samples at 16 kHz (20 ms): training crops start on multiples of it.
SSL_HOP = 320
TEACHER_CONTEXTS = ("utterance", "crop")


def target_terms(target):
    """The loss terms of a group-stage ``target`` (a name of :data:`CONTEXT_TARGETS` or a list of terms).

    Example
    -------
    >>> target_terms("hybrid"), target_terms(["signal", "word"])
    (('signal', 'mel', 'phoneme', 'word'), ('signal', 'word'))
    """
    if isinstance(target, str):
        if target not in CONTEXT_TARGETS:
            raise ValueError(f"unknown group-stage target {target!r}: one of {sorted(CONTEXT_TARGETS)} or a list")
        return CONTEXT_TARGETS[target]
    terms = tuple(target)
    known = {t for terms_ in CONTEXT_TARGETS.values() for t in terms_}
    if not terms or any(t not in known for t in terms):
        raise ValueError(f"a target list takes terms among {sorted(known)}, got {list(terms)}")
    return terms


def contextual_taps(target):
    """The SSL taps a target needs (what the teacher must return).

    Example
    -------
    >>> contextual_taps("hybrid"), contextual_taps("signal")
    (['mel', 'phoneme', 'word'], [])
    """
    return [t for t in target_terms(target) if t != "signal"]


def uses_signal(target):
    """Whether a target has the signal SI-SDR term (the predictor then has a signal head).

    Example
    -------
    >>> uses_signal("hybrid"), uses_signal("word")
    (True, False)
    """
    return "signal" in target_terms(target)


# ---------------------------------------------------------------------------------------------- data
def build_group_datasets(hparams):
    """The chassis' datasets (:func:`modules.data.build_datasets`), training and validation only.

    The group stage's datasets (:attr:`GroupStageBrain.dataset_builder`): a
    run of the group stage, given alone or as a system's first stage, has no
    test stage (its model is the segregate stage's starting point).
    """
    train, valid, _ = build_datasets(hparams)
    return train, valid


@torch.no_grad()
def grid_crop(batch, length, hop=SSL_HOP, generator=None):
    """Each item's own random window of ``length`` samples, starting on a multiple of ``hop``.

    Like :func:`modules.brain.crop_batch` (one gather for the mixture and the
    sources, an item shorter than ``length`` keeps all its samples), with the
    start drawn among ``0, hop, 2 hop, ...`` inside the item's length, so that
    the crop's SSL frames are frames of the whole utterance. The whole
    (uncropped) sources, their lengths and the starts go into ``batch.extra``
    (``full_sources``, ``full_lengths``, ``crop_start``).

    Example
    -------
    >>> from modules.data import collate
    >>> items = [{"id": str(n), "mix_sig": torch.arange(n, dtype=torch.float32), "s1_sig": torch.ones(n)}
    ...          for n in (2000, 500)]
    >>> cropped = grid_crop(collate(items), 800, generator=torch.Generator().manual_seed(0))
    >>> cropped.mix.shape, cropped.lengths.tolist(), [int(s) % 320 for s in cropped.extra["crop_start"]]
    (torch.Size([2, 800]), [800, 500], [0, 0])
    >>> int(cropped.mix[0, 0]) == int(cropped.extra["crop_start"][0])
    True
    """
    device = batch.mix.device
    room = torch.div((batch.lengths - length).clamp(min=0), hop, rounding_mode="floor")  # start slots - 1
    draw = torch.rand(room.shape, generator=generator, device=generator.device if generator else device)
    start = torch.minimum((draw.to(device) * (room + 1)).long(), room) * hop
    index = (start[:, None] + torch.arange(length, device=device)).clamp(max=batch.mix.shape[1] - 1)
    valid = torch.arange(length, device=device)[None, :] < (batch.lengths - start)[:, None]
    lengths = torch.minimum(batch.lengths, torch.full_like(batch.lengths, length))
    changes = {"mix": batch.mix.gather(1, index) * valid, "lengths": lengths}
    if batch.sources is not None:
        expanded = index[..., None].expand(-1, -1, batch.sources.shape[-1])
        changes["sources"] = batch.sources.gather(1, expanded) * valid[..., None]
    if batch.noise is not None:
        changes["noise"] = batch.noise.gather(1, index) * valid
    extra = {**batch.extra, "full_sources": batch.sources, "full_lengths": batch.lengths, "crop_start": start}
    return batch.replace(extra=extra, **changes)


# --------------------------------------------------------------------------------------------- cache
#: Version of the cache's key and file layout: files of another version are never read.
CACHE_FORMAT = 2


def audio_digest(audio):
    """SHA-1 of the samples fed to the teacher (float32 values and their number): the audio part of a cache key.

    Example
    -------
    >>> a = torch.zeros(16000)
    >>> audio_digest(a) == audio_digest(a.clone()), audio_digest(a) == audio_digest(torch.zeros(16001))
    (True, False)
    """
    samples = audio.detach().to("cpu", torch.float32).contiguous().reshape(-1)
    digest = hashlib.sha1(f"float32:{samples.numel()}:".encode())
    digest.update(samples.numpy().tobytes())
    return digest.hexdigest()


def teacher_folder(identity):
    """The sub-folder of a teacher's targets in a shared cache folder: a readable name and a digest of its identity.

    Example
    -------
    >>> teacher_folder("facebook/hubert-base-ls960|0123abcd|normalize=False")
    'hubert-base-ls960-ad8e216ffb4f97f6'
    >>> teacher_folder("/models/hubert_tiny.pth|0123abcd|normalize=False")
    'hubert_tiny.pth-07674649da17e679'
    """
    source = identity.split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source)[:40].strip("._") or "teacher"
    return f"{name}-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"


class TeacherCache:
    """Teacher targets of whole source utterances on disk, half precision, one file per utterance and layer.

    The key of an entry is a SHA-1 of the cache format (:data:`CACHE_FORMAT`),
    the teacher's identity (its hub id, folder or file and a checksum of its
    weights, :attr:`modules.models.ssl.SSLTeacher.identity`), the layer of the
    tap (``cnn`` or a transformer layer) and a hash of the samples actually
    fed to the teacher (:func:`audio_digest`): another teacher, another layer
    or other audio (a file replaced in place, another crop, another rate) is a
    miss, never another entry's targets. A file stores its key and format and
    is read only when both match, so files of an older version (keyed by path
    and length) are ignored. Files are written atomically (a killed run leaves
    no partial file; DDP ranks may write the same file).

    Several runs share one ``folder``: the systems of a table that use the same
    teacher (Table I's Sys. 3-6 use HuBERT's taps) read each other's entries
    (the recipes' default folder, ``results/LibriMix/context_aware/teacher_cache``,
    is shared by every run started from the same folder). Each teacher has its
    own sub-folder (:func:`teacher_folder`, with a ``teacher.json`` naming it),
    so that one teacher's targets can be removed alone.

    Arguments
    ---------
    folder : str
        Where the targets go (``<folder>/<teacher>/v2/<xx>/<key>.pt``).
    identity : str
        The teacher's identity.
    layers : dict of str -> str or int
        ``{tap: layer}`` of the teacher (:attr:`modules.models.ssl.SSLTeacher.layers`).

    Example
    -------
    >>> import tempfile
    >>> cache = TeacherCache(tempfile.mkdtemp(), "hubert|0123", {"word": 9})
    >>> audio = audio_digest(torch.ones(16000))
    >>> cache.load(audio, "word") is None
    True
    >>> cache.store(audio, "word", torch.ones(49, 16))
    >>> cache.load(audio, "word").dtype, cache.load(audio_digest(torch.ones(8000)), "word")
    (torch.float16, None)
    """

    def __init__(self, folder, identity, layers):
        self.identity = str(identity)
        self.teacher_folder = Path(folder) / teacher_folder(self.identity)
        self.folder = self.teacher_folder / f"v{CACHE_FORMAT}"
        self.layers = dict(layers)
        self.hits = self.misses = 0

    def key(self, audio, tap):
        """The key of ``tap``'s targets for audio of digest ``audio``."""
        if tap not in self.layers:
            raise KeyError(f"the teacher has no tap {tap!r} (taps: {sorted(self.layers)})")
        text = json.dumps([CACHE_FORMAT, self.identity, str(self.layers[tap]), audio])
        return hashlib.sha1(text.encode()).hexdigest()

    def path(self, key):
        """The file holding the entry of ``key``."""
        return self.folder / key[:2] / f"{key}.pt"

    def load(self, audio, tap):
        """``[frames, dim]`` float16 targets, or ``None`` when not cached (or written by another version)."""
        key = self.key(audio, tap)
        try:
            entry = torch.load(self.path(key), map_location="cpu", weights_only=True)
        except (FileNotFoundError, EOFError, RuntimeError, ValueError):
            entry = None
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("key") != key:
            self.misses += 1
            return None
        self.hits += 1
        return entry["targets"]

    def store(self, audio, tap, targets):
        """Stores ``targets`` ``[frames, dim]`` (as float16) of ``tap`` for audio of digest ``audio``."""
        from modules.files import atomic_path

        key = self.key(audio, tap)
        entry = {"format": CACHE_FORMAT, "key": key, "layer": str(self.layers[tap]),
                 "targets": targets.detach().to("cpu", torch.float16).contiguous()}  # fmt: skip
        with atomic_path(self.path(key)) as tmp:
            torch.save(entry, tmp)
        label = self.teacher_folder / "teacher.json"
        if not label.is_file():  # what the sub-folder holds, for whoever cleans the cache
            text = json.dumps({"identity": self.identity, "format": CACHE_FORMAT}, indent=1)
            write_text_atomic(label, text + "\n")


# ---------------------------------------------------------------------------------------- group stage
class GroupStageBrain(SeparationBrain):
    """The group stage: context extractor + predictor trained against teacher targets (and/or the signal).

    Modules: ``separator`` (a :class:`modules.models.context_aware.ContextAwareSeparator`),
    ``predictor`` (a :class:`modules.models.context_aware.ContextPredictor`) and
    ``teacher`` (:func:`modules.models.ssl.build_teacher`, listed in
    ``frozen_modules``). Hyperparameters: ``target``, ``loss_weights``,
    ``info_nce_temperature``, ``info_nce_negatives``, ``teacher_context``,
    ``teacher_cache``, ``teacher_cache_folder`` (see the module docstring), and the
    chassis' ``sample_rate``, ``limit_training_signal_len``, ``training_signal_len``,
    ``use_speedperturb``, ``dynamic_mixing``.

    Validation statistics: ``loss`` (the training objective on the validation set,
    the best-checkpoint key) and each matched term (``signal`` is minus the SI-SNR).

    A teacher that is a random stand-in (its hub id could not be downloaded,
    ``ssl_unreachable: stand_in``; :func:`modules.models.ssl.load_ssl_backbone`)
    is refused with its one-line error, except in a ``--debug`` run
    (SpeechBrain's ``run_opts["debug"]``, as upstream's recipe test), which warns
    and trains against it.
    """

    dataset_builder = staticmethod(build_group_datasets)

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self.terms = target_terms(self.hparams.target)
        self.taps = [t for t in self.terms if t != "signal"]
        for name in ("separator", "predictor"):
            if name not in self.modules:
                raise ValueError(f"the group stage needs a `{name}` module")
        separator = self.unwrapped("separator")
        if not hasattr(separator, "parts") or not hasattr(separator, "masker"):
            raise TypeError("the group stage trains a ContextAwareSeparator (modules.models.context_aware)")
        for part in ("segregator", "decoder"):  # not used before the segregate stage: no gradient, no optimiser
            for module in separator.parts()[part]:
                module.requires_grad_(False)
        self.weights = {term: float(self._hp("loss_weights", {}).get(term, 1.0)) for term in self.terms}
        self.context = self._hp("teacher_context", "utterance")
        if self.context not in TEACHER_CONTEXTS:
            raise ValueError(f"teacher_context must be one of {TEACHER_CONTEXTS}, not {self.context!r}")
        self.cache = None
        if self.taps:
            self._check_teacher()
            if self._hp("teacher_cache", False):
                self._check_cacheable()
                teacher = self.unwrapped("teacher")
                self.cache = TeacherCache(self.hparams.teacher_cache_folder, teacher.identity, teacher.layers)
        self._valid_sums = {}

    def _check_teacher(self):
        if "teacher" not in self.modules or "teacher" not in self.frozen:
            raise ValueError("the group stage needs a `teacher` module listed in frozen_modules")
        missing = [tap for tap in self.taps if tap not in self.unwrapped("teacher").layers]
        if missing:
            raise ValueError(
                f"the teacher returns {sorted(self.unwrapped('teacher').layers)}, the target needs {missing}"
            )
        if self.hparams.sample_rate != SSL_SAMPLE_RATE:
            raise ValueError(
                f"the SSL teachers take {SSL_SAMPLE_RATE} Hz audio, the recipe is at {self.hparams.sample_rate}"
            )
        reason = getattr(self.unwrapped("teacher"), "stand_in_reason", None)
        if reason:  # the hub id could not be downloaded: a tiny random teacher stands in (modules.models.ssl)
            if not getattr(self, "debug", False):
                raise OSError(reason)
            logger.warning("%s; --debug run: the group stage learns a tiny random teacher's targets", reason)

    def _check_cacheable(self):
        if self.context != "utterance":
            raise ValueError("teacher_cache needs teacher_context: utterance (crops differ from epoch to epoch)")
        if self._hp("use_speedperturb", False) or self._hp("dynamic_mixing", False):
            raise ValueError(
                "teacher_cache keys the targets by the audio fed to the teacher: with speed perturbation or dynamic "
                "mixing the sources differ every epoch and the cache would only grow (set teacher_cache: False)"
            )

    # ------------------------------------------------------------------ forward
    def separate(self, mix, **conditioning):
        """Context extractor and predictor: ``(signal estimates [B, T, C] or None, features)``.

        The features hold the separator's (``mix_w``, ``context``) and the
        predictions ``predicted`` (``{tap: [B, F, C, dim]}``).
        """
        _, features = self.modules.separator(mix, context_only=True, **conditioning)
        predicted = self.modules.predictor(features["context"], features["mix_w"], mix.shape[-1])
        return predicted.pop("signal", None), {**features, "predicted": predicted}

    @torch.no_grad()
    def augment(self, batch):
        """Speed perturbation as the chassis, then crops on the SSL grid (:func:`grid_crop`)."""
        if self._hp("use_speedperturb", False):
            batch = self._speed_perturb(batch, self.hparams.speed_perturb)
        length = self._hp("training_signal_len", None)
        if not self._hp("limit_training_signal_len", False) or batch.mix.shape[1] <= length:
            extra = {**batch.extra, "full_sources": batch.sources, "full_lengths": batch.lengths}
            return batch.replace(extra={**extra, "crop_start": torch.zeros_like(batch.lengths)})
        return grid_crop(batch, length, SSL_HOP)

    # ---------------------------------------------------------- teacher targets
    def _teacher_pass(self, sources):
        """Teacher representations of ``[n_src, n]`` unpadded sources: ``{tap: [n_src, frames, dim]}``."""
        outputs = self.modules.teacher(sources)
        return {tap: outputs[tap].float() for tap in self.taps}

    def _utterance_targets(self, sources):
        """``{tap: [n_src, frames, dim]}`` of one item's whole sources, from the cache when there.

        The cache is keyed by a hash of each source's samples (what the teacher is fed).
        """
        if self.cache is None:
            return self._teacher_pass(sources)
        digests = [audio_digest(source) for source in sources]
        cached = {tap: [self.cache.load(d, tap) for d in digests] for tap in self.taps}
        if all(t is not None for per_tap in cached.values() for t in per_tap):
            return {tap: torch.stack(per_tap).to(sources.device, torch.float32) for tap, per_tap in cached.items()}
        fresh = self._teacher_pass(sources)
        for tap, reps in fresh.items():
            for digest, rep in zip(digests, reps):
                self.cache.store(digest, tap, rep)
        return {tap: reps.half().float() for tap, reps in fresh.items()}  # what the cache returns next time

    def teacher_targets(self, batch, n_frames):
        """Teacher targets of the batch's (cropped) sources: ``{tap: [B, n_frames, C, dim]}`` and ``[B, n_frames]``.

        With ``teacher_context: utterance`` the teacher sees each item's whole
        sources (``batch.extra["full_sources"]``) and the frames of the crop are
        taken (the crop starts on the 20 ms grid); with ``crop`` it sees the crop.
        Padded frames and sources are zero; the mask marks the valid frames.
        """
        if self.context == "crop" or "full_sources" not in batch.extra:
            full, full_lengths = batch.sources, batch.lengths
            starts = torch.zeros_like(batch.lengths)
        else:
            full, full_lengths = batch.extra["full_sources"], batch.extra["full_lengths"]
            starts = batch.extra["crop_start"]
        dims = self.unwrapped("teacher").tap_dims
        batch_size, n_src = batch.sources.shape[0], batch.sources.shape[-1]
        device = batch.mix.device
        targets = {tap: torch.zeros(batch_size, n_frames, n_src, dims[tap], device=device) for tap in self.taps}
        frame_lengths = ssl_frame_lengths(batch.lengths).clamp(max=n_frames)
        hosts = [(int(n), int(c), int(s) // SSL_HOP, int(f)) for n, c, s, f in
                 zip(full_lengths, batch.source_mask.sum(-1), starts, frame_lengths)]  # fmt: skip
        for b, (n, n_real, first, frames) in enumerate(hosts):
            if not n_real or not frames:
                continue
            whole = full[b, :n, :n_real].T
            reps = self._utterance_targets(whole) if self.context == "utterance" else self._teacher_pass(whole)
            for tap, rep in reps.items():
                window = rep[:, first : first + frames].transpose(0, 1)  # [frames', n_real, dim]
                targets[tap][b, : window.shape[0], :n_real] = window
        frame_mask = torch.arange(n_frames, device=device)[None, :] < frame_lengths.to(device)[:, None]
        return targets, frame_mask

    # --------------------------------------------------------------- objective
    def pairwise_terms(self, outputs):
        """``{term: [B, C, C]}`` pairwise losses of every prediction against every source (lower is better)."""
        terms = {}
        if "signal" in self.terms:
            terms["signal"] = -pairwise_si_snr(outputs.estimates, outputs.targets, lengths=outputs.lengths)
        if self.taps:
            predicted = outputs.features["predicted"]
            n_frames = predicted[self.taps[0]].shape[1]
            targets, frame_mask = self.teacher_targets(outputs.batch, n_frames)
            for tap in self.taps:
                if predicted[tap].shape[1] != n_frames:
                    raise RuntimeError(f"predicted {tap} frames {predicted[tap].shape[1]} != SSL frames {n_frames}")
                terms[tap] = pairwise_info_nce(
                    predicted[tap],
                    targets[tap],
                    frame_mask=frame_mask,
                    target_mask=outputs.source_mask,
                    temperature=self.hparams.info_nce_temperature,
                    negatives=self.hparams.info_nce_negatives,
                )
        return terms

    def compute_objectives(self, outputs, batch, stage):
        """The weighted sum of the target's terms under one PIT assignment per item."""
        if outputs.targets is None:
            raise ValueError(f"group-stage batch {outputs.batch.ids} has no references")
        if self.taps:  # the frames of the teacher grid: checked once here, not per tap
            n_frames = ssl_frame_lengths(outputs.mix.shape[1])
            got = outputs.features["predicted"][self.taps[0]].shape[1]
            if got != n_frames:
                raise RuntimeError(
                    f"the predictor gives {got} frames for {n_frames} SSL frames: encoder kernel/stride?"
                )
        terms = self.pairwise_terms(outputs)
        total = sum(self.weights[name] * value.float() for name, value in terms.items())
        loss, perm = pit_from_pairwise(total, outputs.source_mask)
        outputs.perm = perm
        weight = outputs.batch.supervised.to(loss.dtype)
        if stage == sb.Stage.TRAIN:
            self._kept_items = weight.sum() if self._kept_items is None else self._kept_items + weight.sum()
        else:
            mask = outputs.source_mask.float()
            for name, value in terms.items():  # summed on the device, read once in valid_stats
                matched = (matched_scores(value.detach().float(), perm) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
                self._valid_sums[name] = self._valid_sums.get(name, 0.0) + (matched * weight).sum()
            self._valid_sums["_items"] = self._valid_sums.get("_items", 0.0) + weight.sum()
        return (loss * weight).sum() / weight.sum().clamp(min=1.0)

    def on_stage_start(self, stage, epoch=None):
        """Resets the validation sums of the terms."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.VALID:
            self._valid_sums = {}

    def valid_stats(self, stage_loss):
        """``loss`` (the best-checkpoint key) and the mean of each matched term."""
        n_items = max(float(self._valid_sums.get("_items", 0.0)), 1.0)
        stats = {"loss": float(stage_loss)}
        stats.update({name: float(value) / n_items for name, value in self._valid_sums.items() if name != "_items"})
        return stats

    def evaluate(self, *args, **kwargs):
        """The group stage has no test: its model is the segregate stage's starting point."""
        raise NotImplementedError("the group stage is not tested: test the segregate stage")


# ---------------------------------------------------------------------------------------- test sets
def prepare_resampled(manifest, data_folder, out_manifest, sample_rate, prepare=None):
    """Writes copies of a manifest's mixtures at ``sample_rate`` and a manifest for them (REAL-M is 8 kHz).

    Arguments
    ---------
    manifest : str
        The original manifest (``$data_root`` paths), e.g. ``realm_test.csv``.
    data_folder : str
        What ``$data_root`` stands for in it.
    out_manifest : str
        The manifest written; the copies go to ``<its folder>/<its stem>/<ID>.wav`` and
        its paths are relative to its folder (use that folder as the test set's ``data_folder``).
    sample_rate : int
        The recipe's rate.
    prepare : callable, optional
        Run first (it writes ``manifest``; e.g. ``data_prep.realm.prepare_realm``).

    Files are written atomically and kept; a copy already there is not redone.
    Only mixture-only manifests (no ``s<k>_wav``) are resampled; other columns are copied.
    """
    if prepare is not None:
        prepare()
    import csv

    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        header, rows = [h.strip() for h in reader.fieldnames], list(reader)
    if any(c.startswith("s") and c.endswith("_wav") and c[1:-4].isdigit() for c in header):
        raise ValueError(f"{manifest}: only mixture-only manifests are resampled here")
    out_manifest = Path(out_manifest)
    folder = out_manifest.parent / out_manifest.stem
    keep = [c for c in header if not c.startswith("mix_wav")]
    new_rows = []
    for row in rows:
        target = folder / f"{row['ID']}.wav"
        if not target.is_file():
            from modules.files import write_wav_atomic

            audio, rate = soundfile.read(row["mix_wav"].replace("$data_root", str(data_folder)), dtype="float64")
            write_wav_atomic(target, resample(audio, rate, sample_rate).astype(np.float32), sample_rate)
        frames = soundfile.info(str(target)).frames
        new_rows.append({**{c: row[c] for c in keep}, "duration": f"{frames / sample_rate:.4f}",
                         "mix_wav": f"$data_root/{folder.name}/{target.name}"})  # fmt: skip
    write_csv_atomic(out_manifest, [*keep[:2], "mix_wav", *keep[2:]], new_rows)
    return str(out_manifest)


def _summary(folder, name=None):
    path = Path(folder) / f"test_summary{'_' + name if name else ''}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_results_table(folder, system=""):
    """Writes ``results_table.md``: the run's scores in the layout of the paper's Table I.

    Columns: Dev SI-SDRi; LM2Mix test SI-SDRi and SDRi; LM2Mix -> LRS2Mix SI-SDRi
    and SDRi (dB), read from ``test_summary{_dev,,_lrs2mix}.json`` (a set that was
    not tested shows ``-``); and how many REAL-M mixtures were separated.

    Returns
    -------
    str
        The table.
    """
    dev, test, lrs2 = _summary(folder, "dev"), _summary(folder), _summary(folder, "lrs2mix")
    realm = _summary(folder, "realm")

    def cell(summary, key):
        """A table cell: the summary's value to two decimals, or '-'."""
        return f"{summary[key]:.2f}" if summary and key in summary else "-"

    table = (
        "| System | Dev SI-SDRi | LM2Mix SI-SDRi | LM2Mix SDRi | LM2Mix->LRS2Mix SI-SDRi | LM2Mix->LRS2Mix SDRi |\n"
        "|---|---|---|---|---|---|\n"
        f"| {system} | {cell(dev, 'si-snr_i')} | {cell(test, 'si-snr_i')} | {cell(test, 'sdr_i')} | "
        f"{cell(lrs2, 'si-snr_i')} | {cell(lrs2, 'sdr_i')} |\n"
    )
    if realm:
        table += f"\nREAL-M: {realm['n_mixtures']} mixtures separated into separations_realm/ (no references)\n"
        scores = [f"{k} {v:.2f}" for k, v in realm.items() if k.endswith("_wer") or k.startswith("dnsmos_")]
        table += f"REAL-M scores: {', '.join(scores)}\n" if scores else ""
    if if_main_process():
        write_text_atomic(Path(folder) / "results_table.md", table)
    return table


# -------------------------------------------------------------------------------------- the system's Brain
class SegregateBrain(SeparationBrain):
    """The segregate stage of a system, or a one-stage baseline: the chassis' SI-SDR training.

    After its test it writes ``results_table.md`` (:func:`write_results_table`)
    in its output folder, the system named by :func:`system_label`.
    """

    def on_tested(self, written):
        """Scores the REAL-M separations (:func:`modules.evaluation.realm.evaluate_test_stage`: WER per
        ``realm_asr`` recogniser, DNSMOS; ``realm_eval: False`` turns it off) and draws their WER bars
        (``realm_wer.png``, Fig. 2's bars for this run), then writes ``results_table.md`` (main process)."""
        run_on_main(_evaluate_realm, args=[self, written])
        path = getattr(self, "hparams_file", None)
        values = {k: getattr(self.hparams, k, None) for k in ("target", "ssl_model", "stages")}
        label = system_label(Path(path).stem, values) if path else ""
        run_on_main(write_results_table, args=[self.hparams.output_folder, label])


def _evaluate_realm(brain, written):
    from modules.evaluation.realm import evaluate_test_stage
    from modules.evaluation.realm_figure import draw_realm_figure

    scores = evaluate_test_stage(brain, written)
    if scores and any(k.endswith("_wer") for k in scores):
        out = Path(brain.hparams.output_folder)
        draw_realm_figure([out / "test_summary_realm.json"], out / "realm_wer.png")


def system_label(name, hparams):
    """A system's name for the results table: its yaml's stem, with its target and SSL model when it has them.

    Arguments
    ---------
    name : str
        The system yaml's stem (``convtasnet``, ``baseline_dprnn``).
    hparams : mapping
        Its ``target``, ``ssl_model`` and ``stages`` (a system with a group stage).

    Example
    -------
    >>> stages = [{"name": "group"}, {"name": "segregate"}]
    >>> system_label("dprnn", {"target": "word", "ssl_model": "hubert", "stages": stages})
    'dprnn (word, hubert)'
    >>> system_label("dprnn", {"target": "none", "stages": stages}), system_label("baseline_dprnn", {})
    ('dprnn (no group stage)', 'baseline_dprnn')
    """
    target = hparams.get("target")
    if not hparams.get("stages") or target in (None, "none"):
        return name if target is None else f"{name} (no group stage)"
    if not contextual_taps(target):
        return f"{name} ({target})"
    return f"{name} ({target}, {hparams.get('ssl_model')})"
