"""Model components shared by the recipes."""

from modules.models.patch_sampler import PatchSampler

__all__ = ["PatchSampler"]
