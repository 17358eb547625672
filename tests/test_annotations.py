"""Masks drawn from annotators' files: COCO JSON, LabelMe JSON, CVAT for images 1.1 XML. Each
test writes its own files; the drawn masks are checked against each tool's own pixel
convention, and check_data's problems and notes against the faults planted."""

import base64
import json
import os

import numpy as np
from pycocotools import mask as coco_mask
import pytest
import tensorflow as tf

from data import annotations
from data import files_source
from errors import DataError
from tasks import IGNORE
from tests.conftest import data_spec, small_config

SIZE = (40, 50)  # height, width of every picture.
PATCH = np.array([[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1]], np.uint8)  # A LabelMe mask shape.


def _pictures(folder: str, names: list) -> str:
  images = os.path.join(folder, 'images')
  os.makedirs(images, exist_ok=True)
  rng = np.random.default_rng(0)
  for name in names:
    tf.io.write_file(os.path.join(images, name + '.png'), tf.io.encode_png(
        rng.integers(0, 255, SIZE + (3,), dtype=np.uint8)))
  return images


def _config(images: str, masks: str, **more):
  return small_config(**{**dict(
      data__source='files', data__files__train_images=images, data__files__train_masks=masks,
      data__validation_fraction=0.0, data__files__test_images=images,
      data__files__test_masks=masks, data__class_names=()), **more})


def _drawn(config) -> tuple[dict, str]:
  scanned, report = files_source.check(data_spec(config))
  masks = {item.example.name: item.mapped.classes for item in scanned['train']}
  return masks, report.format()


def _rectangle(x0, y0, x1, y1) -> list:
  return [x0, y0, x1, y0, x1, y1, x0, y1]


def _coco(folder: str, annotations_list: list, images: list | None = None) -> str:
  path = os.path.join(folder, 'instances.json')
  with open(path, 'w') as f:
    json.dump({'images': images or [
        {'id': i, 'file_name': f'sub/p{i}.png', 'height': SIZE[0], 'width': SIZE[1]}
        for i in range(3)],
               'annotations': annotations_list,
               'categories': [{'id': 7, 'name': 'dog'}, {'id': 3, 'name': 'cat'}]}, f)
  return path


def test_coco_polygons_rle_holes_crowds_and_overlaps_are_drawn_as_pycocotools_draws_them(
    tmp_path):
  images = _pictures(str(tmp_path), ['p0', 'p1', 'p2'])
  ring = np.zeros(SIZE, np.uint8, order='F')
  ring[5:30, 5:30] = 1
  ring[12:20, 12:20] = 0  # A hole: only RLE keeps it.
  compressed = coco_mask.encode(ring)
  compressed['counts'] = compressed['counts'].decode()
  crowd = np.zeros(SIZE, np.uint8)
  crowd[30:38, 40:48] = 1
  runs, value, count = [], 0, 0
  for pixel in crowd.ravel(order='F'):  # COCO's uncompressed RLE: column-major runs.
    if pixel != value:
      runs.append(count)
      value, count = pixel, 0
    count += 1
  runs.append(count)
  path = _coco(str(tmp_path), [
      {'id': 1, 'image_id': 0, 'category_id': 3, 'segmentation': [_rectangle(2, 3, 10, 8)],
       'iscrowd': 0},
      {'id': 2, 'image_id': 0, 'category_id': 7, 'segmentation': [_rectangle(6, 3, 20, 8)],
       'iscrowd': 0},  # Later: drawn over the cat where they overlap.
      {'id': 3, 'image_id': 1, 'category_id': 7, 'segmentation': compressed, 'iscrowd': 0},
      {'id': 4, 'image_id': 1, 'category_id': 3,
       'segmentation': {'counts': runs, 'size': list(SIZE)}, 'iscrowd': 1},
  ])
  config = _config(images, path)
  assert tuple(config.data.class_names) == ('background', 'cat', 'dog')  # Category id order.
  masks, text = _drawn(config)
  first = masks['p0']
  # pycocotools: a pixel is inside when its centre is; x 2..9 and y 3..7 for the cat.
  assert (first == 1).sum() == 4 * 5 and first[3:8, 2:6].min() == 1 and first[8, 2] == 0
  assert (first == 2).sum() == 14 * 5 and first[3:8, 6:20].min() == 2
  second = masks['p1']
  np.testing.assert_array_equal(second == 2, ring.astype(bool))  # The hole is kept.
  assert (second[crowd.astype(bool)] == IGNORE).all()  # A crowd is ignored by default.
  assert 'NOTE train: 1 pictures without any annotation, trained as background: p2' in text
  assert 'cat/dog' in text and 'No problems found.' in text
  config = _config(images, path, data__annotations__crowd='class',
                   data__annotations__class_priority=('dog', 'cat'))
  masks, _ = _drawn(config)
  assert (masks['p1'][crowd.astype(bool)] == 1).all()
  assert (masks['p0'][3:8, 6:10] == 1).all()  # The cat comes later in the priority list.


