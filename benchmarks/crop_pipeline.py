"""The native-resolution crop pipeline on large pictures, per CPU-second, next to the machine's
decode limit for the same pictures (JSON lines).

    python -m benchmarks.crop_pipeline [--num_images=48 --height=2000 --width=3000 --crop=512]

It writes (once, into --data_dir) a files-source set of large photos (JPEG quality 90) and
grey class-id PNG masks, prepares it, then times, over the same pictures:
  decode_limit       tf.io.decode_jpeg of every whole picture, bytes already in memory: what
                     a picture costs before anything is done with it;
  example_limit      the whole picture and its whole mask PNG decoded: what an example costs
                     before anything is done with it (evaluation's limit);
  crop_whole_decode  each picture decoded whole, then cropped and rescaled as training does,
                     no mask: the picture's part of a crop without decode_and_crop_jpeg;
  crop_picture       the same with data/crops.decode_window (only the window decoded);
  crop_limit         data/crops.random_crop: the picture's window and the strips of rows of its
                     mask that the window covers, bytes in memory: what one training example
                     costs;
  crop_whole_mask    the same with the whole mask PNG decoded (a set prepared before masks
                     were stored in strips, and class-balanced crops, which search it whole);
  train_first_epoch  the framework's training pipeline with data.resize=none (reading the
                     prepared records, cropping, batching, augmenting);
  train_cached       its second epoch: the stored bytes come from memory, every crop is new;
  eval               the evaluation pipeline (whole pictures, decoded, one per batch).
Ratios are to decode_limit and example_limit of the same round, by images per CPU-second (per
core used).
"""

import gc
import json
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from configs import own_large
from data import crops
from data import decode
from data import input_pipeline
from data import sources
from data import spec as data_spec
import specs
from tasks import MASK_FEATURE

flags.DEFINE_integer('num_images', 48, 'Training pictures written.')
flags.DEFINE_integer('height', 2000, 'Picture height.')
flags.DEFINE_integer('width', 3000, 'Picture width.')
flags.DEFINE_integer('crop', 512, 'Crop side.')
flags.DEFINE_float('scale_low', 0.5, 'data.augment.scale_range low end.')
flags.DEFINE_float('scale_high', 2.0, 'data.augment.scale_range high end.')
flags.DEFINE_integer('batch', 8, 'Batch size.')
flags.DEFINE_integer('repeats', 3, 'Rounds.')
flags.DEFINE_string('data_dir', '/tmp/segstream_crop_bench', 'Where the set is written.')
FLAGS = flags.FLAGS


