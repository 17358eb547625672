"""Input pipeline throughput next to the raw decode limit, per CPU core (JSON lines).

Cases, over the same encoded pictures:
  decode_limit       tf.io.decode_jpeg + resize of the photos alone, bytes already in memory
                     (the issue's raw limit);
  trimap_limit       the trimap PNGs' decode + nearest-neighbour resize alone, in memory;
  preprocess_limit   the framework's `preprocess` (photo AND trimap decoded and resized), bytes
                     in memory: what a segmentation example costs before any tf.data plumbing;
  read_only          reading and parsing the prepared TFDS records, nothing decoded;
  read_preprocess    reading + `preprocess` + batching: the limit plus reading;
  read_preprocess_cache  the same, keeping every decoded example in a memory cache;
  train_first_epoch  the framework's training pipeline, first epoch (decodes every picture);
  train_cached       its second epoch, from the cache (shuffle, augment, batch, cast);
  train_cached_2_replicas  a cached epoch of 2 replicas' streams through the distributed
                     iterator of a MirroredStrategy on 2 logical CPUs (hand-over included);
  eval               the evaluation pipeline;
  memory_first_touch writing each picture's decoded bytes (image and mask) into memory a fresh
                     process has never touched: what a memory cache's new pages cost on this
                     machine, apart from tf.data (a VM may back its memory on first touch).
Every case runs --repeats times, interleaved; ratios are to the limits of the same round, by
wall time and by process CPU time (images per CPU-second = per core used; steadier on a
machine whose cores are shared); cpu_ms_per_image is what one picture costs in CPU time, so
differences between cases are the cost of a stage. The last lines give the medians.

    python -m benchmarks.input_pipeline [--num_images=7390 --image_size=200 --repeats=3]
    python -m benchmarks.input_pipeline --folder=../shared/oxford_pets_sample
    python -m benchmarks.input_pipeline --image_size=128 --augment_like=seg_xception

Without --folder it writes (once, into --data_dir) a synthetic set with Oxford-IIIT Pet's
sizes: 500x375 photos (JPEG quality 90) and trimaps.
"""

import importlib
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import oxford_sized
from data import decode
from data import input_pipeline
from data import sources
from training import runtime

oxford_sized.define_flags(7390, 200, 64, '/tmp/segstream_bench')
flags.DEFINE_enum('augment_like', 'seg', ['seg', 'seg_xception'],
                  "Whose training augmentation to apply: the book's flip (configs/seg.py) or "
                  "the U-Net's crops, lighting, hue, grey, blur and noise.")
FLAGS = flags.FLAGS
SPLIT = 'train+test'  # Every picture: the benchmark's config holds no validation out.


class _Clock:
  """Wall and process CPU seconds of a block: images per CPU-second is images per core used,
  and unlike wall time it does not move when the machine lends a core elsewhere."""

  def __enter__(self):
    self.wall, self.cpu = time.perf_counter(), time.process_time()
    return self

  def __exit__(self, *exc):
    self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

  def rates(self, images: int) -> tuple[float, float]:
    return images / self.wall, images / self.cpu


def _rates(ds, images: int) -> tuple[float, float]:
  with _Clock() as clock:
    for _ in ds:
      pass
  return clock.rates(images)


_FIRST_TOUCH = '''
import sys, time
import numpy
wall, cpu = time.perf_counter(), time.process_time()
numpy.ones(int(sys.argv[1]), numpy.uint8)
print(time.perf_counter() - wall, time.process_time() - cpu)
'''


def _first_touch(data_config, images: int) -> tuple:
  """Rates of writing `images` decoded pictures' bytes into memory a fresh process allocates:
  the memory cache's share of a first epoch that no pipeline change can remove."""
  num_bytes = input_pipeline.cached_bytes(input_pipeline.pipeline(data_config), images)
  done = subprocess.run([sys.executable, '-c', _FIRST_TOUCH, str(num_bytes)], check=True,
                        capture_output=True, text=True)
  wall, cpu = map(float, done.stdout.split())
  return images / wall, images / cpu


