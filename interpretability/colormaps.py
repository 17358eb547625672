"""Colours for label masks and heatmaps, as numpy lookups (no plotting library needed)."""

import numpy as np

from interpretability import font
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
  pixels show the picture alone. A multi-label mask (0/1 per class, [..., H, W, classes]) shows
  the mean colour of a pixel's classes, and the picture alone where it has none."""
  mask = np.asarray(mask)
  if mask.shape[-1] == 1:
    mask = mask[..., 0]
  if mask.ndim == np.ndim(image):
    return blend(image, *_multilabel_colors(mask, colors, alpha))
  alpha = np.where(mask == IGNORE, 0.0, alpha)[..., None].astype(np.float32)
  return blend(image, colorize_mask(mask, colors), alpha)


def _multilabel_colors(labels: np.ndarray, colors, alpha: float) -> tuple:
  """(uint8 colours, float32 alpha [..., 1]) of 0/1 labels per class."""
  colors = class_colors(labels.shape[-1]) if colors is None else np.asarray(colors)
  on = (labels == 1).astype(np.float32)
  count = on.sum(-1, keepdims=True)
  mixed = (on @ colors[:labels.shape[-1]].astype(np.float32)) / np.maximum(count, 1.0)
  return mixed.astype(np.uint8), np.where(count > 0, alpha, 0.0).astype(np.float32)


def error_map(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
  """The picture in dim grey (its own reds are not errors), with the pixels a prediction got
  wrong in red and the pixels that count nowhere (IGNORE in the truth) mid-grey: where a model
  fails, at a glance."""
  grey = np.asarray(image, np.float32).mean(axis=-1, keepdims=True) * 0.4
  out = np.repeat(grey, 3, axis=-1).astype(np.uint8)
  truth, predicted = np.asarray(truth), np.asarray(predicted)
  wrong, ignored = (truth != predicted) & (truth != IGNORE), truth == IGNORE
  if truth.ndim == out.ndim:  # Multi-label: wrong in any class, ignored in every one.
    wrong, ignored = wrong.any(-1), ignored.all(-1)
  out[wrong] = (255, 0, 0)
  out[ignored] = (128, 128, 128)
  return out


def confusion_image(confusion: np.ndarray, class_names=None, cell: int = 24) -> np.ndarray:
  """A confusion matrix (rows truth, columns prediction) as a picture: each row normalised to
  sum 1, white (0) to dark blue (1), `cell` pixels a class, grey lines between cells; with
  `class_names`, rows are labelled "k name" on the left and columns "k" on top."""
  confusion = np.asarray(confusion, np.float64)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1.0)
  white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
  colors = white + shares[..., None] * (blue - white)
  grid = np.repeat(np.repeat(colors, cell, 0), cell, 1)
  grid[::cell, :] = grid[:, ::cell] = 160
  grid = np.round(grid).astype(np.uint8)
  if class_names is None:
    return grid
  labels = [font.text_mask(f'{k} {name}') for k, name in enumerate(class_names)]
  left, top = max(label.shape[1] for label in labels) + 6, font.HEIGHT + 6
  picture = np.full((top + grid.shape[0], left + grid.shape[1], 3), 255, np.uint8)
  picture[top:, left:] = grid
  for k, label in enumerate(labels):
    row = top + k * cell + (cell - font.HEIGHT) // 2
    picture[row:row + font.HEIGHT, 3:3 + label.shape[1]][label] = 0
    number = font.text_mask(str(k))
    column = left + k * cell + (cell - number.shape[1]) // 2
    picture[3:3 + font.HEIGHT, column:column + number.shape[1]][number] = 0
  return picture


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


def legend(class_names, colors, width: int) -> np.ndarray:
  """uint8 [h, w, 3]: each class's colour swatch and name on white, in rows that fit
  `width` (text 2x on pictures 320 px wide or more). A name too long for `width` on a row of
  its own widens the strip (w > width) rather than being cut."""
  scale = 2 if width >= 320 else 1
  gap, swatch = 3 * scale, font.HEIGHT * scale
  entries = [(font.text_mask(str(name), scale), color) for name, color in
             zip(class_names, np.asarray(colors, np.uint8))]
  width = max([width] + [gap + swatch + gap + text.shape[1] + gap for text, _ in entries])
  rows, row, used = [], [], gap
  for text, color in entries:
    need = swatch + gap + text.shape[1] + 2 * gap
    if row and used + need > width:
      rows.append(row)
      row, used = [], gap
    row.append((text, color, used))
    used += need
  rows.append(row)
  canvas = np.full((len(rows) * (swatch + gap) + gap, width, 3), 255, np.uint8)
  for index, row in enumerate(rows):
    top = gap + index * (swatch + gap)
    for text, color, left in row:
      canvas[top:top + swatch, left:left + swatch] = color
      start = left + swatch + gap
      canvas[top:top + swatch, start:start + text.shape[1]][text] = 0
  return canvas


def with_legend(pictures: np.ndarray, class_names, colors) -> np.ndarray:
  """A picture ([H, W, 3]) or a batch ([N, H, W, 3]) with the legend of its classes below,
  padded with white on the right where a class name is wider than the picture."""
  pictures = np.asarray(pictures, np.uint8)
  strip = legend(class_names, colors, pictures.shape[-2])
  widen = [(0, 0)] * (pictures.ndim - 2) + [(0, strip.shape[1] - pictures.shape[-2]), (0, 0)]
  pictures = np.pad(pictures, widen, constant_values=255)
  if pictures.ndim == 3:
    return np.concatenate([pictures, strip], 0)
  return np.concatenate([pictures, np.broadcast_to(strip, (len(pictures),) + strip.shape)], 1)
