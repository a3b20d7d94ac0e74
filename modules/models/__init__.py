"""Model components shared by the recipes: separators behind one call, and their helpers."""

from modules.models.convtasnet import TCNMaskNet
from modules.models.patch_sampler import PatchSampler
from modules.models.saddel import OneAndRestSeparator
from modules.models.separator import MaskingSeparator, fit_length

__all__ = [
    "MaskingSeparator",
    "OneAndRestSeparator",
    "PatchSampler",
    "TCNMaskNet",
    "fit_length",
]
