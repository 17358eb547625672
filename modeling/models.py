"""Imports every model module so that each registers itself; callers import this one."""

from modeling import book_segmentation  # noqa: F401  pylint: disable=unused-import
from modeling import classifiers  # noqa: F401  pylint: disable=unused-import
from modeling import mobilenet_v2_unet  # noqa: F401  pylint: disable=unused-import
from modeling import xception_imagenet  # noqa: F401  pylint: disable=unused-import
from modeling import xception_unet  # noqa: F401  pylint: disable=unused-import
from modeling import zoo  # noqa: F401  pylint: disable=unused-import
from modeling.blocks import set_band_statistics  # noqa: F401
from modeling.registry import (  # noqa: F401
    Family, build_model, check_initial_weights, check_model, encoder_layers, family,
    has_encoder, load_initial_weights, names, runs_without_checkpoint)
