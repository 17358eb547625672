"""The U-Net of TensorFlow's segmentation tutorial: a MobileNetV2 encoder pretrained on ImageNet.

MobileNetV2 (keras.applications, its own preprocess_input) read at five resolutions, a decoder
of strided transposed convs with skips; the decoder trains alone for the first epochs, then
everything, with the encoder's batch norm kept in its ImageNet statistics. Keras downloads
the ImageNet weights once; offline, set model.weights to a weights file or 'random'.
Data and schedule are seg_xception.py's; predict sides are multiples of 32.
"""

from configs import seg_xception


def get_config():
  config = seg_xception.get_config()
  config.model = config.model.__class__()
  config.model.name = 'mobilenet_v2_unet'
  config.model.weights = 'imagenet'  # imagenet | random | a weights file
  config.model.backbone = 'resnet50'  # Read by the zoo's models only.
  config.model.alpha = 1.0  # MobileNetV2's width multiplier (ImageNet weights: 0.35-1.4).
  config.model.decoder_widths = (512, 256, 128, 64)
  config.model.bn_momentum = 0.9  # The decoder's.
  config.model.sync_batch_norm = False
  config.model.freeze_encoder_epochs = 10
  config.train.learning_rate = 1e-3
  config.predict.sizes = (128, 160)  # Sides must be multiples of 32, MobileNetV2's stride.
  return config
