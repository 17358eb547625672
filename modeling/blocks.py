"""The modern convnet patterns of book section 9.3, one function each, and the model's input:
photos (0-255 RGB) or rasters of any number of bands, normalised per band."""

from typing import Callable

import keras
import numpy as np
from keras import layers
from keras import ops
import tensorflow as tf

from sizes import sides


@keras.saving.register_keras_serializable(package='segstream')
class BandNormalization(layers.Layer):
  """(x - mean) / std per band, in float32 whatever the policy (16-bit values overflow
  float16); NaN values, and pixels that are `nodata` in every band, become 0 (the mean). The
  mean and std are non-trainable weights: set from the training split's statistics when a run
  starts, they travel with its checkpoints, best model and exports, so every mode feeds raw
  values."""

  def __init__(self, nodata: float | None = None, **kwargs):
    super().__init__(**kwargs)
    self.nodata = nodata

  def build(self, input_shape):
    bands = input_shape[-1]
    self.mean = self.add_weight(shape=(bands,), initializer='zeros', trainable=False,
                                name='mean')
    self.std = self.add_weight(shape=(bands,), initializer='ones', trainable=False, name='std')

  def filled(self, pictures):
    """float32 pictures with every missing value (NaN, or `nodata` in every band) replaced by
    its band's mean: what resizing may blend with its neighbours (a raw nodata of -9999 would
    turn them into outliers), and what this layer maps to 0."""
    x = ops.cast(pictures, 'float32')
    x = ops.where(ops.isnan(x), self.mean, x)
    if self.nodata is None:
      return x
    return ops.where(ops.all(ops.equal(x, self.nodata), axis=-1, keepdims=True), self.mean, x)

  def call(self, inputs):
    return (self.filled(inputs) - self.mean) / self.std

  def get_config(self):
    return {**super().get_config(), 'nodata': self.nodata}


BAND_NORMALIZATION = 'band_normalization'


def band_normalization(model: keras.Model) -> BandNormalization | None:
  """The model's BandNormalization layer (a raster model's first), or None (photos)."""
  return next((layer for layer in model.layers if isinstance(layer, BandNormalization)), None)


def missing_filled(model: keras.Model) -> Callable:
  """pictures -> pictures with a raster model's missing values replaced by its band means
  (BandNormalization.filled), to apply before anything resizes them; photos as they are."""
  layer = band_normalization(model)
  return layer.filled if layer is not None else (lambda pictures: pictures)


def set_band_statistics(model: keras.Model, mean, std) -> None:
  """The per-band mean and standard deviation a raster model normalises its input by."""
  layer = band_normalization(model)
  layer.mean.assign(np.asarray(mean, np.float32))
  layer.std.assign(np.asarray(std, np.float32))


def picture_input(image_size, model_config) -> keras.KerasTensor:
  """The model's input: 0-255 RGB photos (model.input_bands = 0), or rasters of
  model.input_bands bands in their own values."""
  return keras.Input(shape=(*sides(image_size), model_config.input_bands or 3), name='image')


def normalised(pictures, model_config, photo_preprocess: Callable):
  """What the first layer makes of the pictures: photos go through the family's own
  `photo_preprocess` (its scale and offset), rasters through a BandNormalization."""
  if not model_config.input_bands:
    return photo_preprocess(pictures)
  return BandNormalization(model_config.input_nodata, dtype='float32',
                           name=BAND_NORMALIZATION)(pictures)


def pictures_input(image_size, model_config, photo_preprocess: Callable):
  """(the model's input, its first layer's output): `picture_input`, then `normalised`."""
  inputs = picture_input(image_size, model_config)
  return inputs, normalised(inputs, model_config, photo_preprocess)


def residual_block(x, filters: int, pooling: bool = False, name: str = 'residual'):
  """Two 3x3 convs plus a shortcut (book listings 9-1 to 9-3).

  The shortcut is the input itself, a 1x1 projection when the filter count changes, or, with
  pooling, a strided 1x1 projection that matches the pooled size.
  """
  residual = x
  x = layers.Conv2D(filters, 3, activation='relu', padding='same', name=f'{name}_conv1')(x)
  x = layers.Conv2D(filters, 3, activation='relu', padding='same', name=f'{name}_conv2')(x)
  if pooling:
    x = layers.MaxPooling2D(2, padding='same', name=f'{name}_pool')(x)
    residual = layers.Conv2D(filters, 1, strides=2, name=f'{name}_project')(residual)
  elif filters != residual.shape[-1]:
    residual = layers.Conv2D(filters, 1, name=f'{name}_project')(residual)
  return layers.add([x, residual], name=f'{name}_add')


