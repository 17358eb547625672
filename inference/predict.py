"""--mode=predict: masks (segmentation) or predictions.csv (classification) for the user's
pictures, at each picture's own size."""

import contextlib
import json
import os

from absl import logging
import numpy as np

from data import rasters
from data import sources
from data import spec as data_spec
from errors import DataError, UserError
from inference import loading
from inference import predictor as predictor_lib
from inference import vectors
from interpretability import colormaps
from records import atomic
from records import workdir as workdir_lib
import specs
import tasks


def run(config, workdir: str, images: str, output: str | None) -> list[str]:
  """With the workdir's model or an exported file (predict.artifact). Masks: a class-id mask
  PNG at each picture's own size, a coloured overlay beside it (the data's own class colours
  where it has them) and legend.csv. Classes: predictions.csv with one line per picture."""
  if not images:
    raise UserError('--mode=predict needs --images=a.jpg,b.png (files, folders or globs).')
  run = specs.describe(config)
  prediction = run.prediction
  predictor, source = predictor_lib.load(run, workdir)
  named = loading.picture_paths(images, run.data.bands)
  bands = rasters.band_spec(run.data)
  out_dir = output or os.path.join(workdir, 'predict')
  workdir_lib.ensure_writable_dir(out_dir, '--output' if output else '--workdir')
  written, rows = [], ['picture,class,probability\n']
  colors = colormaps.class_colors(len(run.data.class_names),
                                  sources.own_class_colors(run.data, workdir))
  batch_size, task = run.eval.global_batch_size, predictor.task  # Pictures read at once.
  large = [item for item in named if _reads_in_strips(item[0], bands, predictor)]
  for path, name in large:
    stem, grid = os.path.join(out_dir, name), _grid(run.data, path)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    mask, shown, shown_mask = _strip_mask(
        path, bands, predictor, uncertainty=stem + '_uncertainty.png' if prediction.uncertainty
        else None, probabilities=stem + '_probabilities.tif' if prediction.probabilities
        else None, grid=grid)
    written += _write_mask(out_dir, name, mask, run, shown, shown_mask, colors, grid)
  named_whole = [item for item in named if item not in large]
  for start in range(0, len(named_whole), batch_size):
    chunk = named_whole[start:start + batch_size]
    pictures = [loading.read_picture(path, bands) for path, _ in chunk]
    if 'masks' not in task.outputs:
      probabilities = tasks.as_two_classes(predictor.picture_probabilities(pictures))
      for (path, _), probs in zip(chunk, np.asarray(probabilities)):
        best = int(np.argmax(probs))
        rows.append(f'{path},{run.data.class_names[best]},{probs[best]:.6f}\n')
      continue
    answers = (predictor.masks_and_probabilities(pictures)
               if prediction.uncertainty or prediction.probabilities
               else [(mask, None) for mask in predictor.masks(pictures)])
    for (path, name), picture, (mask, probabilities) in zip(chunk, pictures, answers):
      missing = None if bands is None else ~rasters.valid_pixels(picture, bands.nodata)
      if missing is not None:  # Nothing measured, nothing predicted.
        mask[missing] = tasks.IGNORE
      grid = _grid(run.data, path)
      written += _write_mask(out_dir, name, mask, run, picture, mask, colors, grid)
      stem = os.path.join(out_dir, name)
      if prediction.uncertainty:
        loading.write_png(stem + '_uncertainty.png',
                          _uncertainty_picture(task, probabilities))
      if prediction.probabilities:
        rasters.write_probabilities(stem + '_probabilities.tif', probabilities, missing, grid)
  if 'masks' in task.outputs:  # The overlays' legend.
    legend = ''.join(f'{name},{r},{g},{b}\n' for name, (r, g, b) in zip(
        run.data.class_names, colors.tolist()))
    atomic.write_text(os.path.join(out_dir, 'legend.csv'), 'class,r,g,b\n' + legend)
  else:
    csv_path = os.path.join(out_dir, 'predictions.csv')
    atomic.write_text(csv_path, ''.join(rows))
    written.append(csv_path)
  logging.info('Predicted %d pictures with %s into %s.', len(named), source, out_dir)
  return written


def _write_mask(out_dir: str, name: str, mask: np.ndarray, run: specs.Run,
                shown: np.ndarray, shown_mask: np.ndarray, colors: np.ndarray,
                grid: dict | None) -> list[str]:
  """The class-id mask PNG (multi-label: a 0/1 mask PNG per class, `_mask_<class>.png`; a
  TIFF's also as a GeoTIFF on its grid, a band per class) and, beside it, the overlay of
  `shown_mask` on the picture `shown` (a large raster's: its overview); returns the masks'
  paths."""
  data, prediction = run.data, run.prediction
  stem = os.path.join(out_dir, name)  # A sub-folder's pictures go to that sub-folder.
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  if mask.ndim == 3:
    paths = [f'{stem}_mask_{class_name}.png' for class_name in data.class_names]
    for index, path in enumerate(paths):
      loading.write_png(path, mask[..., index])
  else:
    paths = [stem + '_mask.png']
    loading.write_png(paths[0], mask)
  if grid is not None:
    rasters.write_mask_on_grid(stem + '_mask.tif', mask, grid, tasks.IGNORE)
  if prediction.vectors:
    atomic.write_text(stem + '_mask.geojson', json.dumps(vectors.polygons(
        mask, data.class_names, tolerance_px=prediction.simplify, **(grid or {}))))
  loading.write_png(stem + '_overlay.png', colormaps.with_legend(
      colormaps.mask_overlay(rasters.viewable(shown, data.bands, data.rgb_bands, data.nodata),
                             shown_mask, colors=colors),
      data.class_names, colors))
  return paths


