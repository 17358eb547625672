"""Checks every example a split list names before the folder is prepared.

Each listed name needs images/<name>.jpg that decodes (by content), and
annotations/trimaps/<name>.png that decodes to the image's size with values 1, 2, 3 only.
"""

import os

import numpy as np
import tensorflow as tf

from data import decode


def read_list(list_path: str) -> list[str]:
  """The non-empty lines of a split list file (`<name> <class> <species> <breed>`), each ending
  in one newline, as any editor may have saved it (a UTF-8 BOM, CRLF or CR line ends)."""
  with open(list_path, encoding='utf-8-sig') as f:  # Universal newlines: CRLF and CR too.
    return [line.strip() + '\n' for line in f if line.strip()]


def example_problem(folder: str, name: str) -> str | None:
  """What is wrong with one listed example, or None when it is usable."""
  image_path = os.path.join(folder, 'images', name + '.jpg')
  trimap_path = os.path.join(folder, 'annotations', 'trimaps', name + '.png')
  for path in (image_path, trimap_path):
    if not os.path.isfile(path):
      return f'{os.path.relpath(path, folder)} is missing'
  try:
    image = decode.decode_image(tf.io.read_file(image_path))
  except tf.errors.OpError:
    return f'{os.path.relpath(image_path, folder)} is not a readable picture (corrupt, ' \
           'truncated or not an image)'
  try:
    trimap = tf.io.decode_image(tf.io.read_file(trimap_path), channels=1,
                                expand_animations=False).numpy()
  except tf.errors.OpError:
    return f'{os.path.relpath(trimap_path, folder)} is not a readable PNG'
  if trimap.shape[:2] != tuple(image.shape[:2]):
    return (f'trimap {trimap.shape[1]}x{trimap.shape[0]} differs from its image '
            f'{image.shape[1]}x{image.shape[0]}')
  values = set(np.unique(trimap).tolist())
  if not values <= {1, 2, 3}:
    return f'trimap holds values {sorted(values - {1, 2, 3})} outside 1..3'
  return None


def bad_examples(folder: str, list_path: str) -> list[tuple[str, str]]:
  """[(line, problem)] for every unusable example named in `list_path`."""
  problems = []
  for line in read_list(list_path):
    problem = example_problem(folder, line.split()[0])
    if problem:
      problems.append((line, problem))
  return problems
