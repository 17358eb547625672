"""Cat vs dog with the book's mini-Xception (9.3.5), from the `species` label of the same data.

180x180 pictures, the model's own augmentation stage (flip, rotation, zoom), dropout 0.5, a
sigmoid head with binary cross-entropy, accuracy; everything else is configs/base.py.
"""

from configs import base


def get_config():
  config = base.get_base_config()
  config.task = 'classification'
  config.model.name = 'mini_xception'
  config.model.bn_momentum = 0.99
  config.data.label_feature = 'species'
  config.data.class_names = ('cat', 'dog')
  config.data.image_size = 180
  config.data.augment.flip = False  # The model's augmentation stage flips.
  config.train.global_batch_size = 32
  config.eval.global_batch_size = 32
  config.train.optimizer = 'rmsprop'
  config.train.epochs = 100
  config.summaries.explain.num_filter_layers = 1
  return config
