"""The framework's training loop against Keras `model.fit` on the same tf.data pipeline.

Same model, batch, precision and data; one device and 2 logical CPU devices (each run in its
own process, since the device split is per process). Prints one JSON line per run:

    python -m benchmarks.train_step [--image_size=64 --batch=16 --steps=40]
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

from benchmarks import isolated

flags.DEFINE_integer('image_size', 64, 'Input side (small, so CPU runs are short).')
flags.DEFINE_integer('batch', 16, 'Global batch.')
flags.DEFINE_integer('steps', 40, 'Timed steps per loop (after warm-up).')
flags.DEFINE_integer('steps_per_call', 4, 'Steps per call for both loops.')
flags.DEFINE_string('precision', 'float32', 'Keras dtype policy for both.')
flags.DEFINE_integer('devices', 0, 'Internal: run one measurement with this many devices.')
flags.DEFINE_string('data_dir', '/tmp/segstream_bench', 'Where the synthetic data goes.')
FLAGS = flags.FLAGS


def measure(devices: int) -> dict:
  """Times both loops in this process, with `devices` logical CPU devices."""
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from configs import seg  # pylint: disable=import-outside-toplevel
  from data import input_pipeline, sources  # pylint: disable=import-outside-toplevel
  from modeling import models  # pylint: disable=import-outside-toplevel
  import specs  # pylint: disable=import-outside-toplevel
  from training import optimizers, runtime  # pylint: disable=import-outside-toplevel
  from training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  runtime.configure_cpu_devices(devices)
  config = seg.get_config()
  config.data.source = 'synthetic'
  config.data.synthetic.dir = os.path.join(FLAGS.data_dir, 'synthetic_small')
  config.data.image_size = FLAGS.image_size
  config.data.cache = 'memory'
  config.runtime.cpu_devices = devices
  strategy = runtime.create_strategy(config.runtime)
  builder = sources.prepared_builder(specs.describe(config).data, FLAGS.data_dir)
  make = lambda ctx: steps_lib.with_ready_times(
      input_pipeline.train_dataset(
          builder, input_pipeline.pipeline(specs.describe(config).data), FLAGS.batch, 0, 0, ctx))
  warmup, steps, per_call = 2 * FLAGS.steps_per_call, FLAGS.steps, FLAGS.steps_per_call

  with strategy.scope():
    model = models.build_model(config.model, FLAGS.image_size, 3, FLAGS.precision)
    optimizer = optimizers.make_optimizer(config.train, FLAGS.precision)
  trainer = steps_lib.Steps(strategy, model, optimizer,
                            global_batch_size=FLAGS.batch, num_classes=3)
  iterator = iter(strategy.distribute_datasets_from_function(make))
  trainer.train_steps(iterator, tf.constant(warmup))
  start, waited = time.perf_counter(), 0.0
  for _ in range(steps // per_call):
    waited += float(trainer.train_steps(iterator, tf.constant(per_call)).waited_s)
  loop_seconds = time.perf_counter() - start

  with strategy.scope():
    fit_model = models.build_model(config.model, FLAGS.image_size, 3, FLAGS.precision)
    fit_model.compile(optimizer=optimizers.make_optimizer(config.train, FLAGS.precision),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      steps_per_execution=per_call)
  fit_data = make(None).map(lambda b: (b['image'], b['label']))
  fit_model.fit(fit_data, epochs=1, steps_per_epoch=warmup, verbose=0)
  start = time.perf_counter()
  fit_model.fit(fit_data, epochs=1, steps_per_epoch=steps, verbose=0)
  fit_seconds = time.perf_counter() - start
  loop_rate, fit_rate = steps * FLAGS.batch / loop_seconds, steps * FLAGS.batch / fit_seconds
  return {'devices': devices, 'replicas': strategy.num_replicas_in_sync,
          'model': config.model.name, 'image_size': FLAGS.image_size, 'batch': FLAGS.batch,
          'precision': FLAGS.precision, 'steps': steps, 'steps_per_call': per_call,
          'framework_images_per_s': round(loop_rate, 2), 'fit_images_per_s': round(fit_rate, 2),
          'ratio_framework_to_fit': round(loop_rate / fit_rate, 3),
          'framework_input_wait_fraction': round(waited / loop_seconds, 4)}


def main(argv):
  del argv
  if FLAGS.devices:
    print(json.dumps(measure(FLAGS.devices)), flush=True)
    return
  for devices in (1, 2):
    print(isolated.json_line('benchmarks.train_step', f'--devices={devices}',
                             *[a for a in sys.argv[1:] if not a.startswith('--devices')]),
          flush=True)


if __name__ == '__main__':
  app.run(main)
