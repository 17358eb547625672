"""Models by name, so a config picks one with `model.name`, built under a dtype policy."""

import contextlib
from typing import Callable

import keras

from errors import ConfigError

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str):
  """Decorator: makes a model builder `fn(image_size, num_classes, model_config)` findable."""
  def wrap(fn):
    _MODELS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_MODELS)


@contextlib.contextmanager
def _dtype_policy(policy: str):
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def build_model(model_config, image_size: int, num_classes: int,
                dtype_policy: str = 'float32') -> keras.Model:
  """Builds `model_config.name`; layers compute in `dtype_policy`, outputs stay float32."""
  if model_config.name not in _MODELS:
    raise ConfigError(f'Unknown model.name={model_config.name!r}; registered models: '
                      f'{", ".join(names())}.')
  with _dtype_policy(dtype_policy):
    return _MODELS[model_config.name](image_size=image_size, num_classes=num_classes,
                                      model_config=model_config)
