"""Training state on disk: tf.train checkpoints, the best model and the resolved config.

Every file a crash could leave half-written is written beside its target and renamed into
place, so a reader sees the old file or the new one, never a torn one.
"""

import json
import os

from absl import logging
import keras
import tensorflow as tf

BEST_MODEL = 'best_model.keras'
CONFIG_FILE = 'config.json'


def _staging_path(path: str) -> str:
  stem, ext = os.path.splitext(path)
  return f'{stem}.tmp-{os.getpid()}{ext}'


def save_model_atomically(model: keras.Model, path: str) -> None:
  staging = _staging_path(path)
  model.save(staging)
  os.replace(staging, path)


def write_text_atomically(path: str, text: str) -> None:
  staging = _staging_path(path)
  with open(staging, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(staging, path)


def write_config(config, workdir: str) -> None:
  """The resolved config (file + overrides), for the record and for resuming."""
  write_text_atomically(os.path.join(workdir, CONFIG_FILE),
                        json.dumps(json.loads(config.to_json_best_effort()), indent=2,
                                   sort_keys=True) + '\n')


class TrainState:
  """Model, optimizer, step and best validation loss, saved by a CheckpointManager."""

  def __init__(self, model: keras.Model, optimizer, directory: str, max_to_keep: int):
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    self.best_val_loss = tf.Variable(float('inf'), dtype=tf.float64, trainable=False,
                                     name='best_val_loss')
    # Keras 3 models are not tracked deeply by tf.train.Checkpoint: name every variable
    # (batch-norm statistics included) so all of them are saved, under readable keys.
    self.checkpoint = tf.train.Checkpoint(
        model={v.path: v for v in model.variables}, optimizer=optimizer, step=self.step,
        best_val_loss=self.best_val_loss)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=max_to_keep)

  def restore_latest(self) -> int:
    """Restores the newest checkpoint, if any; returns the step training resumes from."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resumed from %s at step %d.', latest, int(self.step))
    return int(self.step)

  def save(self) -> str:
    path = self.manager.save(checkpoint_number=int(self.step))
    logging.info('Saved checkpoint %s', path)
    return path
