"""Models by name, so a config picks one with `model.name`, built under a dtype policy."""

import contextlib
from typing import Callable

import keras

from errors import ConfigError
from modeling import weights as weights_lib
from sizes import describe, sides

_MODELS: dict[str, Callable[..., keras.Model]] = {}
_SIZE_MULTIPLES: dict[str, int] = {}
_ENCODERS: dict[str, Callable[[keras.Model], list]] = {}
_CHECKS: dict[str, Callable] = {}
# keras.applications networks that load 'imagenet' and Keras' own .h5 files, by model name.
_APPLICATIONS: dict[str, Callable[..., keras.Model]] = {}
_RUNS_WITHOUT_CHECKPOINT: set[str] = set()


def register(name: str, size_multiple: int = 1,
             encoder_layers: Callable[[keras.Model], list] | None = None,
             check: Callable | None = None,
             application: Callable[..., keras.Model] | None = None,
             runs_without_checkpoint: bool = False):
  """Decorator: makes a model builder `fn(image_size, num_classes, model_config)` findable.

  `size_multiple`: the model's total stride; input sides must be a multiple of it.
  `encoder_layers(model)`: for models with a (pretrained) encoder, its layers that train.
  `check(model_config, image_size, field)`: raises a ConfigError for fields (or an input size,
  config `field`) the model cannot be built with.
  `application(model_config, image_size, num_classes, weights)`: the keras.applications
  network inside the model, built alone with `weights` ('imagenet' or Keras' own .h5 file)
  loaded: the source those two kinds of model.weights are copied from.
  `runs_without_checkpoint`: model.weights can hold the whole network, head included, so
  predict, score, explain and export may use the model without a trained run.
  """
  def wrap(fn):
    _MODELS[name] = fn
    _SIZE_MULTIPLES[name] = size_multiple
    if encoder_layers:
      _ENCODERS[name] = encoder_layers
    if check:
      _CHECKS[name] = check
    if application:
      _APPLICATIONS[name] = application
    if runs_without_checkpoint:
      _RUNS_WITHOUT_CHECKPOINT.add(name)
    return fn
  return wrap


def has_encoder(name: str) -> bool:
  return name in _ENCODERS


def encoder_layers(name: str, model: keras.Model) -> list:
  """The layers model.freeze_encoder_epochs freezes; none for a model without an encoder."""
  return _ENCODERS[name](model) if name in _ENCODERS else []


def runs_without_checkpoint(name: str) -> bool:
  return name in _RUNS_WITHOUT_CHECKPOINT


def check_model(model_config, image_size: int, field: str = 'data.image_size') -> None:
  """A clear error for an unknown model, fields it cannot be built with or an input size
  (config `field`) it cannot take."""
  name = model_config.name
  if name not in _MODELS:
    raise ConfigError(f'Unknown model.name={name!r}; registered models: {", ".join(names())}.')
  if name in _CHECKS:
    _CHECKS[name](model_config, image_size, field)
  if model_config.weights == weights_lib.IMAGENET and name not in _APPLICATIONS:
    raise ConfigError(f"model.weights='imagenet' is Keras' download for "
                      f'{" and ".join(sorted(_APPLICATIONS))}; model.name={name} starts from a '
                      'keras-hub preset name or folder (BUILD.md "Model zoo"), a file, a run, '
                      "or 'random'.")
  multiple = _SIZE_MULTIPLES[name]
  for side in sides(image_size):
    if side % multiple:
      lower = side // multiple * multiple
      square = isinstance(image_size, int)
      raise ConfigError(f'model.name={name} takes {field} that is a multiple of {multiple} '
                        f'(its total stride): {describe(image_size)} is not; use '
                        + (f'{lower} or {lower + multiple}' if lower else f'{multiple}')
                        + ('.' if square else f' for its side {side}.'))


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
                dtype_policy: str = 'float32', head: str | None = None) -> keras.Model:
  """Builds `model_config.name` (the architecture; `load_initial_weights` fills it); layers
  compute in `dtype_policy`, outputs stay float32. `head`: the activation of its float32
  `probabilities` layer when not the model's own (a sigmoid per class for multi-label masks)."""
  check_model(model_config, image_size)
  with _dtype_policy(dtype_policy):
    model = _MODELS[model_config.name](image_size=image_size, num_classes=num_classes,
                                       model_config=model_config)
  output = model.get_layer('probabilities')
  if head is not None and head != output.get_config()['activation']:  # Called anew by every call of the model.
    output.activation = keras.activations.get(head)
  return model


def check_initial_weights(model_config) -> None:
  """What load_initial_weights will read exists, or can be downloaded (one line if not)."""
  weights_lib.check_source(model_config.weights)


def load_initial_weights(model: keras.Model, model_config) -> str:
  """Sets `model`'s starting weights from model.weights (modeling/weights.py) and returns the
  line it logged of what was restored. 'imagenet' and Keras' own .h5 file are loaded into the
  keras.applications network built alone, then copied by name like every other source."""
  weights = model_config.weights
  source = None
  if model_config.name in _APPLICATIONS and weights_lib.is_application_file(weights):
    source = _APPLICATIONS[model_config.name](
        model_config=model_config, image_size=tuple(model.input_shape[1:3]),
        num_classes=model.output_shape[-1], weights=weights)
  return weights_lib.load_into(model, weights, source)
