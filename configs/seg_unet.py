"""Fine-tuning instead of starting from zero: a U-Net decoder on an ImageNet ResNet-50 (keras-hub).

seg_xception.py's data, augmentation, loss and schedule, with the model zoo's `unet` on
keras-hub's `resnet_50_imagenet` preset (its own input normalisation is the model's first
layer) and the encoder's steps at a tenth of the decoder's. Offline, the run stops in seconds
with the command that brings the preset folder; set model.weights to that folder (or to
'random', or to an earlier run's workdir). Predict sides are multiples of 32, the encoder's
stride.
"""

from configs import seg_xception


def get_config():
  config = seg_xception.get_config()
  config.model.name = 'unet'
  config.model.backbone = 'resnet50'
  config.model.weights = 'resnet_50_imagenet'  # A preset name or folder, a run, 'random'.
  config.model.decoder_widths = (256, 128, 64, 32, 16)
  config.train.encoder_lr_multiplier = 0.1
  config.train.learning_rate = 1e-3
  config.predict.sizes = (160, 192)
  return config
