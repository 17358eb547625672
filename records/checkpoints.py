"""Training state on disk: tf.train checkpoints (step, best evaluation value, model, optimizer
and moving average), the resolved config, and reading them back past damaged ones; the best
model and config.json are written atomically (records/atomic.py)."""

import glob
import json
import os
import shutil

from absl import logging
import keras
import tensorflow as tf

from errors import UserError, first_line
from modeling import weights
from records import atomic

BEST_MODEL = weights.RUN_BEST_MODEL  # model.weights=<workdir> starts a new run from it.
# Beside it: the evaluation that made it best (what predicting reads of it: tuned thresholds).
BEST_RESULTS = 'best_model.json'


def read_best_results(workdir: str) -> dict | None:
  """The evaluation results written with the workdir's best model, or None."""
  try:
    with open(os.path.join(workdir, BEST_RESULTS)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


def tracked_model(model: keras.Model) -> dict:
  """Every model variable by path: Keras 3 models are not tracked deeply by tf.train.Checkpoint,
  so naming them is what saves all of them (batch-norm statistics included). Keras numbers the
  names it makes process-wide (seed_generator_4, keras-hub's sequential_3), so a model built
  after another would not find its own: a top-level random layer's seed state is named by its
  layer, and the other numbered names by their order (weights.variable_keys)."""
  owners = {id(v): layer.name for layer in model.layers for v in layer.variables
            if v.path.startswith('seed_generator')}
  return {(f'{owners[id(v)]}/{v.path.split("/", 1)[-1]}' if id(v) in owners else key): v
          for key, v in weights.variable_keys(model, model.variables).items()}


def config_record(config) -> str:
  """The resolved config (file + overrides) as config.json holds it: JSON, keys sorted."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True) + '\n'


def write_config(record: str, workdir: str) -> None:
  """`config_record`'s text in the workdir, for the record and for resuming."""
  atomic.write_text(os.path.join(workdir, CONFIG_FILE), record)


def restore_newest_readable(checkpoint: tf.train.Checkpoint, directory: str, fix: str,
                            partial: bool = False) -> str | None:
  """Restores the newest checkpoint in `directory` that loads and returns its path (None when
  there is none). One that fails (truncated, corrupt, of another network) is logged and the
  one before it tried; when none loads, a UserError lists each one's reason and `fix`."""
  # Read the state file now: in a multi-worker job the chief writes it, not this process.
  # TensorFlow ignores a damaged one (as if there were no checkpoint): then the files decide.
  candidates = list(reversed(listed_checkpoints(directory)))
  if not candidates:
    candidates = sorted(glob.glob(os.path.join(glob.escape(directory), 'ckpt-*.index')),
                        key=checkpoint_step, reverse=True)
    if candidates:
      logging.warning('%s/checkpoint does not list the checkpoints there; trying them newest '
                      'first.', directory)
  reasons = []
  for path in (p.removesuffix('.index') for p in candidates):
    try:
      status = checkpoint.restore(path)
      if partial:
        status.expect_partial().assert_existing_objects_matched()
      else:
        status.assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except  # Truncation raises IndexError too.
      reasons.append(f'{os.path.basename(path)}: {first_line(e, 160)}')
      logging.warning('Checkpoint %s cannot be read (%s); trying the one before it.', path,
                      first_line(e))
      continue
    return path
  if reasons:
    raise UserError(f'None of the checkpoints in {directory} can be read ('
                    + '; '.join(reasons) + f'). {fix}')
  return None


def has_checkpoint(directory: str) -> bool:
  """Whether `directory` holds any checkpoint file, whatever its state file says."""
  return bool(glob.glob(os.path.join(glob.escape(directory), 'ckpt-*.index')))


def _set_aside_unreadable_state_file(directory: str) -> None:
  """An empty or torn `checkpoint` state file makes TensorFlow's CheckpointManager raise; it is
  renamed to checkpoint.damaged (logged) and the ckpt-* files are found without it."""
  path = os.path.join(directory, 'checkpoint')
  if not os.path.isfile(path):
    return
  try:
    tf.train.get_checkpoint_state(directory)
  except (tf.errors.OpError, ValueError) as e:
    os.replace(path, path + '.damaged')
    logging.warning('%s cannot be read (%s); set aside as checkpoint.damaged.', path,
                    first_line(e))


def listed_checkpoints(directory: str) -> list[str]:
  """The checkpoint paths `directory`'s state file lists, oldest first; [] when it has none,
  or a damaged one (being rewritten, or torn)."""
  try:
    state = tf.train.get_checkpoint_state(directory) if os.path.isdir(directory) else None
  except (tf.errors.OpError, ValueError):
    state = None
  return list(state.all_model_checkpoint_paths) if state else []


def checkpoint_step(path: str) -> int:
  """N of a checkpoint path `.../ckpt-N` (or of its `ckpt-N.index` file); -1 for another name."""
  digits = os.path.basename(path).removesuffix('.index')[len('ckpt-'):]
  return int(digits) if digits.isdigit() else -1


_COUNTER_KEY = 'evals_since_best/.ATTRIBUTES/VARIABLE_VALUE'
# The moving average of the trainable weights (train.ema_decay), saved beside them in their
# order: what evaluation, best_model.keras and a model loaded from a checkpoint use.
_AVERAGE_KEY = 'ema'


def restore_moving_average(model: keras.Model, path: str) -> None:
  """The model's trainable weights set to the moving average the checkpoint at `path` holds."""
  tf.train.Checkpoint(**{_AVERAGE_KEY: list(model.trainable_variables)}).restore(
      path).expect_partial()


class TrainState:
  """Model, optimizer, step and best evaluation so far, saved by a CheckpointManager.

  Multi-worker: every worker saves (TensorFlow's pattern), the chief into `directory`, the
  others into their own `scratch_directory` that is deleted after each save; every worker
  restores from `directory`, the chief's.
  """

  def __init__(self, model: keras.Model, optimizer, directory: str, max_to_keep: int,
               scratch_directory: str | None = None, ema: list | None = None):
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    # The best eval.best_metric so far, negated when higher is better: lower always wins.
    self.best_eval = tf.Variable(float('inf'), dtype=tf.float64, trainable=False,
                                 name='best_eval')
    # Evaluations since the best one (eval.patience). Saved with the rest, but restored apart
    # (`_COUNTER_KEY`): checkpoints written before it existed still restore.
    self.evals_since_best = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name='evals_since_best')
    tracked = dict(model=tracked_model(model), optimizer=optimizer, step=self.step,
                   best_eval=self.best_eval, **({_AVERAGE_KEY: ema} if ema else {}))
    self._restored = tf.train.Checkpoint(**tracked)
    self.checkpoint = tf.train.Checkpoint(**tracked, evals_since_best=self.evals_since_best)
    _set_aside_unreadable_state_file(directory)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=max_to_keep)
    self._scratch = scratch_directory
    self._scratch_manager = (tf.train.CheckpointManager(self.checkpoint, scratch_directory,
                                                        max_to_keep=1)
                             if scratch_directory else None)

  def restore_latest(self) -> int:
    """Restores the newest readable checkpoint, if any; returns the step to resume from.

    A checkpoint that fails to load (truncated, corrupt) is reported and the one before it
    is used; if none loads, the run stops rather than silently starting over.
    """
    path = restore_newest_readable(self._restored, self.manager.directory,
                                   'Move the folder away to start from scratch.')
    if path is None:
      return 0
    reader = tf.train.load_checkpoint(path)
    self.evals_since_best.assign(
        reader.get_tensor(_COUNTER_KEY) if reader.has_tensor(_COUNTER_KEY) else 0)
    logging.info('Resumed from %s at step %d.', path, int(self.step))
    return int(self.step)

  def path_at(self, step: int) -> str:
    """Where the chief's checkpoint of `step` is (what every worker restores from)."""
    return os.path.join(self.manager.directory, f'ckpt-{step}')

  @property
  def latest(self) -> str | None:
    return tf.train.latest_checkpoint(self.manager.directory)

  def save(self) -> str:
    manager = self._scratch_manager or self.manager
    try:
      path = manager.save(checkpoint_number=int(self.step))
    except (OSError, tf.errors.OpError) as e:
      raise atomic.write_failed_in_workdir(f'the checkpoint of step {int(self.step)}',
                                           manager.directory,
                          e) from e
    if self._scratch_manager:
      shutil.rmtree(self._scratch, ignore_errors=True)
      return os.path.join(self.manager.directory, os.path.basename(path))
    logging.info('Saved checkpoint %s', path)
    return path
