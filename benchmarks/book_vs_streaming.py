"""The book's way (decode every picture into one float32 numpy array, then model.fit) against
the framework's streaming pipeline, on the same 7,390 Oxford-sized synthetic pictures.

Each approach runs in its own process: time from the start of its main() to the end of the
first training step, peak resident memory (ru_maxrss), and train images/s over --steps steps
of the book's model at 200 px, batch 64 (one JSON line each). A third process, model_only,
trains the same model on one constant batch: the time and memory every approach pays for
TensorFlow, the model and its step, whatever feeds it. What is left over is what the data
costs each approach:

    python -m benchmarks.book_vs_streaming [--num_images=7390 --steps=3]

Needs the synthetic set that benchmarks/input_pipeline.py writes (it writes it if missing).
"""

import json
import os
import resource
import sys
import time

from absl import app
from absl import flags

from benchmarks import isolated

flags.DEFINE_integer('num_images', 7390, 'Pictures (Oxford-IIIT Pet has 7,390).')
flags.DEFINE_integer('image_size', 200, 'Model input side.')
flags.DEFINE_integer('batch', 64, 'Batch (the book: 64).')
flags.DEFINE_integer('steps', 3, 'Timed training steps after the first.')
flags.DEFINE_string('data_dir', '/tmp/segstream_bench', 'Where the synthetic data goes.')
APPROACHES = ('book', 'streaming', 'model_only')
flags.DEFINE_enum('approach', None, APPROACHES, 'Internal: run one approach.')
FLAGS = flags.FLAGS


def _setup():
  from benchmarks import oxford_sized  # pylint: disable=import-outside-toplevel
  return oxford_sized.book_config_on_oxford_sized(FLAGS.num_images, FLAGS.image_size,
                                                  FLAGS.data_dir)


def book(config, folder, start):
  """Book listing: load every picture and trimap into arrays, then model.fit."""
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from data import decode  # pylint: disable=import-outside-toplevel
  from modeling import models  # pylint: disable=import-outside-toplevel
  names = sorted(f[:-4] for f in os.listdir(os.path.join(folder, 'images')))
  size = (FLAGS.image_size, FLAGS.image_size)
  inputs = np.zeros((len(names),) + size + (3,), dtype='float32')
  targets = np.zeros((len(names),) + size + (1,), dtype='uint8')
  for i, name in enumerate(names):
    image = decode.decode_image(tf.io.read_file(os.path.join(folder, 'images', name + '.jpg')))
    inputs[i] = tf.image.resize(image, size).numpy()
    trimap = decode.decode_trimap(tf.io.read_file(
        os.path.join(folder, 'annotations', 'trimaps', name + '.png')))
    targets[i] = tf.image.resize(trimap, size, method='nearest').numpy()
  model = models.build_model(config.model, FLAGS.image_size, 3)
  model.compile(optimizer='rmsprop', loss='sparse_categorical_crossentropy')
  times = []

  class Clock(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      times.append(time.perf_counter())
  data_ready = time.perf_counter()
  model.fit(inputs, targets, batch_size=FLAGS.batch, epochs=1, verbose=0,
            steps_per_epoch=FLAGS.steps + 1, callbacks=[Clock()], shuffle=True)
  return {'seconds_to_first_step': times[0] - start, 'seconds_for_data': data_ready - start,
          'train_images_per_s': FLAGS.steps * FLAGS.batch / (times[-1] - times[0])}


def streaming(config, builder, start):
  """The framework's trainer on its pipeline, or (model_only) on one constant batch."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from data import input_pipeline  # pylint: disable=import-outside-toplevel
  from modeling import models  # pylint: disable=import-outside-toplevel
  import specs  # pylint: disable=import-outside-toplevel
  from training import optimizers  # pylint: disable=import-outside-toplevel
  from training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  strategy = tf.distribute.get_strategy()
  model = models.build_model(config.model, FLAGS.image_size, 3)
  trainer = steps_lib.Steps(strategy, model, optimizers.make_optimizer(config.train,
                                                                        'float32'),
                            global_batch_size=FLAGS.batch, num_classes=3)
  if FLAGS.approach == 'model_only':
    side = FLAGS.image_size
    dataset = tf.data.Dataset.from_tensors({
        'image': tf.zeros([FLAGS.batch, side, side, 3]),
        'label': tf.zeros([FLAGS.batch, side, side, 1], tf.uint8)}).repeat()
  else:
    dataset = steps_lib.with_ready_times(
        input_pipeline.train_dataset(
            builder, input_pipeline.pipeline(specs.describe(config).data), FLAGS.batch, 0, 0))
  iterator = iter(dataset)
  waited = trainer.train_steps(iterator, tf.constant(1)).waited_s.numpy()
  first = time.perf_counter()
  trainer.train_steps(iterator, tf.constant(FLAGS.steps))[0].numpy()
  # The first step waited `waited` s for its batch; its tracing and compute came around that.
  result = {'seconds_to_first_step': first - start,
            'train_images_per_s': FLAGS.steps * FLAGS.batch / (time.perf_counter() - first)}
  if FLAGS.approach == 'streaming':
    result.update(seconds_for_data=float(waited), peak_rss_gib_first_steps=_peak_rss_gib())
    # Memory after the cache has filled: the rest of the first epoch is read (not trained
    # on), then one step of the second epoch runs beside the full cache.
    for _ in range(FLAGS.num_images // FLAGS.batch - 1 - FLAGS.steps):
      next(iterator)
    trainer.train_steps(iterator, tf.constant(1))[0].numpy()
  return result


def _peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv):
  del argv
  if FLAGS.approach is None:
    _setup()  # Data written and prepared before any approach is timed.
    for approach in APPROACHES:
      print(isolated.json_line('benchmarks.book_vs_streaming', f'--approach={approach}',
                               *sys.argv[1:]), flush=True)
    return
  config, folder, builder = _setup()
  start = time.perf_counter()
  result = (book(config, folder, start) if FLAGS.approach == 'book'
            else streaming(config, builder, start))
  rounded = lambda key, digits: (round(result[key], digits) if key in result else None)
  print(json.dumps({
      'approach': FLAGS.approach, 'images': FLAGS.num_images, 'image_size': FLAGS.image_size,
      'batch': FLAGS.batch, 'model': config.model.name,
      'seconds_to_first_step': rounded('seconds_to_first_step', 1),
      # book: decoding every picture into arrays; streaming: the first step's wait for data.
      'seconds_for_data': rounded('seconds_for_data', 1),
      'seconds_per_later_step': round(FLAGS.batch / result['train_images_per_s'], 2),
      'peak_rss_gib': round(_peak_rss_gib(), 2),
      # streaming: the peak over the first steps alone, before the cache holds every picture.
      'peak_rss_gib_first_steps': rounded('peak_rss_gib_first_steps', 2),
      'train_images_per_s': rounded('train_images_per_s', 2), 'timed_steps': FLAGS.steps}),
        flush=True)


if __name__ == '__main__':
  app.run(main)
