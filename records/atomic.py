"""Files a crash could leave half-written are written beside their target and renamed into
place, so a reader (predict beside a training, a rerun) sees the old file or the new one, never
a torn one: the best model, config.json, score.json, predictions and the sidecar's record."""

import os

import keras
import tensorflow as tf

from errors import UserError, write_failed


def _staging_path(path: str) -> str:
  stem, ext = os.path.splitext(path)
  return f'{stem}.tmp-{os.getpid()}{ext}'


def write_failed_in_workdir(what: str, path: str, error: Exception) -> UserError:
  return write_failed(error, 'Free disk space or make the workdir writable, then rerun the '
                      'same command; the files written before are intact.', f'{what} to {path}')


def save_model(model: keras.Model, path: str) -> None:
  staging = _staging_path(path)
  try:
    model.save(staging)
    os.replace(staging, path)
  except (OSError, tf.errors.OpError) as e:
    if os.path.exists(staging):
      os.remove(staging)
    raise write_failed_in_workdir('the best model', path, e) from e


def write_text(path: str, text: str) -> None:
  staging = _staging_path(path)
  try:
    with open(staging, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(staging, path)
  except OSError as e:
    raise write_failed_in_workdir(os.path.basename(path), path, e) from e
