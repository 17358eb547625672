"""keras-hub's DeepLabV3+ on an ImageNet ResNet-50, fine-tuned on Oxford-IIIT Pet trimaps.

seg_unet.py with the `deeplabv3plus` family (ASPP at 1/32 with dilations 6/12/18, decoder joined
at 1/4). `model.weights='deeplab_v3_plus_resnet50_pascalvoc'` starts from keras-hub's VOC
segmenter instead: everything but the 21-class head carries over.
"""

from configs import seg_unet


def get_config():
  config = seg_unet.get_config()
  config.model.name = 'deeplabv3plus'
  return config
