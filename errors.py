"""Errors that the user can fix: main.py prints their message alone, without a stack trace."""


class UserError(Exception):
  """A problem with the user's config, data or workdir; the message names the fix."""


class ConfigError(UserError):
  """A config field has a value the framework cannot run with."""


class DataError(UserError):
  """The dataset is missing, unreadable or inconsistent."""