def write_set(folder: str) -> None:
  """Large photo-like pictures (smooth colour fields with texture) and blocky masks."""
  rng = np.random.default_rng(0)
  for sub in ('images', 'masks'):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)
  for index in range(FLAGS.num_images):
    name = f'picture_{index:03d}'
    if os.path.exists(os.path.join(folder, 'masks', name + '.png')):
      continue
    coarse = rng.uniform(0, 255, (1, FLAGS.height // 50, FLAGS.width // 50, 3)).astype(np.float32)
    picture = tf.image.resize(coarse, (FLAGS.height, FLAGS.width))[0]
    picture += rng.normal(0, 12, picture.shape).astype(np.float32)
    picture = tf.cast(tf.clip_by_value(picture, 0, 255), tf.uint8)
    blocks = rng.integers(0, 3, (1, FLAGS.height // 100, FLAGS.width // 100, 1)).astype(np.uint8)
    mask = tf.image.resize(blocks, (FLAGS.height, FLAGS.width), 'nearest')[0]
    tf.io.write_file(os.path.join(folder, 'images', name + '.jpg'),
                     tf.io.encode_jpeg(picture, quality=90))
    tf.io.write_file(os.path.join(folder, 'masks', name + '.png'), tf.io.encode_png(mask))


def _rates(ds, images: int) -> float:
  """Images per CPU-second of one pass over `ds`."""
  start = time.process_time()
  for _ in ds:
    pass
  return images / (time.process_time() - start)


def _round(builder, data: data_spec.Data, encoded: dict, images: int) -> dict:
  spec = input_pipeline.pipeline(data).crop
  in_memory = tf.data.Dataset.from_tensor_slices(encoded)
  seeded = in_memory.enumerate().map(
      lambda i, ex: (tf.stack([i, tf.constant(0, tf.int64)]), ex))
  parallel = tf.data.AUTOTUNE

  def whole_then_crop(seed, example):
    picture = tf.io.decode_jpeg(example['image'], channels=3)
    window, scaled = crops.crop_window(tf.shape(picture)[:2], seed, spec)
    image = tf.image.resize(crops.in_window(picture, window)[None], scaled, antialias=True)[0]
    return crops.pad_to(tf.cast(image, tf.uint8), spec.size, 0)

  def window_only(seed, example):
    pixels, _, scaled = crops.decode_window(example['image'], seed, spec)
    image = tf.image.resize(pixels[None], scaled, antialias=True)[0]
    return crops.pad_to(tf.cast(image, tf.uint8), spec.size, 0)

  rates = {
      'decode_limit': _rates(in_memory.map(
          lambda ex: tf.io.decode_jpeg(ex['image'], channels=3),
          num_parallel_calls=parallel), images),
      'example_limit': _rates(in_memory.map(
          lambda ex: (tf.io.decode_jpeg(ex['image'], channels=3),
                      tf.io.decode_png(ex[MASK_FEATURE])), num_parallel_calls=parallel), images),
      'crop_whole_decode': _rates(seeded.map(whole_then_crop, num_parallel_calls=parallel),
                                  images),
      'crop_picture': _rates(seeded.map(window_only, num_parallel_calls=parallel), images),
      'crop_limit': _rates(seeded.map(
          lambda seed, ex: crops.random_crop(ex, seed, spec),
          num_parallel_calls=parallel), images),
      'crop_whole_mask': _rates(seeded.map(
          lambda seed, ex: crops.random_crop(
              {key: value for key, value in ex.items() if key != decode.MASK_STRIPS_FEATURE},
              seed, spec), num_parallel_calls=parallel), images),
  }
  steps = images // FLAGS.batch
  pipeline = input_pipeline.pipeline(data)
  iterator = iter(input_pipeline.train_dataset(builder, pipeline, FLAGS.batch, seed=0,
                                               start_step=0))
  for case in ('train_first_epoch', 'train_cached'):
    start = time.process_time()
    for _ in range(steps):
      next(iterator)
    rates[case] = steps * FLAGS.batch / (time.process_time() - start)
  # The training stream's prefetching threads go on cropping while they live, and this process's
  # CPU time counts them: they stop before evaluation is timed (they once took half its share).
  del iterator
  gc.collect()
  rates['eval'] = _rates(input_pipeline.eval_dataset(builder, pipeline, FLAGS.batch), images)
  return rates


def main(argv):
  del argv
  folder = os.path.join(FLAGS.data_dir, f'{FLAGS.height}x{FLAGS.width}')
  write_set(folder)
  config = own_large.get_config()
  config.data.files.train_images = os.path.join(folder, 'images')
  config.data.files.train_masks = os.path.join(folder, 'masks')
  config.data.class_names = ('a', 'b', 'c')
  config.data.validation_fraction = 0.0
  config.data.eval_split = 'train'
  config.data.crop_size = (FLAGS.crop, FLAGS.crop)
  config.data.augment.scale_range = (FLAGS.scale_low, FLAGS.scale_high)
  config.data.augment.color_jitter = 0.0
  data = specs.describe(config).data
  builder = sources.prepared_builder(data, FLAGS.data_dir)
  images = sources.num_examples(builder, 'train')
  examples = list(sources.read_encoded(builder, 'train').as_numpy_iterator())
  encoded = {key: tf.constant([ex[key] for ex in examples])  # One size: as many strips each.
             for key in ('image', MASK_FEATURE, decode.MASK_STRIPS_FEATURE)}
  rounds = []
  for repeat in range(FLAGS.repeats):
    rates = _round(builder, data, encoded, images)
    rounds.append(rates)
    for case, rate in rates.items():
      print(json.dumps({'case': case, 'round': repeat + 1, 'picture': f'{FLAGS.width}x'
                        f'{FLAGS.height}', 'crop': FLAGS.crop, 'images': images,
                        'images_per_cpu_second': round(rate, 2),
                        'cpu_ratio_to_decode_limit': round(rate / rates['decode_limit'], 3),
                        'cpu_ratio_to_example_limit': round(rate / rates['example_limit'], 3)}),
            flush=True)
  for case in rounds[0]:
    ratios = {limit: [r[case] / r[limit] for r in rounds]
              for limit in ('decode_limit', 'example_limit')}
    print(json.dumps({'case': case, 'round': 'median', 'picture': f'{FLAGS.width}x{FLAGS.height}',
                      'crop': FLAGS.crop,
                      'images_per_cpu_second': round(statistics.median(r[case] for r in rounds), 2),
                      **{f'cpu_ratio_to_{limit}': round(statistics.median(values), 3)
                         for limit, values in ratios.items()},
                      **{f'cpu_ratio_to_{limit}_range': [round(min(v), 3), round(max(v), 3)]
                         for limit, v in ratios.items()}}), flush=True)


if __name__ == '__main__':
  app.run(main)
