"""Model components shared by the recipes: separators behind one call, and their helpers."""

from modules.models.patch_sampler import PatchSampler
from modules.models.separator import MaskingSeparator, fit_length

__all__ = ["MaskingSeparator", "PatchSampler", "fit_length"]
