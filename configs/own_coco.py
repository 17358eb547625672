"""Masks drawn from annotators' polygons (BUILD.md "Your own labels"): a folder of pictures
and a COCO instances .json (or a CVAT for images 1.1 .xml, or a folder of LabelMe .json files)
in data.files.<split>_masks. Each format is drawn as its own tools draw it, once, when the set
is prepared; the classes are 'background' (what no shape covers) then the file's categories
in id order, unless data.class_names names them.

    python main.py --config=configs/own_coco.py --workdir=runs/coco --mode=check_data \
      --config.data.files.train_images=DIR/images \
      --config.data.files.train_masks=DIR/annotations/instances_train.json
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.class_names = ()  # 'background' and the annotations' own labels.
  return config