def test_labelme_shapes_are_drawn_as_labelme_draws_them(tmp_path):
  images = _pictures(str(tmp_path), ['a', 'b'])
  labels = os.path.join(str(tmp_path), 'labels')
  os.makedirs(labels)
  shapes = [
      {'label': 'road', 'shape_type': 'polygon', 'points': [[2, 3], [10, 3], [10, 8], [2, 8]]},
      {'label': 'tree', 'shape_type': 'rectangle', 'points': [[30, 20], [34, 25]]},
      {'label': 'tree', 'shape_type': 'circle', 'points': [[20, 30], [23, 30]]},
      {'label': 'road', 'shape_type': 'linestrip', 'points': [[0, 38], [49, 38]]},
      {'label': 'tree', 'shape_type': 'point', 'points': [[5, 5]]},
      # labelme2voc's own labels: a region no loss sees, and background over the tree.
      {'label': '__ignore__', 'shape_type': 'rectangle', 'points': [[40, 2], [45, 6]]},
      {'label': '_background_', 'shape_type': 'rectangle', 'points': [[32, 22], [33, 23]]},
      # An AI-assisted mask: a PNG over its box, its top-left corner the first point.
      {'label': 'road', 'shape_type': 'mask', 'points': [[14, 12], [17, 14]],
       'mask': base64.b64encode(tf.io.encode_png(PATCH[..., None] * 255).numpy()).decode()},
  ]
  for name, listed in (('a', shapes), ('b', [])):
    with open(os.path.join(labels, name + '.json'), 'w') as f:
      json.dump({'shapes': listed, 'imageHeight': SIZE[0], 'imageWidth': SIZE[1]}, f)
  config = _config(images, labels)
  assert tuple(config.data.class_names) == ('background', 'road', 'tree')
  masks, text = _drawn(config)
  drawn = masks['a']
  # PIL, as labelme's shape_to_mask: vertices on pixel centres, the outline filled too.
  assert drawn[3:9, 2:11].min() == 1 and drawn[2, 2] == 0 and drawn[3, 11] == 0
  assert (drawn[22:24, 32:34] == 0).all() and (drawn == 2)[15:27, 25:40].sum() == 30 - 4
  assert (drawn[20:26, 30:32] == 2).all() and (drawn[20:22, 30:35] == 2).all()
  assert drawn[30, 20] == 2 and drawn[30, 23] == 2 and drawn[30, 25] == 0
  # A line as wide as labelme's own (10 pixels, 5 above its centre row 38, 4 below).
  assert (drawn[34:40, 10] == 1).all() and drawn[33, 10] == 0
  assert (drawn[2:7, 40:46] == IGNORE).all() and drawn[7, 40] == 0 and drawn[2, 39] == 0
  np.testing.assert_array_equal(drawn[12:15, 14:18], PATCH)
  assert drawn[11, 14:18].max() == 0 and drawn[12:15, 13].max() == 0
  assert 'NOTE train: 1 point annotations, not drawn' in text
  assert 'pictures without any annotation, trained as background: b' in text


def test_the_tools_own_background_and_ignore_labels_are_no_classes(tmp_path):
  # labelme2coco writes `_background_` as category 0; labelme2voc's labels.txt starts
  # `__ignore__`, `_background_`. Neither becomes a class of its own.
  images = _pictures(str(tmp_path), ['p0'])
  path = os.path.join(str(tmp_path), 'instances.json')
  with open(path, 'w') as f:
    json.dump({'images': [{'id': 0, 'file_name': 'p0.png', 'height': SIZE[0],
                           'width': SIZE[1]}],
               'annotations': [{'id': 1, 'image_id': 0, 'category_id': 1, 'iscrowd': 0,
                                'segmentation': [_rectangle(2, 3, 10, 8)]}],
               'categories': [{'id': 0, 'name': '_background_'}, {'id': 1, 'name': 'dog'},
                              {'id': 2, 'name': '__ignore__'}]}, f)
  config = _config(images, path)
  assert tuple(config.data.class_names) == ('background', 'dog')
  masks, _ = _drawn(config)
  assert (masks['p0'] == 1).sum() == 8 * 5


CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>car</name></label><label><name>person</name></label><label><name>road</name></label>
  </labels></task></meta>
  <image id="0" name="frames/f0.png" width="50" height="40">
    <polygon label="road" occluded="0" points="0,20;50,20;50,40;0,40" z_order="0"/>
    <box label="car" occluded="0" xtl="5" ytl="10" xbr="15" ybr="25" z_order="1"/>
    <box label="person" occluded="1" xtl="30" ytl="2" xbr="34" ybr="8" z_order="0"/>
    <mask label="person" occluded="0" rle="{rle}" left="40" top="10" width="4" height="3" z_order="2"/>
    <polyline label="road" occluded="0" points="0,1;49,1" z_order="0"/>
  </image>
</annotations>
"""


def test_cvat_shapes_follow_z_order_and_occluded_shapes_are_ignored(tmp_path):
  images = _pictures(str(tmp_path), ['f0'])
  path = os.path.join(str(tmp_path), 'annotations.xml')
  with open(path, 'w') as f:
    f.write(CVAT.replace('{rle}', '1, 2, 5, 4'))  # 0s then 1s, row by row over 4x3.
  config = _config(images, path, data__annotations__line_width=1)
  assert tuple(config.data.class_names) == ('background', 'car', 'person', 'road')
  masks, text = _drawn(config)
  drawn = masks['f0']
  assert (drawn[10:25, 5:15] == 1).all()  # z_order 1 over the road (0), written before it.
  assert (drawn[25:40, 20:40] == 3).all()
  assert (drawn[2:8, 30:34] == IGNORE).all()  # Occluded.
  box = np.zeros(12, np.uint8)
  box[1:3], box[8:12] = 1, 1
  np.testing.assert_array_equal(drawn[10:13, 40:44] == 2, box.reshape(3, 4).astype(bool))
  assert (drawn[1, 20:29] == 3).all() and drawn[2, 25] == 0  # A 1-pixel polyline.
  assert 'No problems found.' in text


CVAT_PROJECT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><project><labels><label><name>car</name></label><label><name>pond</name></label>
  </labels></project></meta>
  <image height="40" id="0" name="f0.png" subset="Train" task_id="1" width="50">
    <box label="car" occluded="0" xtl="5" ytl="10" xbr="15" ybr="14" rotation="90.0" z_order="0"/>
    <ellipse label="pond" occluded="0" cx="30" cy="20" rx="10" ry="5" z_order="0"/>
    <cuboid label="car" occluded="0" xtl1="1" ytl1="1" xbl1="1" ybl1="3" xtr1="3" ytr1="1"
            xbr1="3" ybr1="3" xtl2="4" ytl2="1" xbl2="4" ybl2="3" xtr2="6" ytr2="1" xbr2="6"
            ybr2="3" z_order="0"/>
    <tag label="car"/>
  </image>
  <image height="40" id="0" name="f0.png" subset="Test" task_id="2" width="50">
    <box label="pond" occluded="0" xtl="0" ytl="0" xbr="50" ybr="40" z_order="0"/>
  </image>
</annotations>
"""


def test_a_cvat_project_export_gives_each_split_its_subset_and_turns_boxes_and_ellipses(
    tmp_path):
  # As CVAT exports a project: image ids and names repeat across its subsets, and the pictures
  # lie in images/<subset>/.
  train = os.path.join(str(tmp_path), 'export', 'images', 'Train')
  os.makedirs(os.path.dirname(train))
  os.rename(_pictures(str(tmp_path), ['f0']), train)
  path = os.path.join(str(tmp_path), 'annotations.xml')
  with open(path, 'w') as f:
    f.write(CVAT_PROJECT)
  config = _config(train, path)
  assert tuple(config.data.class_names) == ('background', 'car', 'pond')
  masks, text = _drawn(config)
  drawn = masks['f0']
  # The 10 x 4 box turned 90 degrees about its centre (10, 12): 4 wide and 10 tall.
  assert (drawn[8:16, 9:12] == 1).all() and drawn[12, 6] == 0 and drawn[12, 14] == 0
  # The ellipse as a polygon of pycocotools: its area, within its rim.
  pond = drawn == 2
  assert abs(pond.sum() - np.pi * 10 * 5) < 6 and pond[20, 21] and not pond[20, 19]
  assert pond[16, 30] and not pond[14, 30] and not pond.any(axis=1)[:14].any()
  assert 'NOTE train: 1 shapes without an area (CVAT cuboids, skeletons), not drawn' in text
  assert 'PROBLEM' not in text


