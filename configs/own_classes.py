"""Classification from a folder of class sub-folders (keras.utils.image_dataset_from_directory's
layout): DIR/<class name>/*.jpg; the class names are the folder names.

    python main.py --config=configs/own_classes.py --workdir=runs/classes \
      --config.data.files.train_images=DIR/train [--config.data.files.test_images=DIR/test]
"""

from configs import base


def get_config():
  config = base.get_base_config()
  config.task = 'classification'
  config.data.source = 'files'
  config.data.label_feature = 'label'
  config.data.class_names = ()  # Empty: the sub-folders' names, sorted.
  config.data.image_size = 128
  config.model.name = 'mini_xception'
  config.model.bn_momentum = 0.9
  config.data.augment.flip = False  # The model's augmentation stage flips.
  config.train.optimizer = 'adamw'
  config.train.weight_decay = 0.05
  config.train.schedule = 'cosine'
  config.train.global_batch_size = 32
  config.eval.global_batch_size = 32
  config.eval.best_metric = 'accuracy'
  config.train.epochs = 60
  config.summaries.explain.num_filter_layers = 1
  return config
