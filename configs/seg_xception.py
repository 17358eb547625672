"""The Xception-style U-Net on Oxford-IIIT Pet trimaps: what section 9.3 makes of section 9.2.

Differs from the book's config only where the better model needs it: separable residual
blocks with encoder skips, batch norm with momentum 0.9 (fits in a short run), Adam with a
cosine schedule, random crops besides flips, a smaller batch.
"""

from configs import base


def get_config():
  config = base.get_base_config()
  config.model.name = 'xception_unet'
  config.model.widths = (32, 64, 128, 256)
  config.model.bn_momentum = 0.9
  config.model.upsampling = 'bilinear'  # bilinear | transpose
  config.data.image_size = 128
  config.data.augment.min_crop_fraction = 0.7
  config.train.global_batch_size = 8
  config.eval.global_batch_size = 8
  config.train.optimizer = 'adam'
  config.train.learning_rate = 2e-3
  config.train.schedule = 'cosine'
  config.train.warmup_steps = 100
  config.train.epochs = 30
  config.train.steps_per_call = 4
  return config
