"""Binary masks saved as grey 0/255 pictures (foreground white), e.g. cells, lesions, roads.

    python main.py --config=configs/own_binary.py --workdir=runs/binary --mode=check_data \
      --config.data.files.train_images=DIR/train/images \
      --config.data.files.train_masks=DIR/train/masks --config.data.files.mask_suffix=_mask
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.class_names = ('background', 'foreground')
  config.data.label_map = '0:0,255:1'  # The raw grey values -> classes.
  return config
