"""How far the masks this product draws from annotation files agree with a tool's own masks.

    python -m benchmarks.annotation_agreement --annotations=DIR/labelme --images=DIR/images \
        --tool_masks=DIR/SegmentationClassPNG --class_names=_background_,person,bus

reads --annotations (a COCO or CVAT file, or a folder of LabelMe files) as preparation does,
draws each picture's class ids at its own size (the size of its picture in --images), and
compares them pixel by pixel with the class-id PNG the annotation tool itself wrote for that
picture (labelme2voc's SegmentationClassPNG, a COCO API render, ...; named like the picture,
255 the ignore label). --class_names in the tool's own order (labelme2voc's labels.txt without
__ignore__) so both sides number classes alike. Prints a line per picture and a JSON total:
the share of pixels that agree, and which classes the disagreeing pixels hold on each side.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from data import annotations

flags.DEFINE_string('annotations', None, 'A COCO or CVAT file, or a folder of LabelMe files.')
flags.DEFINE_string('images', None, 'The pictures, named as the annotations name them.')
flags.DEFINE_string('tool_masks', None, "The tool's own class-id PNGs, named like the pictures.")
flags.DEFINE_list('class_names', [], "Classes in the tool's order (class 0 first).")
flags.DEFINE_integer('line_width', 10, 'data.annotations.line_width.')
flags.mark_flags_as_required(['annotations', 'images', 'tool_masks', 'class_names'])
FLAGS = flags.FLAGS


def _picture_sizes(folder: str) -> dict:
  """{picture key: (height, width)} of the pictures below `folder`."""
  sizes = {}
  for root, _, files in os.walk(folder):
    for name in files:
      with Image.open(os.path.join(root, name)) as picture:
        key = annotations.picture_key(os.path.relpath(os.path.join(root, name), folder))
        sizes[key] = (picture.height, picture.width)
  return sizes


def main(argv):
  del argv
  found = annotations.read_split(FLAGS.annotations)
  sizes = _picture_sizes(FLAGS.images)
  agree = total = 0
  differ = {}
  for key, annotated in sorted(found.pictures.items()):
    name = os.path.basename(key)
    tool_path = os.path.join(FLAGS.tool_masks, name + '.png')
    if not os.path.exists(tool_path):
      print(f'{key}: no tool mask, skipped')
      continue
    height, width = sizes[name]
    drawn = annotations.draw(annotated, tuple(FLAGS.class_names), height, width,
                             line_width=FLAGS.line_width).classes
    tool = np.asarray(Image.open(tool_path))
    same = drawn == tool
    agree, total = agree + int(same.sum()), total + same.size
    pairs, counts = np.unique(np.stack([drawn[~same], tool[~same]]), axis=1,
                              return_counts=True)
    for (ours, theirs), count in zip(pairs.T, counts):
      differ[f'{ours}->{theirs}'] = differ.get(f'{ours}->{theirs}', 0) + int(count)
    print(f'{key}: {same.mean():.4%} of {same.size} pixels agree')
  print(json.dumps({'pictures': len(found.pictures), 'pixels': total,
                    'agreement': round(agree / max(total, 1), 6),
                    'differing (ours->tool: pixels)': dict(sorted(differ.items()))}))


if __name__ == '__main__':
  app.run(main)
