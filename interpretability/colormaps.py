"""Colours for label masks and heatmaps, as numpy lookups (no plotting library needed)."""

import numpy as np

# One colour per trimap class: pet, background, outline (then more for larger label sets).
MASK_PALETTE = np.array([[230, 25, 75], [0, 130, 200], [255, 225, 25], [60, 180, 75],
                         [145, 30, 180], [245, 130, 48]], np.uint8)


def colorize_mask(mask: np.ndarray) -> np.ndarray:
  """Label mask (..., H, W) or (..., H, W, 1) of ints to RGB uint8 (..., H, W, 3)."""
  mask = np.asarray(mask)
  if mask.shape[-1] == 1:
    mask = mask[..., 0]
  return MASK_PALETTE[mask.astype(np.int64) % len(MASK_PALETTE)]


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float) -> np.ndarray:
  """`alpha` of `overlay` over `image`, both RGB in [0, 255]; uint8 result."""
  mixed = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * np.asarray(overlay, np.float32)
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """The mask's class colours blended over the image, to see where each class lies."""
  return blend(image, colorize_mask(mask), alpha)


def _jet_table() -> np.ndarray:
  """256-entry jet colour table (blue, cyan, yellow, red), as matplotlib's 'jet' draws it."""
  x = np.linspace(0.0, 1.0, 256)
  red = np.clip(np.minimum(4 * x - 1.5, -4 * x + 4.5), 0, 1)
  green = np.clip(np.minimum(4 * x - 0.5, -4 * x + 3.5), 0, 1)
  blue = np.clip(np.minimum(4 * x + 0.5, -4 * x + 2.5), 0, 1)
  return np.round(np.stack([red, green, blue], -1) * 255).astype(np.uint8)


JET = _jet_table()


def jet(heatmap: np.ndarray) -> np.ndarray:
  """Heatmap in [0, 1] (any shape) to RGB uint8 with the jet colours."""
  index = np.round(np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0) * 255).astype(np.int64)
  return JET[index]


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
  """The book's Grad-CAM picture: the jet-coloured heatmap at `alpha` over the image.

  `heatmap` must already have the image's height and width.
  """
  return blend(image, jet(heatmap), alpha)
