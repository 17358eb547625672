"""Large pictures with small or thin things (microscopy, satellite, street scenes): train on
crops at the pictures' own resolution, predict by sliding a window over the whole picture.

The own-data recipe (configs/own_data.py) with 256x256 crops of each picture scaled by 0.5-2.0,
a Dice term beside cross-entropy, and the best model by validation mean Dice; evaluation,
predict, score and export slide 256x256 windows two thirds apart. Binary 0/255 masks:

    python main.py --config=configs/own_large.py --workdir=runs/large \
      --config.data.files.train_images=DIR/train/images \
      --config.data.files.train_masks=DIR/train/masks \
      "--config.data.class_names=('background','membrane')" --config.data.label_map=0:0,255:1

BUILD.md "Large pictures" shows what each field does and what it measured.
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.resize = 'none'
  config.data.crop_size = (256, 256)
  config.data.augment.scale_range = (0.5, 2.0)
  config.data.augment.min_crop_fraction = 1.0  # The crop above replaces the squashed crop.
  config.train.global_batch_size = 8
  config.eval.global_batch_size = 8
  config.train.loss = 'cross_entropy+dice'
  config.eval.best_metric = 'mean_dice'
  config.predict.windows_per_call = 8
  return config
