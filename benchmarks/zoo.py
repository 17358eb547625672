"""The zoo table of BUILD.md: for each family and backbone, parameters (3 classes), GFLOPs of one
512x512 picture (multiply-adds count 2), training images/s on this machine at 128 px (the
framework's step, one device, float32, batch 8, random pictures: the model's cost alone) and the
keras-hub presets `model.weights` can start it from. One JSON line per entry:

    python -m benchmarks.zoo [--entries=unet:resnet18,segformer:mit_b0] [--steps=6]
"""

import json
import time

from absl import app
from absl import flags

flags.DEFINE_list('entries', [], 'family:backbone pairs; empty: every family on every backbone '
                  'it takes (deeplabv3plus and unet on each CNN, segformer and unet on MiT B0).')
flags.DEFINE_integer('steps', 6, 'Timed training steps per entry (after 2 warm-up steps).')
flags.DEFINE_integer('batch', 8, 'Training batch.')
flags.DEFINE_integer('train_size', 128, 'Training input side.')
flags.DEFINE_integer('flops_size', 512, 'Input side the GFLOPs are counted at.')
FLAGS = flags.FLAGS


def _entries() -> list[tuple[str, str]]:
  from modeling import backbones  # pylint: disable=import-outside-toplevel
  if FLAGS.entries:
    return [tuple(entry.split(':')) for entry in FLAGS.entries]
  cnns = [n for n, e in backbones.BACKBONES.items() if e.keras_hub_class != 'MiTBackbone']
  mits = [n for n, e in backbones.BACKBONES.items() if e.keras_hub_class == 'MiTBackbone']
  return ([('deeplabv3plus', n) for n in cnns] + [('segformer', n) for n in mits]
          + [('unet', n) for n in cnns + mits[:1]])


def _gflops(model, size: int) -> float:
  """Float operations of one picture, counted by TensorFlow's profiler on the frozen graph."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=import-outside-toplevel
  function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32))
  frozen = convert_to_constants.convert_variables_to_constants_v2(function)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
  return profile.total_float_ops / 1e9


def measure(family: str, backbone: str) -> dict:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from configs import base  # pylint: disable=import-outside-toplevel
  from modeling import backbones, models  # pylint: disable=import-outside-toplevel
  from training import optimizers  # pylint: disable=import-outside-toplevel
  from training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  config = base.get_base_config()
  config.model.name, config.model.backbone = family, backbone
  config.model.decoder_widths = (256, 128, 64, 32, 16)
  config.train.optimizer = 'adamw'
  started = time.perf_counter()
  big = models.build_model(config.model, FLAGS.flops_size, 3)
  build_s = time.perf_counter() - started
  row = {'family': family, 'backbone': backbone, 'parameters': big.count_params(),
         'build_s': round(build_s, 1), 'gflops_512': round(_gflops(big, FLAGS.flops_size), 1)}
  del big
  model = models.build_model(config.model, FLAGS.train_size, 3)
  strategy = tf.distribute.get_strategy()
  trainer = steps_lib.Steps(strategy, model, optimizers.make_optimizer(config.train,
                                                                        'float32'),
                            global_batch_size=FLAGS.batch, num_classes=3)
  size = FLAGS.train_size
  batch = {'image': tf.random.uniform([FLAGS.batch, size, size, 3], 0, 255, seed=0),
           'label': tf.random.uniform([FLAGS.batch, size, size, 1], 0, 3, tf.int32, seed=1)}
  iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
  trainer.train_steps(iterator, tf.constant(2))
  started = time.perf_counter()
  trainer.train_steps(iterator, tf.constant(FLAGS.steps))
  seconds = time.perf_counter() - started
  row['train_images_per_s_128'] = round(FLAGS.steps * FLAGS.batch / seconds, 2)
  presets = backbones.spec(backbone).presets
  if family != 'segformer':  # SegFormer presets fill a segformer; their MiT part a unet.
    presets = tuple(p for p in presets if not p.startswith('segformer_'))
  if family != 'deeplabv3plus':
    presets = tuple(p for p in presets if not p.startswith('deeplab_'))
  row['presets'] = list(presets)
  return row


def main(argv):
  del argv
  for family, backbone in _entries():
    print(json.dumps(measure(family, backbone)), flush=True)


if __name__ == '__main__':
  app.run(main)
