"""Models by name, so a config picks one with `model.name`, built under a dtype policy."""

import contextlib
from typing import Callable

import keras

from errors import ConfigError

_MODELS: dict[str, Callable[..., keras.Model]] = {}
_SIZE_MULTIPLES: dict[str, int] = {}
_ENCODERS: dict[str, Callable[[keras.Model], list]] = {}


def register(name: str, size_multiple: int = 1,
             encoder_layers: Callable[[keras.Model], list] | None = None):
  """Decorator: makes a model builder `fn(image_size, num_classes, model_config)` findable.

  `size_multiple`: the model's total stride; input sides must be a multiple of it.
  `encoder_layers(model)`: for models with a (pretrained) encoder, its layers that train.
  """
  def wrap(fn):
    _MODELS[name] = fn
    _SIZE_MULTIPLES[name] = size_multiple
    if encoder_layers:
      _ENCODERS[name] = encoder_layers
    return fn
  return wrap


def has_encoder(name: str) -> bool:
  return name in _ENCODERS


def encoder_layers(name: str, model: keras.Model) -> list:
  """The layers model.freeze_encoder_epochs freezes; none for a model without an encoder."""
  return _ENCODERS[name](model) if name in _ENCODERS else []


def check_model(name: str, image_size: int, field: str = 'data.image_size') -> None:
  """A clear error for an unknown model or an input size (config `field`) it cannot take."""
  if name not in _MODELS:
    raise ConfigError(f'Unknown model.name={name!r}; registered models: {", ".join(names())}.')
  multiple = _SIZE_MULTIPLES[name]
  if image_size % multiple:
    lower = image_size // multiple * multiple
    raise ConfigError(f'model.name={name} takes {field} that is a multiple of '
                      f'{multiple} (its total stride): {image_size} is not; use '
                      f'{lower or multiple} or {lower + multiple}.')


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
  check_model(model_config.name, image_size)
  with _dtype_policy(dtype_policy):
    return _MODELS[model_config.name](image_size=image_size, num_classes=num_classes,
                                      model_config=model_config)
