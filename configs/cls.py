"""Cat vs dog with the book's mini-Xception (9.3.5), from the `species` label of the same data.

180x180 pictures, the model's own augmentation stage (flip, rotation, zoom), dropout 0.5, a
sigmoid head with binary cross-entropy, accuracy. Against the book (rmsprop, batch-norm
momentum 0.99), what makes 300 pictures learn steadily: batch-norm statistics that settle
within a short run (momentum 0.9), AdamW with a cosine schedule that ends near 0 (no late
swings), lighting jitter, and the best model picked by validation accuracy.
"""

from configs import base


def get_config():
  config = base.get_base_config()
  config.task = 'classification'
  config.model.name = 'mini_xception'
  config.model.bn_momentum = 0.9
  config.data.label_feature = 'species'
  config.data.class_names = ('cat', 'dog')
  config.data.image_size = 180
  config.data.augment.flip = False  # The model's augmentation stage flips.
  config.data.augment.color_jitter = 0.2
  config.train.global_batch_size = 32
  config.eval.global_batch_size = 32
  config.eval.best_metric = 'accuracy'
  config.train.optimizer = 'adamw'
  config.train.learning_rate = 1e-3
  config.train.weight_decay = 0.05
  config.train.schedule = 'cosine'
  config.train.warmup_steps = 50
  config.train.epochs = 100
  config.summaries.explain.num_filter_layers = 1
  return config
