"""TensorBoard adapter: the chief writes train/ and eval/ run folders, other tasks nothing."""

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

import errors
from interpretability import gradcam


class Summaries:
  """Thin wrapper over tf.summary writers for the two runs TensorBoard shows side by side."""

  def __init__(self, workdir: str, enabled: bool, runs=('train', 'eval')):
    def writer(name):
      if not enabled:
        return tf.summary.create_noop_writer()
      return tf.summary.create_file_writer(os.path.join(workdir, name))
    self._writers = {run: writer(run) for run in runs}
    self._folders = {run: os.path.join(workdir, run) for run in runs} if enabled else {}
    self._written = {run: _events_bytes(folder) for run, folder in self._folders.items()}
    self._unflushed = set()  # Runs written to since the last flush.

  def _writer(self, run: str):
    self._unflushed.add(run)
    return self._writers[run]

  def scalars(self, run: str, step: int, values: dict) -> None:
    with self._writer(run).as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, float(value))

  def images(self, run: str, step: int, name: str, images: np.ndarray,
             description: str | None = None) -> None:
    """A batch of uint8 HxWx3 pictures under one tag."""
    with self._writer(run).as_default(step=step):
      tf.summary.image(name, np.asarray(images), max_outputs=len(images),
                       description=description)

  def text(self, run: str, step: int, name: str, markdown: str) -> None:
    with self._writer(run).as_default(step=step):
      tf.summary.text(name, markdown)

  def hparams(self, run: str, values: dict, trial_id: str) -> None:
    """`values` as an HParams session of `run`, whose scalars (the validation metrics) become
    its metric columns: several workdirs under one logdir compare in the HParams tab."""
    with self._writer(run).as_default(step=0):
      hparams_api.hparams(values, trial_id=trial_id)

  def flush(self) -> None:
    """Flushes every run and checks that what was written reached the disk: TensorFlow's
    event writer drops events on a full disk or a removed folder without raising."""
    for writer in self._writers.values():
      writer.flush()
    for run in self._unflushed & set(self._folders):
      folder, before = self._folders[run], self._written[run]
      try:
        _probe(folder)
        self._written[run] = _events_bytes(folder)
      except (OSError, tf.errors.OpError) as e:
        raise errors.WriteFailure(f'TensorBoard events could not be written to {folder} '
                                  f'({errors.first_line(e)})') from None
      if self._written[run] <= before:
        raise errors.WriteFailure(f'TensorBoard events did not reach {folder} (its event '
                                  f'files stayed at {before} bytes after a write)')
    self._unflushed.clear()


def _events_bytes(folder: str) -> int:
  """The total size of the folder's event files (0 before the first is written)."""
  if not tf.io.gfile.isdir(folder):
    return 0
  return sum(tf.io.gfile.stat(os.path.join(folder, name)).length
             for name in tf.io.gfile.listdir(folder) if name.startswith('events.out.tfevents'))


def _probe(folder: str) -> None:
  """Writes and removes a small file in `folder`: raises the OSError a full disk, a used-up
  quota or a missing folder gives, which the event writer keeps to itself."""
  path = os.path.join(folder, '.write_probe')
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write('x' * 4096)
  tf.io.gfile.remove(path)


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