def _train_epochs(builder, data_config, images: int) -> tuple[tuple, tuple]:
  """Rates of a fresh training pipeline's first (decoding) and second (cached) epoch."""
  pipeline = input_pipeline.pipeline(data_config)
  iterator = iter(input_pipeline.train_dataset(builder, pipeline, FLAGS.batch, seed=0,
                                               start_step=0))
  epochs = []
  for _ in range(2):
    with _Clock() as clock:
      for _ in range(images // FLAGS.batch):
        next(iterator)
    epochs.append(clock.rates(images // FLAGS.batch * FLAGS.batch))
  return epochs[0], epochs[1]


def _two_replicas_cached(builder, data_config, images: int) -> tuple:
  """Rates of a cached epoch of 2 replicas' streams handed to their devices."""
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  pipeline = input_pipeline.pipeline(data_config)
  iterator = iter(strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.train_dataset(builder, pipeline, FLAGS.batch, 0, 0, ctx)))
  steps = images // FLAGS.batch
  for _ in range(steps + 1):  # The first epoch fills both replicas' caches.
    next(iterator)
  with _Clock() as clock:
    for _ in range(steps):
      next(iterator)
  return clock.rates(steps * FLAGS.batch)


def _round(builder, data_config, encoded: dict, images: int, cores: int) -> dict:
  """{case: (images/s, images per CPU-second)}."""
  size = (FLAGS.image_size, FLAGS.image_size)
  in_memory = tf.data.Dataset.from_tensor_slices(encoded)
  preprocess = lambda ex: input_pipeline.preprocess(ex, FLAGS.image_size,
                                                   mask_lookup=decode.TRIMAP_LOOKUP)
  rates = {'decode_limit': _rates(in_memory.map(
      lambda ex: tf.image.resize(tf.io.decode_jpeg(ex['image'], channels=3), size),
      num_parallel_calls=cores).batch(FLAGS.batch), images)}
  rates['trimap_limit'] = _rates(in_memory.map(
      lambda ex: tf.image.resize(decode.decode_trimap(ex[input_pipeline.MASK_FEATURE]), size,
                                 method='nearest'),
      num_parallel_calls=cores).batch(FLAGS.batch), images)
  rates['preprocess_limit'] = _rates(
      in_memory.map(preprocess, num_parallel_calls=cores).batch(FLAGS.batch), images)
  rates['read_only'] = _rates(sources.read_encoded(builder, SPLIT).batch(FLAGS.batch), images)
  read_preprocess = sources.read_encoded(builder, SPLIT).map(preprocess,
                                                             num_parallel_calls=cores)
  rates['read_preprocess'] = _rates(read_preprocess.batch(FLAGS.batch), images)
  rates['read_preprocess_cache'] = _rates(read_preprocess.cache().batch(FLAGS.batch), images)
  rates['train_first_epoch'], rates['train_cached'] = _train_epochs(builder, data_config,
                                                                    images)
  rates['train_cached_2_replicas'] = _two_replicas_cached(builder, data_config, images)
  rates['eval'] = _rates(input_pipeline.eval_dataset(builder, input_pipeline.pipeline(data_config),
                                                     FLAGS.batch), images)
  rates['memory_first_touch'] = _first_touch(data_config, images)
  return rates


def _line(case: str, rates: dict, images: int, cores: int, round_name) -> dict:
  (wall, cpu), (limit_wall, limit_cpu) = rates[case], rates['decode_limit']
  return {
      'case': case, 'round': round_name, 'images': images, 'image_size': FLAGS.image_size,
      'cores': cores, 'source': 'folder' if FLAGS.folder else 'synthetic 500x375',
      'augment_like': FLAGS.augment_like,
      'images_per_s': round(wall, 1), 'images_per_s_per_core': round(wall / cores, 1),
      'images_per_cpu_second': round(cpu, 1),
      'ratio_to_decode_limit': round(wall / limit_wall, 3),
      'cpu_ratio_to_decode_limit': round(cpu / limit_cpu, 3),
      'cpu_ratio_to_preprocess_limit': round(cpu / rates['preprocess_limit'][1], 3),
      'cpu_ms_per_image': round(1000 / cpu, 3)}


def main(argv):
  del argv
  cores = len(os.sched_getaffinity(0))
  runtime.configure_cpu_devices(2)  # For the 2-replica hand-over; the other cases use one.
  config, _, builder = oxford_sized.book_config_on_oxford_sized(
      FLAGS.num_images, FLAGS.image_size, FLAGS.data_dir, FLAGS.folder)
  config.data.augment = importlib.import_module(
      f'configs.{FLAGS.augment_like}').get_config().data.augment
  images = sources.num_examples(builder, SPLIT)
  examples = list(sources.read_encoded(builder, SPLIT).as_numpy_iterator())
  encoded = {key: tf.constant([ex[key] for ex in examples])
             for key in ('image', input_pipeline.MASK_FEATURE)}
  lines = []
  for repeat in range(FLAGS.repeats):
    rates = _round(builder, config.data, encoded, images, cores)
    for case in rates:
      lines.append(_line(case, rates, images, cores, repeat + 1))
      print(json.dumps(lines[-1]), flush=True)
  for case in dict.fromkeys(line['case'] for line in lines):
    mine = [line for line in lines if line['case'] == case]
    median = {key: statistics.median(line[key] for line in mine) for key in mine[0]
              if isinstance(mine[0][key], float)}
    spread = {f'{key}_range': [min(line[key] for line in mine), max(line[key] for line in mine)]
              for key in ('ratio_to_decode_limit', 'cpu_ratio_to_decode_limit')}
    print(json.dumps({**mine[0], **median, 'round': 'median', **spread}), flush=True)


if __name__ == '__main__':
  app.run(main)
