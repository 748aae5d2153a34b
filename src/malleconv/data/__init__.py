"""Training/evaluation data: noise levels and synthetic Gaussian noise, image-folder
datasets and synthetic dead-leaves images."""

from malleconv.data.datasets import (
    NUM_AUGMENTATIONS,
    ImageFolderPatches,
    apply_augmentation,
    load_clean,
)
from malleconv.data.dead_leaves import dead_leaves
from malleconv.data.noise import (
    SIGMA_MAX,
    SIGMA_MIN,
    add_gaussian_noise,
    check_sigma,
    check_strength,
    noise_level_map,
    parse_sigma,
    seed_for,
)

__all__ = [
    "NUM_AUGMENTATIONS",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "ImageFolderPatches",
    "add_gaussian_noise",
    "apply_augmentation",
    "check_sigma",
    "check_strength",
    "dead_leaves",
    "load_clean",
    "noise_level_map",
    "parse_sigma",
    "seed_for",
]
