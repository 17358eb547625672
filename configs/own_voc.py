"""PASCAL VOC layout: JPEG pictures, palette ("P") PNG masks whose indices are the classes,
255 on the object borders (ignored), and ImageSets lists naming each split's pictures.

    python main.py --config=configs/own_voc.py --workdir=runs/voc \
      --config.data.files.train_images=VOC2012/JPEGImages \
      --config.data.files.train_masks=VOC2012/SegmentationClass \
      --config.data.files.train_list=VOC2012/ImageSets/Segmentation/train.txt \
      --config.data.files.validation_images=VOC2012/JPEGImages \
      --config.data.files.validation_masks=VOC2012/SegmentationClass \
      --config.data.files.validation_list=VOC2012/ImageSets/Segmentation/val.txt
"""

from configs import own_data

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def get_config():
  config = own_data.get_config()
  config.data.class_names = VOC_CLASSES
  config.data.ignore_index = 255  # The palette index of the borders.
  config.data.validation_fraction = 0.0  # val.txt is the validation split.
  return config
