"""Your own pictures and masks (data.source=files): the recipe every own-data config shares.

The Xception U-Net of configs/seg_xception.py at 128 px with Adam, flips and mild crops and
lighting changes, a soft-Jaccard term for small classes, and the best model by validation
mean IoU. Its length is in optimizer steps (500), with an "epoch" of 50 steps whatever the
set's size, so a set of 24 pictures trains as long as one of 2,400 and is evaluated every 50
steps. Set the folders on the command line or in a config that builds on this one:

    python main.py --config=configs/own_data.py --workdir=runs/mine \
      --config.data.files.train_images=DIR/images --config.data.files.train_masks=DIR/masks \
      "--config.data.class_names=('background','cell')" --config.data.label_map=0:0,255:1

Run `--mode=check_data` first: it reads every file once and names what to fix.
"""

from configs import base


def get_config():
  config = base.get_base_config()
  config.data.source = 'files'
  config.data.class_names = ('background', 'object')
  config.data.validation_fraction = 0.15  # Of train, when there is no validation folder.
  config.data.image_size = 128
  config.data.augment.min_crop_fraction = 0.8
  config.data.augment.color_jitter = 0.1
  config.model.name = 'xception_unet'
  config.model.widths = (32, 64, 128, 256)
  config.model.bn_momentum = 0.9
  config.model.upsampling = 'bilinear'
  config.train.optimizer = 'adam'
  config.train.learning_rate = 2e-3
  config.train.schedule = 'cosine'
  config.train.warmup_steps = 50
  config.train.loss = 'cross_entropy+jaccard'
  config.train.global_batch_size = 16
  config.eval.global_batch_size = 16
  config.train.steps = 500
  config.train.steps_per_epoch = 50  # Evaluation, summaries and checkpoints every 50 steps.
  config.train.steps_per_call = 5
  config.eval.every_epochs = 1
  config.eval.best_metric = 'mean_iou'
  config.summaries.explain_every_epochs = 5
  return config
