"""The folders a run writes: created with an error that names the path and the fix, the
workdir held by one run at a time, and resumed only with the config it was trained with."""

import datetime
import errno
import fcntl
import json
import os
import socket
import tempfile

from configs import base
from errors import ConfigError, UserError

LOCK_FILE = '.lock'
_HINTS = {
    errno.EROFS: 'the file system is read-only: use a folder on a writable disk',
    errno.EACCES: 'permission denied: use a folder you may write, or change its permissions',
    errno.EPERM: 'permission denied: use a folder you may write, or change its permissions',
    errno.ENOSPC: 'the disk is full: free space or use a folder on another disk',
    errno.EDQUOT: 'the disk quota is used up: free space or use a folder on another disk',
    errno.ENOTDIR: 'a part of the path is a file, not a folder',
}
_held = {}  # Real path of a workdir -> its open lock file, held until the process ends.


def write_problem(error: OSError) -> str:
  """What an OSError on a write means for the user, in a few words."""
  return _HINTS.get(error.errno, error.strerror or str(error))


def ensure_writable_dir(path: str, flag: str) -> None:
  """Creates `path` if needed and checks that a file can be written there; a UserError naming
  `flag` (e.g. --workdir) when it is a file, sits under a file, or cannot be written."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'{flag}: {path} is a file, not a folder: name a folder (it is created if '
                    'missing).')
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise UserError(f'{flag}: {path} cannot be written: {write_problem(e)}.') from None


def lock(workdir: str, name: str = LOCK_FILE, what: str = 'another run') -> None:
  """Holds WORKDIR/<name> (an fcntl lock) for the rest of this process's life, so a second run
  on the same workdir stops before touching it. The lock vanishes with the process: a run
  killed with -9 leaves none behind. A continuous_eval sidecar holds its own lock file."""
  key = os.path.join(os.path.realpath(workdir), name)
  if key in _held:
    return
  lock_file = open(os.path.join(workdir, name), 'a+')  # pylint: disable=consider-using-with
  try:
    fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    lock_file.seek(0)
    holder = lock_file.read().strip() or 'a process that wrote no details'
    lock_file.close()
    raise UserError(f'--workdir={workdir} is in use by {what} ({holder}). Wait for it to '
                    'end or stop it, or use another --workdir; predict, score, explain and '
                    'export may read it meanwhile.') from None
  lock_file.seek(0)
  lock_file.truncate()
  since = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  lock_file.write(f'pid {os.getpid()} on {socket.gethostname()} since {since}\n')
  lock_file.flush()
  _held[key] = lock_file


# Fields that define what a run trains (and what its best model is best at); the others
# (epochs, runtime, the rest of eval, summaries, predict, paths) may change on resume.
RUN_IDENTITY = ('task', 'seed', 'model', 'data.source', 'data.image_size', 'data.resize',
                'data.crop_size', 'data.class_names',
                'data.tfds_name', 'data.label_map', 'data.mask_colors', 'data.ignore_index',
                'train.class_weights',
                'data.validation_fraction', 'data.train_split', 'data.eval_split',
                'data.augment', 'train.global_batch_size',
                'train.gradient_accumulation_steps', 'train.ema_decay', 'train.global_clipnorm',
                'train.optimizer', 'train.learning_rate', 'train.weight_decay',
                'train.loss', 'train.loss_weights', 'train.focal_gamma', 'train.tversky_alpha',
                'train.tversky_beta', 'train.top_k_percent_pixels', 'train.label_smoothing',
                'train.balance_classes', 'train.schedule',
                'train.warmup_steps',
                'train.steps_per_epoch', 'eval.best_metric')
# Fields (and whole sections) that may change when a run resumes: how long and how it runs,
# what it logs, and how a trained model is read (model.thresholds: a run resumes, and is
# evaluated, with them changed). Every field of configs/base.py is declared here or in
# RUN_IDENTITY (the most specific declaration wins; tests/test_workdir.py checks it).
RESUMABLE = ('model.thresholds', 'runtime', 'summaries', 'predict', 'export',
             'train.epochs', 'train.steps', 'train.steps_per_call',
             'train.encoder_lr_multiplier', 'train.checkpoint_every_steps',
             'train.max_checkpoints_to_keep', 'train.log_every_steps', 'train.loss_upper_bound',
             'train.recovery_max_trials',
             'eval.global_batch_size', 'eval.every_epochs', 'eval.continuous_timeout_s',
             'eval.patience', 'eval.worst_pictures',
             # Where the data is and how it streams (what is read is data.source's fields and
             # the prepared cache's key, data/input_pipeline.py).
             'data.image_key', 'data.mask_key', 'data.data_dir', 'data.manual_dir',
             'data.download', 'data.folder', 'data.files', 'data.synthetic', 'data.test_split',
             'data.skip_bad_examples', 'data.label_feature', 'data.shuffle_buffer',
             'data.deterministic', 'data.cache', 'data.cache_budget_gb',
             'data.autotune_ram_budget_gb', 'data.service_address', 'data.service_mode',
             'data.crop_sampling', 'data.crop_temperature', 'data.crop_centred_fraction',
             'data.bands', 'data.read_bands', 'data.rgb_bands', 'data.nodata', 'data.band_stats',
             'data.annotations')


def declaration(field: str) -> str | None:
  """'identity' or 'resumable': the most specific of RUN_IDENTITY and RESUMABLE that holds
  the dotted `field`; None where neither does."""
  found = [(len(name), kind) for kind, names in (('identity', RUN_IDENTITY),
                                                 ('resumable', RESUMABLE))
           for name in names if field == name or field.startswith(name + '.')]
  return max(found)[1] if found else None


def _with_defaults(saved: dict, defaults: dict) -> dict:
  """`saved` with the fields it lacks (added to the framework since it was written) taken from
  `defaults`: an old workdir resumes while those fields keep their default."""
  merged = dict(saved)
  for key, default in defaults.items():
    if key not in merged:
      merged[key] = default
    elif isinstance(merged[key], dict) and isinstance(default, dict):
      merged[key] = _with_defaults(merged[key], default)
  return merged


def field_value(tree, dotted: str):
  """The value of a dotted field such as `train.global_batch_size` in a ConfigDict or in its
  saved JSON (a dict); None where a part of the path is missing."""
  value = tree
  for part in dotted.split('.'):
    value = value.get(part) if value is not None else None
  return value


def check_same_run(record: str, saved_config_json: str, workdir: str) -> None:
  """Refuses to resume a workdir whose checkpoints were trained with a different config
  (`record`: the config now, as checkpoints.config_record writes it)."""
  try:
    saved = json.loads(saved_config_json)
  except ValueError as e:
    raise ConfigError(f'--workdir={workdir}: its config.json is damaged ({e}); '
                      'it records the config the checkpoints were trained with. Restore it, or '
                      'delete it to resume with the config given now.') from None
  saved = _with_defaults(saved, json.loads(base.get_base_config().to_json_best_effort()))
  current = json.loads(record)
  for field in RESUMABLE:  # Those inside a part of the run's identity are left out of it.
    *parents, name = field.split('.')
    if parents and declaration('.'.join(parents)) == 'identity':
      for values in (saved, current):
        for parent in parents:
          values = values.get(parent, {})
        values.pop(name, None)
  differences = []
  for field in RUN_IDENTITY:
    old, new = field_value(saved, field), field_value(current, field)
    if old != new:
      differences.append(f'{field}: {old!r} in the workdir, {new!r} now')
  if differences:
    raise ConfigError(
        f'--workdir={workdir} holds checkpoints of a run with a different config ('
        + '; '.join(differences) + '). To resume it, rerun with its config (saved in '
        f'{workdir}/config.json); to start fresh, use a new --workdir.')
