"""Errors that explain themselves: main.py prints their message alone and exits with their code.

Exit status 2: something the user must fix (config, data, workdir); 3: training diverged;
4: a worker of a multi-worker job was lost; 75 (EX_TEMPFAIL): stopped by a signal after
saving a checkpoint, rerun to resume.
"""

import errno


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


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)
_WRITE_PHRASES = ('no space left', 'disk quota', 'read-only file system', 'permission denied')


class WriteFailure(OSError):
  """A write that a library dropped without raising (TensorFlow's event writer), found by
  checking what reached the disk."""


def is_write_failure(error: Exception) -> bool:
  """A full disk, a used-up quota or a folder that cannot be written, whoever raised it
  (Python's OSError, or TensorFlow and TFDS errors that only carry the text)."""
  if isinstance(error, WriteFailure) or (isinstance(error, OSError)
                                         and error.errno in _WRITE_ERRNOS):
    return True
  return any(phrase in str(error).lower() for phrase in _WRITE_PHRASES)




def write_failed(error: Exception, fix: str, what: str = '', kind=UserError) -> UserError:
  """The one message of every write that failed: `Writing <what> failed: <the line of the
  error that says why>. <fix>`, as a `kind` (a UserError, or a DataError for the data)."""
  subject = f'Writing {what} failed' if what else 'Writing failed'
  return kind(f'{subject}: {first_line(error, 300, _WRITE_PHRASES)}. {fix}')


def first_line(error: Exception, limit: int = 200, naming: tuple = ()) -> str:
  """The line of a library's message that says what went wrong, cut to `limit` characters:
  the first that names one of `naming` (lower case), else the first non-empty one. Keras and
  TensorFlow open with lines about graph execution and append object lists and traces."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  line = next((text for text in lines if any(word in text.lower() for word in naming)),
              lines[0] if lines else type(error).__name__)
  return line if len(line) <= limit else line[:limit - 3] + '...'
