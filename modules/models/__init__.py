"""Model components shared by the recipes: separators behind one call, and their helpers."""

from modules.models.convtasnet import TCNMaskNet
from modules.models.dip import DIPFrontend, DIPFusion
from modules.models.dpccn import DPCCN, SpeakerEncoder
from modules.models.patch_sampler import PatchSampler
from modules.models.saddel import OneAndRestSeparator
from modules.models.separator import MaskingSeparator, fit_length
from modules.models.speakerbeam import SpeakerBeamAuxiliary, TDSpeakerBeam

__all__ = [
    "DPCCN",
    "DIPFrontend",
    "DIPFusion",
    "MaskingSeparator",
    "OneAndRestSeparator",
    "PatchSampler",
    "SpeakerBeamAuxiliary",
    "SpeakerEncoder",
    "TCNMaskNet",
    "TDSpeakerBeam",
    "fit_length",
]
