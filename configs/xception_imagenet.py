"""Book section 9.4 on its own subject: Keras' Xception pretrained on ImageNet, explained.

    python main.py --config=configs/xception_imagenet.py --workdir=DIR --mode=explain \\
        --images=elephant.jpg

needs no training and no model in DIR: activation grids, the book's filter patterns of three
block layers, and Grad-CAM of each picture's three best ImageNet classes (named by Keras'
ImageNet class index when Keras can get it, numbered otherwise). `model.weights`: imagenet
(downloaded by Keras on first use), random, or the path of a weights file.
"""

from configs import base

IMAGENET_CLASSES = 1000


def get_config():
  config = base.get_base_config()
  config.task = 'classification'
  config.model.name = 'xception'
  config.model.weights = 'imagenet'
  config.data.image_size = 299
  config.data.label_feature = 'label'
  config.data.class_names = tuple(str(i) for i in range(IMAGENET_CLASSES))
  explain = config.summaries.explain
  explain.activation_layers = ('block1_conv1_act', 'block3_sepconv1_act', 'block8_sepconv1_act',
                               'block14_sepconv2_act')
  explain.filter_layers = ('block2_sepconv1', 'block4_sepconv1', 'block8_sepconv1')
  explain.num_filters = 16
  explain.top_classes = 3
  explain.class_index = 'imagenet'
  return config
