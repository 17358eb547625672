"""--mode=predict: masks (segmentation) or predictions.csv (classification) for the user's
pictures, at each picture's own size."""

import os

from absl import logging
import numpy as np

from data import rasters
from data import sources
from errors import UserError
from inference import loading
from inference import predictor as predictor_lib
from interpretability import colormaps
import tasks
from training import atomic
from training import workdir as workdir_lib


def run(config, workdir: str, images: str, output: str | None) -> list[str]:
  """With the workdir's model or an exported file (predict.artifact). Masks: a class-id mask
  PNG at each picture's own size, a coloured overlay beside it (the data's own class colours
  where it has them) and legend.csv. Classes: predictions.csv with one line per picture."""
  if not images:
    raise UserError('--mode=predict needs --images=a.jpg,b.png (files, folders or globs).')
  predictor, source = predictor_lib.load(config, workdir)
  named = loading.picture_paths(images, config.data.bands)
  bands = rasters.band_spec(config.data)
  out_dir = output or os.path.join(workdir, 'predict')
  workdir_lib.ensure_writable_dir(out_dir, '--output' if output else '--workdir')
  written, rows = [], ['picture,class,probability\n']
  colors = colormaps.class_colors(len(config.data.class_names),
                                  sources.own_class_colors(config.data, workdir))
  batch_size, task = config.eval.global_batch_size, tasks.of(config)
  for start in range(0, len(named), batch_size):
    chunk = named[start:start + batch_size]
    pictures = [loading.read_picture(path, bands) for path, _ in chunk]
    if 'masks' not in task.outputs:
      probabilities = tasks.as_two_classes(predictor.picture_probabilities(pictures))
      for (path, _), probs in zip(chunk, np.asarray(probabilities)):
        best = int(np.argmax(probs))
        rows.append(f'{path},{config.data.class_names[best]},{probs[best]:.6f}\n')
      continue
    for (_, name), picture, mask in zip(chunk, pictures, predictor.masks(pictures)):
      stem = os.path.join(out_dir, name)  # A sub-folder's pictures go to that sub-folder.
      os.makedirs(os.path.dirname(stem), exist_ok=True)
      loading.write_png(stem + '_mask.png', mask)
      loading.write_png(stem + '_overlay.png', colormaps.with_legend(
          colormaps.mask_overlay(rasters.viewable(picture, config.data.bands,
                                                  config.data.rgb_bands, config.data.nodata), mask,
                                 colors=colors), config.data.class_names, colors))
      written.append(stem + '_mask.png')
  if 'masks' in task.outputs:  # The overlays' legend.
    legend = ''.join(f'{name},{r},{g},{b}\n' for name, (r, g, b) in zip(
        config.data.class_names, colors.tolist()))
    atomic.write_text(os.path.join(out_dir, 'legend.csv'), 'class,r,g,b\n' + legend)
  else:
    csv_path = os.path.join(out_dir, 'predictions.csv')
    atomic.write_text(csv_path, ''.join(rows))
    written.append(csv_path)
  logging.info('Predicted %d pictures with %s into %s.', len(named), source, out_dir)
  return written