def test_annotation_faults_are_named_with_the_fix_before_anything_is_prepared(tmp_path):
  images = _pictures(str(tmp_path), ['p0', 'p1', 'p2'])
  path = _coco(str(tmp_path), [
      {'id': 1, 'image_id': 0, 'category_id': 99, 'segmentation': [_rectangle(1, 1, 5, 5)]},
      {'id': 2, 'image_id': 0, 'category_id': 3, 'segmentation': [[1, 1, 5, 5]]},
      {'id': 3, 'image_id': 1, 'category_id': 3,
       'segmentation': [[0, 0, 10, 10, 10, 0, 0, 10]]},  # A bow tie.
      {'id': 4, 'image_id': 2, 'category_id': 7, 'segmentation': [_rectangle(40, 30, 60, 45)]},
  ], images=[{'id': 0, 'file_name': 'p0.png', 'height': 40, 'width': 50},
             {'id': 1, 'file_name': 'p1.png', 'height': 40, 'width': 50},
             {'id': 1, 'file_name': 'p9.png', 'height': 40, 'width': 50},
             {'id': 2, 'file_name': 'p2.png', 'height': 40, 'width': 50}])
  _, text = _drawn(_config(images, path))
  assert 'PROBLEM train: 1 annotations whose category is not declared' in text
  assert 'annotation 1 has category_id 99' in text
  assert 'PROBLEM train: 1 image ids used twice in an annotation file' in text
  assert 'NOTE train: 1 polygons of fewer than 3 points, not drawn' in text
  assert 'NOTE train: 1 self-intersecting polygons' in text
  assert 'NOTE train: 1 shapes reaching outside their picture' in text
  _, text = _drawn(_config(images, path, data__class_names=('background', 'cat')))
  assert 'PROBLEM train: 1 annotation labels that are no class in data.class_names' in text
  with open(path, 'w') as f:
    f.write('{"images": [\n  {"id": 1,,}]}')
  with pytest.raises(DataError, match=r'instances.json is not valid JSON \(line 2, column 12'):
    _drawn(_config(images, path, data__class_names=('background', 'cat')))


def test_a_malformed_entry_is_one_line_naming_its_file_entry_and_field(tmp_path):
  """What an annotation file lacks or holds wrongly stops with the file, the entry and the
  field, not a KeyError from inside the reader; a broken RLE or mask PNG when it is drawn."""
  def written(name, content):
    path = os.path.join(str(tmp_path), name)
    with open(path, 'w') as f:
      f.write(content if isinstance(content, str) else json.dumps(content))
    return path
  image = {'id': 0, 'file_name': 'p0.png', 'height': 40, 'width': 50}
  category = [{'id': 1, 'name': 'cat'}]
  cases = [
      (written('a.json', {'images': [{'id': 0, 'height': 4}], 'annotations': [],
                          'categories': category}), r"a.json: image 0 \(id 0\) has no 'file_name'"),
      (written('b.json', {'images': [image], 'categories': category, 'annotations': [
          {'id': 7, 'image_id': 0, 'category_id': 1, 'segmentation': [[1, 'x', 3, 4, 5, 6]]}]}),
       r'b.json: annotation 0 \(id 7\) is malformed \(ValueError'),
      (written('c.json', {'images': [image], 'annotations': [], 'categories': [{'id': 1}]}),
       r"c.json: category 0 \(id 1\) has no 'name'"),
      (written('d.xml', '<annotations><image id="3" name="p0.png" width="50">'
                        '<box label="cat" xtl="1" ytl="1" xbr="4" ybr="4"/></image></annotations>'),
       r'd.xml: <image id="3"> has no \'height\''),
  ]
  for path, message in cases:
    with pytest.raises(DataError, match=message):
      annotations.read_split(path)
  labelme = os.path.join(str(tmp_path), 'labelme')
  os.makedirs(labelme)
  written(os.path.join('labelme', 'p0.json'), {'shapes': [{'label': 'cat', 'points': [[1, 2]]},
                                                          {'label': 'cat'}]})
  with pytest.raises(DataError, match=r"p0.json: shape 1 has no 'points'"):
    annotations.read_split(labelme)
  broken = written('e.json', {'images': [image], 'categories': category, 'annotations': [
      {'id': 8, 'image_id': 0, 'category_id': 1,
       'segmentation': {'size': [40, 50], 'counts': 'not-rle!!'}}]})
  annotated = annotations.read_split(broken).pictures['p0']
  with pytest.raises(DataError, match=r"e.json: a shape of 'cat' \(rle\) is malformed"):
    annotations.draw(annotated, ('background', 'cat'), 40, 50)


