"""Input pipeline throughput next to the raw decode limit, per CPU core (JSON lines).

Cases, over the same encoded pictures: decode_limit (tf.io.decode_jpeg + resize alone, the
bytes already in memory), train_first_epoch (the framework's training pipeline, decoding every
picture), train_cached (its second epoch, from the cache), eval (the evaluation pipeline).

    python -m benchmarks.input_pipeline [--num_images=7390 --image_size=200]
    python -m benchmarks.input_pipeline --folder=../shared/oxford_pets_sample

Without --folder it writes (once, into --data_dir) a synthetic set with Oxford-IIIT Pet's
sizes: 500x375 photos (JPEG quality 90) and trimaps.
"""

import json
import os
import time

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import oxford_sized
from data import input_pipeline
from data import sources

flags.DEFINE_string('folder', None, 'An extracted folder to measure instead of synthetic data.')
flags.DEFINE_integer('num_images', 7390, 'Synthetic pictures (Oxford-IIIT Pet has 7,390).')
flags.DEFINE_integer('image_size', 200, 'Model input side.')
flags.DEFINE_integer('batch', 64, 'Global batch.')
flags.DEFINE_string('data_dir', '/tmp/segstream_bench', 'Where synthetic data and TFDS go.')
FLAGS = flags.FLAGS


def _rate(ds, images: int) -> float:
  start = time.perf_counter()
  for _ in ds:
    pass
  return images / (time.perf_counter() - start)


def main(argv):
  del argv
  cores = len(os.sched_getaffinity(0))
  config, _, builder = oxford_sized.book_config_on_oxford_sized(
      FLAGS.num_images, FLAGS.image_size, FLAGS.data_dir, FLAGS.folder)
  images = sources.num_examples(builder, 'train+test')
  encoded = [ex['image'] for ex in sources.read_encoded(builder, 'train+test')]
  size = (FLAGS.image_size, FLAGS.image_size)
  limit_ds = tf.data.Dataset.from_tensor_slices(tf.stack(encoded)).map(
      lambda b: tf.image.resize(tf.io.decode_jpeg(b, channels=3), size),
      num_parallel_calls=cores).batch(FLAGS.batch)
  rates = {'decode_limit': _rate(limit_ds, images)}
  steps = images // FLAGS.batch
  train = input_pipeline.train_dataset(builder, config.data, FLAGS.batch, seed=0, start_step=0)
  iterator = iter(train)
  for case in ('train_first_epoch', 'train_cached'):
    start = time.perf_counter()
    for _ in range(steps):
      next(iterator)
    rates[case] = steps * FLAGS.batch / (time.perf_counter() - start)
  rates['eval'] = _rate(input_pipeline.eval_dataset(builder, config.data, FLAGS.batch), images)
  for case, rate in rates.items():
    print(json.dumps({
        'case': case, 'images': images, 'image_size': FLAGS.image_size, 'cores': cores,
        'source': 'folder' if FLAGS.folder else 'synthetic 500x375',
        'images_per_s': round(rate, 1), 'images_per_s_per_core': round(rate / cores, 1),
        'ratio_to_decode_limit': round(rate / rates['decode_limit'], 3)}), flush=True)


if __name__ == '__main__':
  app.run(main)
