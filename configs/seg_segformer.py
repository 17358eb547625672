"""keras-hub's SegFormer-B0 (MiT-B0 encoder, all-MLP decoder) fine-tuned on Oxford-IIIT Pet.

Starts from keras-hub's ADE20K SegFormer-B0 preset (its 150-class head is replaced); the
encoder learns at a tenth of the rate, as the peers fine-tune transformers. MiT is built for
one input side, so each predict side builds its own copy of the weights; B1-B5 by
model.backbone=mit_b1 ... mit_b5 with their presets (BUILD.md "Model zoo").
"""

from configs import seg_unet


def get_config():
  config = seg_unet.get_config()
  config.model.name = 'segformer'
  config.model.backbone = 'mit_b0'
  config.model.weights = 'segformer_b0_ade20k_512'
  config.train.learning_rate = 6e-4
  return config
