"""Any TFDS data set with a picture and a class-id mask feature, by name, e.g.

    python main.py --config=configs/tfds_seg.py --workdir=runs/tfds \
      --config.data.tfds_name=NAME --config.data.mask_key=FEATURE \
      "--config.data.class_names=(...)" [--config.data.ignore_index=255]
      [--config.data.label_map=...] [--config.data.eval_split=test]

Its splits default to train / validation / test (TFDS split strings; change them with
data.train_split, data.eval_split, data.test_split).
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.source = 'tfds'
  config.data.tfds_name = 'oxford_iiit_pet'
  config.data.class_names = ('pet', 'background', 'outline')
  return config
