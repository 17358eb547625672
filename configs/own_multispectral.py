"""Rasters with more bands than RGB (BUILD.md "Pictures with more bands"): a folder of 4-band
16-bit GeoTIFFs (Sentinel-2's B2, B3, B4, B8) with PNG class-id masks.

configs/own_data.py's recipe on every band: each picture is read by rasterio in its own
values (no 8-bit squashing), the model's first layer normalises each band by the training
split's mean and standard deviation (computed once when the data is prepared, printed by
--mode=check_data), flips and crops move every band with the mask, and overlays show bands
3, 2, 1 (red, green, blue) stretched from their 2nd to 98th percentile.

    python main.py --config=configs/own_multispectral.py --workdir=runs/ms --mode=check_data \
      --config.data.files.train_images=DIR/train/images \
      --config.data.files.train_masks=DIR/train/masks
"""

from configs import own_data


def get_config():
  config = own_data.get_config()
  config.data.bands = 4
  config.data.rgb_bands = (3, 2, 1)  # B4 red, B3 green, B2 blue.
  config.data.class_names = ('soil', 'vegetation', 'turf')
  # own_data's colour jitter is off: the figures in docs/results.md were measured without it
  # (rasters take it on data.augment.jitter_bands, BUILD.md "Pictures with more bands").
  config.data.augment.color_jitter = 0.0
  return config
