"""Every picture of section 9.4 for one model and a batch of images: pure, returns arrays.

Used by the trainer's periodic TensorBoard summaries and by `--mode=explain`; the callers
decide where the pictures go and which ground truth scores the heatmaps.
"""

import dataclasses
import time

import keras
import numpy as np

from interpretability import activations
from interpretability import filters
from interpretability import gradcam
from interpretability import pointing
import tasks


@dataclasses.dataclass
class ClassMaps:
  """Grad-CAM of one explained class (or class rank) for every picture."""
  label: str  # A class name, or 'top<k>' for a classifier's k-th ranked class.
  heatmaps: gradcam.Heatmaps  # maps (N, h, w), peaks (N,)
  classes: np.ndarray  # (N,) the class index explained in each picture.


@dataclasses.dataclass
class Explanation:
  activation_grids: dict  # layer -> [uint8 RGB grid per picture], for the first pictures.
  filter_grids: dict  # layer -> uint8 RGB grid of its filter patterns.
  gradcam_layer: str
  class_maps: list  # [ClassMaps]
  seconds: dict  # part -> seconds spent.


def _as_rgb(grid: np.ndarray) -> np.ndarray:
  return np.repeat(grid[..., None], 3, axis=-1) if grid.ndim == 2 else grid


def _chunks(count: int, size: int):
  return [slice(start, start + size) for start in range(0, count, size)]


def class_maps(model: keras.Model, images: np.ndarray, layer: str, class_names,
               task: tasks.Task, top_classes: int = 0, batch_size: int = 8) -> list:
  """Grad-CAM of every class (segmentation, or a classifier with top_classes=0), else of each
  picture's `top_classes` highest-scoring classes; computed `batch_size` pictures at a time."""
  parts = _chunks(len(images), batch_size)
  if task.per_pixel:
    heatmaps = gradcam.concatenate(
        [gradcam.seg_gradcam(model, images[p], layer_name=layer, task=task) for p in parts])
    return [ClassMaps(name, gradcam.Heatmaps(heatmaps.maps[:, c], heatmaps.peaks[:, c]),
                      np.full(len(images), c)) for c, name in enumerate(class_names)]
  if top_classes:
    ranked = np.concatenate([gradcam.top_classes(model, images[p], top_classes) for p in parts])
    wanted = [(f'top{k + 1}', ranked[:, k]) for k in range(ranked.shape[1])]
  else:
    wanted = [(name, np.full(len(images), c)) for c, name in enumerate(class_names)]
  return [ClassMaps(label, gradcam.concatenate(
      [gradcam.gradcam(model, images[p], layer, class_index=classes[p])[0] for p in parts]),
                    classes) for label, classes in wanted]


def explain(model: keras.Model, images: np.ndarray, explain_config, class_names,
            task: tasks.Task = tasks.SEGMENTATION, activation_pictures: int = 1,
            batch_size: int = 8, rgb_bands: tuple = ()) -> Explanation:
  """Activation grids of the first `activation_pictures` images, filter patterns (a raster
  model's shown on `rgb_bands`), and Grad-CAM of every image on `explain_config.gradcam_layer`
  (empty: gradcam.default_layer)."""
  images = np.asarray(images, np.float32)
  seconds = {}

  start = time.perf_counter()
  layers = list(explain_config.activation_layers) or activations.spread_layer_names(
      model, explain_config.num_activation_layers)
  activation_grids = {name: [] for name in layers}
  for image in images[:activation_pictures]:
    for name, grid in activations.activation_grids(model, image, layers).items():
      activation_grids[name].append(_as_rgb(grid))
  seconds['activations'] = time.perf_counter() - start

  start = time.perf_counter()
  filter_layers = list(explain_config.filter_layers) or activations.spread_layer_names(
      model, explain_config.num_filter_layers + 1)[:-1]  # The output layer's patterns say little.
  filter_grids = {}
  for name in filter_layers:
    patterns = filters.filter_patterns(model, name, filter_indices=np.arange(
        min(explain_config.num_filters, model.get_layer(name).output.shape[-1])))
    filter_grids[name] = filters.pattern_grid(patterns, rgb_bands)
  seconds['filters'] = time.perf_counter() - start

  start = time.perf_counter()
  layer = explain_config.gradcam_layer or gradcam.default_layer(model, task)
  maps = class_maps(model, images, layer, class_names, task,
                    explain_config.top_classes, batch_size)
  seconds['gradcam'] = time.perf_counter() - start
  return Explanation(activation_grids, filter_grids, layer, maps, seconds)


def score(explanation: Explanation, regions: list) -> list:
  """Pointing scores per picture: `regions[i]` maps each ClassMaps label to a boolean ground
  truth mask at picture i's resolution, and COUNTED to the pixels that count (None: picture i
  has no ground truth)."""
  scored = []
  for i, picture_regions in enumerate(regions):
    if picture_regions is None:
      scored.append(None)
      continue
    scored.append({m.label: pointing.region_scores(m.heatmaps.maps[i], m.heatmaps.peaks[i],
                                                   picture_regions[m.label],
                                                   picture_regions.get(COUNTED))
                   for m in explanation.class_maps})
  return scored


TRIMAP_BACKGROUND = 1  # Label of the background in a trimap mask (pet 0, background 1, outline 2).
COUNTED = '__counted__'  # A regions entry: the pixels that count (not ignored).


def mask_regions(mask: np.ndarray, explanation: Explanation, task: tasks.Task) -> dict:
  """Ground truth per explained label from a label mask (H, W; multi-label: H, W, classes): a
  segmenter's class c is scored against where the mask holds c, over the pixels that count; a
  classifier's classes against the pet (mask != background of a trimap), the object a
  cat-or-dog decision should rest on."""
  mask = np.asarray(mask)
  if task.per_pixel:
    return {COUNTED: task.counted(mask),
            **{m.label: task.class_region(mask, m.classes[0]) for m in explanation.class_maps}}
  return {m.label: mask != TRIMAP_BACKGROUND for m in explanation.class_maps}
