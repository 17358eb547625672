"""Class-id masks (grey PNGs holding 0..N-1) with a "void" id that must count nowhere, as the
11-class CamVid of SegNet writes them (id 11 = void).

    python main.py --config=configs/own_ids_void.py --workdir=runs/camvid \
      --config.data.files.train_images=CamVid/train \
      --config.data.files.train_masks=CamVid/trainannot \
      --config.data.files.validation_images=CamVid/val \
      --config.data.files.validation_masks=CamVid/valannot \
      --config.data.files.test_images=CamVid/test --config.data.files.test_masks=CamVid/testannot
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.class_names = ('sky', 'building', 'pole', 'road', 'pavement', 'tree',
                             'sign', 'fence', 'car', 'pedestrian', 'bicyclist')
  config.data.ignore_index = 11
  config.train.class_weights = 'auto'  # Poles and signs are a sliver of the pixels.
  return config
