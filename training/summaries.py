"""TensorBoard adapter: the chief writes train/ and eval/ run folders, other tasks nothing."""

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from interpretability import gradcam


class Summaries:
  """Thin wrapper over tf.summary writers for the two runs TensorBoard shows side by side."""

  def __init__(self, workdir: str, enabled: bool, runs=('train', 'eval')):
    def writer(name):
      if not enabled:
        return tf.summary.create_noop_writer()
      return tf.summary.create_file_writer(os.path.join(workdir, name))
    self._writers = {run: writer(run) for run in runs}

  def scalars(self, run: str, step: int, values: dict) -> None:
    with self._writers[run].as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, float(value))

  def images(self, run: str, step: int, name: str, images: np.ndarray) -> None:
    """A batch of uint8 HxWx3 pictures under one tag."""
    with self._writers[run].as_default(step=step):
      tf.summary.image(name, np.asarray(images), max_outputs=len(images))

  def text(self, run: str, step: int, name: str, markdown: str) -> None:
    with self._writers[run].as_default(step=step):
      tf.summary.text(name, markdown)

  def hparams(self, run: str, values: dict, trial_id: str) -> None:
    """`values` as an HParams session of `run`, whose scalars (the validation metrics) become
    its metric columns: several workdirs under one logdir compare in the HParams tab."""
    with self._writers[run].as_default(step=0):
      hparams_api.hparams(values, trial_id=trial_id)

  def flush(self) -> None:
    for writer in self._writers.values():
      writer.flush()


def write_explanation(summaries: Summaries, run: str, step: int, images: np.ndarray,
                      explanation, pointing_summary: dict | None = None) -> None:
  """An Explanation as TensorBoard pictures: activations/<layer> (its first picture),
  filters/<layer>, gradcam/<label> (overlays on `images`), and gradcam/<label>/energy_lift
  scalars from a pointing.summarize result."""
  for layer, grids in explanation.activation_grids.items():
    summaries.images(run, step, f'activations/{layer}', grids[0][None])
  for layer, grid in explanation.filter_grids.items():
    summaries.images(run, step, f'filters/{layer}', grid[None])
  for maps in explanation.class_maps:
    summaries.images(run, step, f'gradcam/{maps.label}',
                     gradcam.overlays(images, maps.heatmaps.maps))
  if pointing_summary:
    summaries.scalars(run, step, {f'gradcam/{label}/{key}': value
                                  for label, values in pointing_summary.items()
                                  for key, value in values.items()
                                  if key in ('energy_lift', 'non_blank')})


def scalar_fields(config, prefix: str = '') -> dict:
  """The config's fields as {dotted name: bool, int, float or str} (sequences as text, unset
  fields left out): what the HParams dashboard can show in a column."""
  fields = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      fields.update(scalar_fields(value, name + '.'))
    elif isinstance(value, (bool, int, float, str)):
      fields[name] = value
    elif isinstance(value, (tuple, list)):
      fields[name] = ','.join(str(v) for v in value)
  return fields
