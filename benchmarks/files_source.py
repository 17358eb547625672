"""What generality costs: the same pictures through data.source=files and the Oxford folder
source, in steady-state input images per CPU-second, and the files source's preparation time.

The files source reads the Oxford layout as a user's own set would be read: images/ and
annotations/trimaps/ as folders, data.label_map='1:0,2:1,3:2'. Each round reads every
training picture through each source's pipeline (read, decode, map the mask, resize, batch;
no cache, so every round decodes), interleaved; the last line gives the medians.

    python -m benchmarks.files_source [--num_images=2000 --image_size=128 --repeats=3]
    python -m benchmarks.files_source --folder=../shared/oxford_pets_sample
"""

import json
import os
import shutil
import statistics
import time

from absl import app
from absl import flags
import tensorflow as tf

from benchmarks import oxford_sized
from data import input_pipeline
from data import sources
import specs

oxford_sized.define_flags(2000, 128, 32, '/tmp/segstream_bench_files')
FLAGS = flags.FLAGS


def _rates(dataset: tf.data.Dataset) -> tuple:
  """(images per second, images per CPU-second) of one pass."""
  wall, cpu, images = time.perf_counter(), time.process_time(), 0
  for batch in dataset:
    images += int(batch['image'].shape[0])
  return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def _pipeline(builder, data_config) -> tf.data.Dataset:
  split = sources.resolve_splits(data_config).train
  return sources.read_encoded(builder, split).map(
      input_pipeline.preprocess_fn(input_pipeline.pipeline(data_config)),
      num_parallel_calls=tf.data.AUTOTUNE).batch(FLAGS.batch)


def main(argv):
  del argv
  config, folder, oxford = oxford_sized.book_config_on_oxford_sized(
      FLAGS.num_images, FLAGS.image_size, FLAGS.data_dir, FLAGS.folder)
  files_config = config.copy_and_resolve_references()
  files_config.data.source = 'files'
  files_config.data.label_map = '1:0,2:1,3:2'
  files_config.data.validation_fraction = 0.1
  files_config.data.train_split = files_config.data.eval_split = None
  files_config.data.files.train_images = os.path.join(folder, 'images')
  files_config.data.files.train_masks = os.path.join(folder, 'annotations', 'trimaps')
  prepared = os.path.join(FLAGS.data_dir, 'files_prepared')
  shutil.rmtree(prepared, ignore_errors=True)
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  files = sources.prepared_builder(specs.describe(files_config).data, prepared)
  pictures = sum(files.info.splits[s].num_examples for s in files.info.splits)
  print(json.dumps({'case': 'files_preparation', 'pictures': pictures,
                    'ms_per_picture': round(1000 * (time.perf_counter() - start_wall) /
                                            pictures, 2),
                    'cpu_ms_per_picture': round(1000 * (time.process_time() - start_cpu) /
                                                pictures, 2)}), flush=True)
  rounds = []
  for repeat in range(FLAGS.repeats):
    oxford_rates = _rates(_pipeline(oxford, config.data))
    files_rates = _rates(_pipeline(files, files_config.data))
    rounds.append({'round': repeat + 1, 'image_size': FLAGS.image_size,
                   'oxford_folder_images_per_cpu_second': round(oxford_rates[1], 1),
                   'files_images_per_cpu_second': round(files_rates[1], 1),
                   'files_to_oxford_cpu_ratio': round(files_rates[1] / oxford_rates[1], 3),
                   'files_to_oxford_wall_ratio': round(files_rates[0] / oxford_rates[0], 3)})
    print(json.dumps(rounds[-1]), flush=True)
  print(json.dumps({'round': 'median', **{key: statistics.median(r[key] for r in rounds)
                                          for key in rounds[0] if key != 'round'}}),
        flush=True)


if __name__ == '__main__':
  app.run(main)
