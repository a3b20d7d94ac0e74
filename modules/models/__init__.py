"""Model components shared by the recipes: separators behind one call, and their helpers."""

from modules.models.context_aware import (
    ContextAwareSeparator,
    ContextPredictor,
    ConvTasNetSplitMasker,
    DualPathSplitMasker,
)
from modules.models.convtasnet import TCNMaskNet
from modules.models.dip import DIPFrontend, DIPFusion
from modules.models.dpccn import DPCCN, SpeakerEncoder
from modules.models.mossformer import MossFormerMasker, MossFormerSplitMasker
from modules.models.patch_sampler import PatchSampler
from modules.models.saddel import OneAndRestSeparator
from modules.models.separator import MaskingSeparator, fit_length
from modules.models.speakerbeam import SpeakerBeamAuxiliary, TDSpeakerBeam
from modules.models.ssl import SSLTeacher, build_teacher

__all__ = [
    "DPCCN",
    "ContextAwareSeparator",
    "ContextPredictor",
    "ConvTasNetSplitMasker",
    "DIPFrontend",
    "DIPFusion",
    "DualPathSplitMasker",
    "MaskingSeparator",
    "MossFormerMasker",
    "MossFormerSplitMasker",
    "OneAndRestSeparator",
    "PatchSampler",
    "SSLTeacher",
    "SpeakerBeamAuxiliary",
    "SpeakerEncoder",
    "TCNMaskNet",
    "TDSpeakerBeam",
    "build_teacher",
    "fit_length",
]