def _uncertainty_picture(task: tasks.Task, probabilities: np.ndarray) -> np.ndarray:
  """uint8 RGB [H, W, 3] of probabilities [H, W, classes]: the task's uncertainty, jet."""
  return colormaps.jet(task.uncertainty(probabilities[None])[0].numpy())


def _grid(data: data_spec.Data, picture_path: str) -> dict | None:
  """The grid (transform, CRS) a raster's outputs are written on (a TIFF's, read once), or
  None for a picture whose outputs are plain pictures."""
  if data.bands and os.path.splitext(picture_path)[1].lower() in rasters.TIFF_EXTENSIONS:
    return rasters.grid_of(picture_path)
  return None


# A raster of more pixels than this is read a strip of rows at a time, each strip's float32
# bands about STRIP_BYTES, and its overlay drawn on an overview of OVERVIEW_SIDE: 8 float32
# bands of 10,000 x 10,000 pixels would be 3.2 GB.
STRIP_PIXELS = 4096 * 4096
STRIP_BYTES = 128 * 2**20
OVERVIEW_SIDE = 2048


def _reads_in_strips(path: str, bands: rasters.BandSpec | None, predictor) -> bool:
  """A large TIFF that the workdir's model slides over at its own scale."""
  if (bands is None or not isinstance(predictor, predictor_lib.Predictor)
      or not predictor.reads_in_strips
      or os.path.splitext(path)[1].lower() not in rasters.TIFF_EXTENSIONS):
    return False
  source = _open_rows(path, bands)
  try:
    return source.height * source.width > STRIP_PIXELS
  finally:
    source.close()


def _open_rows(path: str, bands: rasters.BandSpec) -> rasters.RasterRows:
  try:
    return rasters.RasterRows(path, bands)
  except DataError as e:
    raise UserError(f'--images: {e}') from None


def _strip_mask(path: str, bands: rasters.BandSpec, predictor, uncertainty: str | None = None,
                probabilities: str | None = None, grid: dict | None = None) -> tuple:
  """(uint8 mask at the raster's size, its overview, the mask at the overview's size) of a
  raster slid over a strip at a time: memory follows a strip and the mask, not the bands.
  On request, as the strips come: the `uncertainty` PNG and the `probabilities` TIFF (on
  `grid`) that a picture read whole gets."""
  source = _open_rows(path, bands)
  try:
    task = predictor.task
    channels = task.mask_channels(predictor.num_classes)
    mask = np.zeros((source.height, source.width) + ((channels,) if channels > 1 else ()),
                    np.uint8)
    missing = np.zeros(mask.shape[:2], bool)
    unsure = np.zeros((source.height, source.width, 3), np.uint8) if uncertainty else None

    def read_rows(top: int, bottom: int) -> np.ndarray:
      pixels = source.rows(top, bottom)
      missing[top:bottom] = ~rasters.valid_pixels(pixels, bands.nodata)
      return pixels
    windows_down = max(1, STRIP_BYTES // (predictor.stride[0] * source.width * bands.count * 4))
    with (rasters.probability_strips(probabilities, source.height, source.width,
                                     predictor.num_classes, grid) if probabilities
          else contextlib.nullcontext()) as write_strip:
      for top, strip in predictor.strip_probabilities(read_rows, source.height, windows_down):
        bottom = top + len(strip)
        mask[top:bottom] = task.predicted_labels(strip).numpy()
        if unsure is not None:
          unsure[top:bottom] = _uncertainty_picture(task, strip)
        if write_strip:
          write_strip(strip, missing[top:bottom])
    mask[missing] = tasks.IGNORE
    shown = source.overview(OVERVIEW_SIDE)
  finally:
    source.close()
  if unsure is not None:
    loading.write_png(uncertainty, unsure)
  rows = np.arange(shown.shape[0]) * source.height // shown.shape[0]  # Of the overview's.
  cols = np.arange(shown.shape[1]) * source.width // shown.shape[1]
  logging.info('%s (%dx%d) was predicted a strip at a time; its overlay is drawn on a '
               '%dx%d overview.', path, source.width, source.height, shown.shape[1],
               shown.shape[0])
  return mask, shown, mask[rows][:, cols]
