"""Images in: loading and preprocessing (one definition for every stage), labelled sets."""

from basisnet_deploy.data.datasets import Dataset, digits, image_folder, load_dataset
from basisnet_deploy.data.preprocessing import (IMAGE_SUFFIXES, MAX_PIXELS, RESIZE_RULES, DataError,
                                                Preprocessing, load_image, preprocess, skip_reason)

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "RESIZE_RULES", "DataError", "Dataset", "Preprocessing",
           "digits", "image_folder", "load_dataset", "load_image", "preprocess", "skip_reason"]
