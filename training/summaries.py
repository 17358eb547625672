"""TensorBoard adapter: the chief writes train/ and eval/ run folders, other tasks nothing."""

import os

import numpy as np
import tensorflow as tf


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

  def flush(self) -> None:
    for writer in self._writers.values():
      writer.flush()
