"""Colours for label masks and heatmaps, as numpy lookups (no plotting library needed)."""

import numpy as np

from tasks import IGNORE  # Pixels of no class, drawn without a colour.

# One colour per trimap class: pet, background, outline (then more for larger label sets).
MASK_PALETTE = np.array([[230, 25, 75], [0, 130, 200], [255, 225, 25], [60, 180, 75],
                         [145, 30, 180], [245, 130, 48]], np.uint8)




def voc_colors(count: int = 256) -> np.ndarray:
  """[count, 3] uint8: PASCAL VOC's palette (the bits of each index spread over r, g, b), all
  distinct; index 255 is VOC's border colour (224, 224, 192)."""
  index = np.arange(count)
  colors = np.zeros((count, 3), np.int64)
  for bit in range(8):
    for channel in range(3):
      colors[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
  return colors.astype(np.uint8)


def class_colors(num_classes: int, colors=None) -> np.ndarray:
  """[num_classes, 3] uint8: the data's own colours (a colour table or a "P" palette), else
  MASK_PALETTE and then VOC's palette colours not already in it, all distinct."""
  if colors is not None and len(colors) == num_classes:
    return np.asarray(colors, np.uint8)
  known = {tuple(c) for c in MASK_PALETTE.tolist()}
  more = [c for c in voc_colors()[1:].tolist() if tuple(c) not in known]
  return np.asarray(MASK_PALETTE.tolist() + more, np.uint8)[:num_classes]


def colorize_mask(mask: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
  """Label mask (..., H, W) or (..., H, W, 1) of ints to RGB uint8 (..., H, W, 3), in
  `colors` ([classes, 3]; default MASK_PALETTE); ignored pixels black."""
  mask = np.asarray(mask).astype(np.int64)
  if mask.shape[-1] == 1:
    mask = mask[..., 0]
  colors = MASK_PALETTE if colors is None else np.asarray(colors, np.uint8)
  table = np.zeros((256, 3), np.uint8)
  table[:IGNORE] = colors[np.arange(IGNORE) % len(colors)]
  return table[np.clip(mask, 0, 255)]


def blend(image: np.ndarray, overlay: np.ndarray, alpha) -> np.ndarray:
  """`alpha` (a number, or one per pixel) of `overlay` over `image`, both RGB in [0, 255];
  uint8 result."""
  mixed = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * np.asarray(overlay, np.float32)
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
                 colors: np.ndarray | None = None) -> np.ndarray:
  """The mask's class colours blended over the image, to see where each class lies; ignored
  pixels show the picture alone."""
  mask = np.asarray(mask)
  if mask.shape[-1] == 1:
    mask = mask[..., 0]
  alpha = np.where(mask == IGNORE, 0.0, alpha)[..., None].astype(np.float32)
  return blend(image, colorize_mask(mask, colors), alpha)


def confusion_image(confusion: np.ndarray, cell: int = 24) -> np.ndarray:
  """A confusion matrix (rows truth, columns prediction) as a picture: each row normalised to
  sum 1, white (0) to dark blue (1), `cell` pixels a class, a grey line between cells."""
  confusion = np.asarray(confusion, np.float64)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1.0)
  white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
  colors = white + shares[..., None] * (blue - white)
  picture = np.repeat(np.repeat(colors, cell, 0), cell, 1)
  picture[::cell, :] = picture[:, ::cell] = 160
  return np.round(picture).astype(np.uint8)


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