def batch_norm(x, momentum: float, synchronized: bool, name: str):
  """Batch norm whose statistics are, with `synchronized`, those of the global batch over
  every replica and worker (a few pictures per replica give noisy statistics otherwise)."""
  return layers.BatchNormalization(momentum=momentum, synchronized=synchronized, name=name)(x)


def one_all_reduce_moments(model: keras.Model) -> None:
  """Every synchronized batch norm of `model` takes its global statistics in one all-reduce of
  its sums, squared sums and counts side by side (as PyTorch's SyncBatchNorm gathers them),
  where Keras makes three: a third of the collectives each training step, and of the merge
  calls a MirroredStrategy traces (the first step of tests/test_multiworker.py's U-Net on 2
  replicas, in a fresh process: 30.4 -> 20.3 s of CPU). The same sums, the same statistics."""
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    if isinstance(layer, layers.BatchNormalization) and layer.synchronized:
      layer._moments = _one_all_reduce(layer, layer._moments)  # pylint: disable=protected-access


def _one_all_reduce(layer: layers.BatchNormalization, keras_moments: Callable) -> Callable:
  def moments(inputs, mask):
    context = tf.distribute.get_replica_context()
    if mask is not None or context is None:  # Masked, or in cross-replica context: Keras'.
      return keras_moments(inputs, mask)
    axes = layer._reduction_axes  # pylint: disable=protected-access  Inputs are float32 here.
    sums = tf.concat([tf.reduce_sum(inputs, axes, keepdims=True),
                      tf.reduce_sum(tf.square(inputs), axes, keepdims=True),
                      tf.reduce_sum(tf.ones_like(inputs), axes, keepdims=True)], axis=-1)
    total, squares, count = tf.split(all_reduce_sum(context, sums), 3, axis=-1)
    mean = tf.math.divide_no_nan(total, count)
    variance = tf.maximum(tf.math.divide_no_nan(squares, count) - tf.square(mean), 0.0)
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes)
  return moments


def all_reduce_sum(context: tf.distribute.ReplicaContext, value: tf.Tensor) -> tf.Tensor:
  """context.all_reduce(SUM, value) with the same gradient (the sum of every replica's), traced
  in time linear in the model's depth. TensorFlow's wraps the reduction in tf.custom_gradient,
  which walks the graph back from the result looking for variables; the result depends on the
  other replicas' graphs, so each batch norm's walk crossed the whole model (the U-Net on
  ResNet-50, synchronized, 2 replicas: 204 s to trace its gradients, docs/results.md). The
  walk stops at a tf.stop_gradient, and the custom gradient restores what it stops."""
  @tf.custom_gradient
  def reduce(x):
    def gradient(dy):
      return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(dy))
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(x)), gradient
  return reduce(value)


def conv_bn_act(x, filters: int, kernel_size: int = 3, strides: int = 1,
                bn_momentum: float = 0.99, sync_bn: bool = False, name: str = 'conv'):
  """Conv (no bias: batch norm's offset replaces it), batch norm, then ReLU (listing 9-5)."""
  x = layers.Conv2D(filters, kernel_size, strides=strides, padding='same', use_bias=False,
                    name=f'{name}_conv')(x)
  x = batch_norm(x, bn_momentum, sync_bn, f'{name}_bn')
  return layers.Activation('relu', name=f'{name}_relu')(x)


def sep_bn_act(x, filters: int, bn_momentum: float = 0.99, activation: bool = True,
               sync_bn: bool = False, name: str = 'sep'):
  """Depthwise separable conv (no bias), batch norm and ReLU: cheap, channel-factored."""
  x = layers.SeparableConv2D(filters, 3, padding='same', use_bias=False,
                             name=f'{name}_sepconv')(x)
  x = batch_norm(x, bn_momentum, sync_bn, f'{name}_bn')
  return layers.Activation('relu', name=f'{name}_relu')(x) if activation else x


def xception_block(x, filters: int, bn_momentum: float = 0.99, sync_bn: bool = False,
                   name: str = 'block'):
  """The mini-Xception block (book 9.3.5): pre-activation BN-ReLU-SeparableConv twice, 3x3
  max pooling with stride 2, and a strided 1x1 projection as the residual."""
  residual = x
  for i in (1, 2):
    x = batch_norm(x, bn_momentum, sync_bn, f'{name}_bn{i}')
    x = layers.Activation('relu', name=f'{name}_relu{i}')(x)
    x = layers.SeparableConv2D(filters, 3, padding='same', use_bias=False,
                               name=f'{name}_sepconv{i}')(x)
  x = layers.MaxPooling2D(3, strides=2, padding='same', name=f'{name}_pool')(x)
  residual = layers.Conv2D(filters, 1, strides=2, padding='same', use_bias=False,
                           name=f'{name}_project')(residual)
  return layers.add([x, residual], name=f'{name}_add')