def test_a_self_intersecting_polygon_is_told_from_a_concave_one():
  bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)
  concave = np.array([[0, 0], [10, 0], [10, 10], [5, 3], [0, 10]], float)
  assert annotations.self_intersects(bow_tie) and not annotations.self_intersects(concave)


@pytest.mark.slow
def test_a_coco_set_trains_predicts_and_scores_from_its_config_alone(tmp_path, capsys):
  from tests.conftest import main_in_process  # pylint: disable=import-outside-toplevel
  names = [f'p{i}' for i in range(8)]
  images = _pictures(str(tmp_path), names)
  path = _coco(str(tmp_path), [
      {'id': i, 'image_id': i, 'category_id': 3 + 4 * (i % 2),
       'segmentation': [_rectangle(5 + i, 5, 30 + i, 30)], 'iscrowd': 0} for i in range(8)],
      images=[{'id': i, 'file_name': f'{name}.png', 'height': 40, 'width': 50}
              for i, name in enumerate(names)])
  workdir = str(tmp_path / 'run')
  common = ['--config=configs/own_data.py', f'--workdir={workdir}',
            f'--config.data.files.train_images={images}',
            f'--config.data.files.train_masks={path}', '--config.data.class_names=()',
            '--config.data.validation_fraction=0.25', '--config.data.image_size=32',
            '--config.model.name=book_segmentation', '--config.train.steps=4',
            '--config.train.steps_per_epoch=2', '--config.train.steps_per_call=2',
            '--config.train.warmup_steps=0', '--config.train.global_batch_size=2',
            '--config.eval.global_batch_size=2', '--config.summaries.num_images=2',
            '--config.summaries.explain_every_epochs=0']
  status, stderr = main_in_process(capsys, *common)
  assert status == 0, stderr[-2000:]
  status, stderr = main_in_process(capsys, *common, '--mode=predict',
                                   f'--images={images}/p0.png')
  assert status == 0, stderr[-2000:]
  with open(os.path.join(workdir, 'predict', 'legend.csv')) as f:
    assert [line.split(',')[0] for line in f.read().split()[1:]] == ['background', 'cat', 'dog']


def test_mask_encoding_fields_beside_annotations_are_refused(tmp_path):
  from errors import ConfigError  # pylint: disable=import-outside-toplevel
  images = _pictures(str(tmp_path), ['p0'])
  path = _coco(str(tmp_path), [], images=[{'id': 0, 'file_name': 'p0.png'}])
  with pytest.raises(ConfigError, match="data.label_map reads mask pictures; "
                                        "data.files.train_masks names annotations"):
    _config(images, path, data__label_map='0:0,255:1', data__class_names=('a', 'b'))


def test_multilabel_annotations_set_each_shapes_own_class_where_shapes_overlap(tmp_path):
  images = _pictures(str(tmp_path), ['p0', 'p1', 'p2'])
  path = _coco(str(tmp_path), [
      {'id': 1, 'image_id': 0, 'category_id': 3, 'segmentation': [_rectangle(2, 3, 10, 8)],
       'iscrowd': 0},
      {'id': 2, 'image_id': 0, 'category_id': 7, 'segmentation': [_rectangle(6, 3, 20, 8)],
       'iscrowd': 0},
      {'id': 3, 'image_id': 1, 'category_id': 7, 'segmentation': [_rectangle(0, 0, 5, 5)],
       'iscrowd': 1},
  ])
  config = _config(images, path, task='multilabel')
  assert tuple(config.data.class_names) == ('cat', 'dog')  # No background: labels alone.
  masks, text = _drawn(config)
  first = masks['p0']
  assert first.shape == SIZE + (2,)
  assert (first[..., 0] == 1).sum() == 8 * 5 and (first[..., 1] == 1).sum() == 14 * 5
  assert (first[3:8, 6:10] == 1).all()  # Both classes where the shapes overlap: nothing is
  assert (first.sum(-1) == 2).sum() == 4 * 5  # drawn over.
  assert (masks['p1'][..., 1][0:5, 0:5] == IGNORE).all() and (masks['p1'][..., 0] == 0).all()
  assert 'pixels two classes share (multi-label): cat/dog' in text
