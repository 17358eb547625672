"""The modern convnet patterns of book section 9.3, one function each."""

from keras import layers


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
