"""Overlapping classes (BUILD.md "Your own labels"): every pixel holds a 0/1 label per class
(a road under a tree, a cell in two stains), learned by a sigmoid per class with per-class
binary losses, and predicted where each class's probability reaches its threshold (tuned on
validation for each class's best IoU, kept beside the best model).

Masks: one file per picture with a band per class (PNG or TIFF) or one band of bits (bit k is
class k), or a file per class in a sub-folder of the masks folder named after the class; or
annotations (COCO, CVAT, LabelMe), each shape setting its own class.

    python main.py --config=configs/own_multilabel.py --workdir=runs/layers \
      --config.data.files.train_images=DIR/images --config.data.files.train_masks=DIR/masks \
      "--config.data.class_names=('road','tree','building')"
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.task = 'multilabel'
  config.data.class_names = ('disc', 'stripe', 'square')
  config.train.loss = 'cross_entropy+dice'  # Binary, per class.
  config.model.thresholds = 'tune'
  return config
