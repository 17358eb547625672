"""What the periodic explain summaries cost next to training, for a config (prints JSON).

Measures, on this machine, one explain pass (activation grids, filter patterns, Grad-CAM
with the config's summaries.explain settings) and the train-step throughput of the same
model at the same size, then estimates the explain share of an epoch over the full
Oxford-IIIT Pet training split (6,349 images for the book's hold-out):
    share = explain_seconds / explain_every_epochs / (epoch_images / train_images_per_s)

    python -m benchmarks.explain_cost --config=configs/seg.py [--steps=3 --batch=8]
"""

import json
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from interpretability import explanation as explain_lib
from modeling import models
import tasks
from training import optimizers
from training import steps as steps_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/seg.py', 'Experiment config.')
flags.DEFINE_integer('steps', 3, 'Timed training steps (after one warm-up step).')
flags.DEFINE_integer('batch', 8, 'Batch size of the timed training steps.')
flags.DEFINE_integer('epoch_images', 6349, 'Images in one training epoch (book: 7,349 - 1,000).')


def main(argv):
  del argv
  config = FLAGS.config
  size, classes = config.data.image_size, len(config.data.class_names)
  model = models.build_model(config.model, size, classes)
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (config.summaries.num_images, size, size, 3)).astype(np.float32)
  start = time.perf_counter()
  explanation = explain_lib.explain(model, images, config.summaries.explain,
                                tuple(config.data.class_names), tasks.of(config))
  explain_seconds = time.perf_counter() - start

  strategy = tf.distribute.get_strategy()
  optimizer = optimizers.make_optimizer(config.train, 'float32')
  trainer = steps_lib.Steps(strategy, model, optimizer,
                            global_batch_size=FLAGS.batch, num_classes=classes)
  batch = {'image': tf.constant(rng.uniform(0, 255, (FLAGS.batch, size, size, 3)), tf.float32),
           'label': tf.constant(rng.integers(0, classes, (FLAGS.batch, size, size, 1)), tf.uint8)}
  data = iter(tf.data.Dataset.from_tensors(batch).repeat())
  trainer.train_steps(data, tf.constant(1))
  start = time.perf_counter()
  trainer.train_steps(data, tf.constant(FLAGS.steps))
  images_per_s = FLAGS.steps * FLAGS.batch / (time.perf_counter() - start)
  epoch_seconds = FLAGS.epoch_images / images_per_s
  every = config.summaries.explain_every_epochs
  print(json.dumps({
      'model': config.model.name, 'image_size': size, 'explain_seconds': round(explain_seconds, 2),
      'explain_parts_seconds': {k: round(v, 2) for k, v in explanation.seconds.items()},
      'train_images_per_s': round(images_per_s, 3), 'epoch_images': FLAGS.epoch_images,
      'epoch_seconds_estimate': round(epoch_seconds, 1), 'explain_every_epochs': every,
      'explain_share_of_epoch': round(explain_seconds / max(every, 1) / epoch_seconds, 4),
  }))


if __name__ == '__main__':
  app.run(main)
