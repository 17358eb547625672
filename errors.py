"""Errors that explain themselves: main.py prints their message alone and exits with their code.

Exit status 2: something the user must fix (config, data, workdir); 3: training diverged;
4: a worker of a multi-worker job was lost; 75 (EX_TEMPFAIL): stopped by a signal after
saving a checkpoint, rerun to resume.
"""


class UserError(Exception):
  """A problem with the user's config, data or workdir; the message names the fix."""
  exit_code = 2


class ConfigError(UserError):
  """A config field has a value the framework cannot run with."""


class DataError(UserError):
  """The dataset is missing, unreadable or inconsistent."""


class TrainingDiverged(UserError):
  """The loss stayed non-finite (or above train.loss_upper_bound) after every rollback."""
  exit_code = 3


class Preempted(UserError):
  """SIGTERM or SIGINT arrived; a checkpoint was saved at the step boundary."""
  exit_code = 75


class WorkerLost(UserError):
  """Another task of a multi-worker job died or stopped answering."""
  exit_code = 4
