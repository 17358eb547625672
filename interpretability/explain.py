"""Every picture of section 9.4 for one model and a few images: pure, returns uint8 arrays.

Used by the trainer's periodic TensorBoard summaries and by `--mode=explain`.
"""

import time

import keras
import numpy as np

from interpretability import activations
from interpretability import filters
from interpretability import gradcam


def _as_rgb(grid: np.ndarray) -> np.ndarray:
  return np.repeat(grid[..., None], 3, axis=-1) if grid.ndim == 2 else grid


def explain(model: keras.Model, images: np.ndarray, explain_config, class_names,
            segmentation: bool = True) -> dict:
  """{tag: uint8 pictures (N, H, W, 3)} plus {'seconds/<part>': float} timings.

  Tags: activations/<layer> (grids for the first image), filters/<layer> (pattern grids),
  gradcam/<class> (heatmaps over each image, one tag per class).
  """
  images = np.asarray(images, np.float32)
  pictures, seconds = {}, {}

  start = time.perf_counter()
  layers = list(explain_config.activation_layers) or activations.spread_layer_names(
      model, explain_config.num_activation_layers)
  for name, grid in activations.activation_grids(model, images[0], layers).items():
    pictures[f'activations/{name}'] = _as_rgb(grid)[None]
  seconds['activations'] = time.perf_counter() - start

  start = time.perf_counter()
  filter_layers = list(explain_config.filter_layers) or activations.spread_layer_names(
      model, explain_config.num_filter_layers + 1)[:-1]  # The output layer's patterns say little.
  for name in filter_layers:
    patterns = filters.filter_patterns(model, name, filter_indices=np.arange(
        min(explain_config.num_filters, model.get_layer(name).output.shape[-1])))
    pictures[f'filters/{name}'] = filters.pattern_grid(patterns)[None]
  seconds['filters'] = time.perf_counter() - start

  start = time.perf_counter()
  layer = explain_config.gradcam_layer or None
  if segmentation:
    heatmaps = gradcam.seg_gradcam(model, images, layer_name=layer)
    for c, name in enumerate(class_names):
      pictures[f'gradcam/{name}'] = gradcam.overlays(images, heatmaps[:, c])
  else:
    for c, name in enumerate(class_names):
      heatmaps, _ = gradcam.gradcam(model, images, layer_name=layer, class_index=c)
      pictures[f'gradcam/{name}'] = gradcam.overlays(images, heatmaps)
  seconds['gradcam'] = time.perf_counter() - start
  return {**pictures, **{f'seconds/{k}': v for k, v in seconds.items()}}
