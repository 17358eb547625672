"""Colour-coded RGB masks with a colour table (CamVid's 32-colour files, drone and satellite
sets): one (r, g, b) per class, in class order. Colours off the table (anti-aliased edges,
a "void" colour) become ignored pixels; check_data counts them and lists the commonest.

    python main.py --config=configs/own_colors.py --workdir=runs/colors \
      --config.data.files.train_images=DIR/train --config.data.files.train_masks=DIR/train_labels \
      --config.data.files.mask_suffix=_L
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.class_names = ('sky', 'building', 'road', 'tree', 'car', 'pedestrian')
  config.data.mask_colors = ((128, 128, 128), (128, 0, 0), (128, 64, 128), (128, 128, 0),
                             (64, 0, 128), (64, 64, 0))
  return config
