"""The benchmarks' shared data: a synthetic set with Oxford-IIIT Pet's count and photo size."""

import os

from absl import flags

from configs import seg
from data import sources
from data import synthetic
import specs


def book_config_on_oxford_sized(num_images: int, image_size: int, data_dir: str,
                                folder: str | None = None):
  """(config, folder, prepared builder): the book's config reading `folder`, or a synthetic
  set of `num_images` 500-px-wide photos written once under `data_dir`; split train+test."""
  folder = folder or synthetic.write_synthetic_pets(
      os.path.join(data_dir, f'synthetic_{num_images}'),
      num_trainval=num_images - num_images // 2, num_test=num_images // 2, photo_size=500)
  config = seg.get_config()
  config.data.source, config.data.folder = 'folder', folder
  config.data.image_size = image_size
  config.data.validation_fraction = 0.0  # Every picture in train+test.
  config.data.train_split = config.data.eval_split = 'train+test'
  config.data.cache = 'memory'
  return config, folder, sources.prepared_builder(specs.describe(config).data, data_dir)


def define_flags(num_images: int, image_size: int, batch: int, data_dir: str) -> None:
  """The flags every benchmark over these pictures takes, with its own defaults."""
  flags.DEFINE_string('folder', None, 'An Oxford-layout folder to measure instead of '
                      'synthetic data.')
  flags.DEFINE_integer('num_images', num_images, 'Synthetic pictures (Oxford-IIIT Pet has '
                       '7,390).')
  flags.DEFINE_integer('image_size', image_size, 'Model input side.')
  flags.DEFINE_integer('batch', batch, 'Global batch.')
  flags.DEFINE_integer('repeats', 3, 'Interleaved rounds of every case.')
  flags.DEFINE_string('data_dir', data_dir, 'Where synthetic data and prepared sets go.')
