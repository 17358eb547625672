"""--mode=explain: every picture of book section 9.4 for a workdir's model (or a pretrained one)
and the pictures a user names, as PNG files at the pictures' own size, gradcam.json with each
heatmap's pointing scores, and a TensorBoard run."""

import json
import os

from absl import logging

from data import rasters
from inference import loading
from interpretability import explanation as explain_lib
from interpretability import gradcam
from interpretability import pointing
from modeling import xception_imagenet
from records import atomic
from records import summaries as summaries_lib
from records import workdir as workdir_lib
import specs


def explained_class_names(class_names: tuple, class_index: str) -> list[str]:
  """data.class_names, or the ImageNet names when summaries.explain.class_index=imagenet and
  Keras can get them."""
  names = list(class_names)
  if class_index == 'imagenet':
    names = xception_imagenet.imagenet_class_names() or names
  return names


def run(config, workdir: str, images: str | None) -> dict:
  """Activation grids, filter grids and Grad-CAM overlays as PNGs in DIR/explain/, named after
  the pictures and at their own size; gradcam.json with each heatmap's pointing scores where a
  mask is known; the same pictures in TensorBoard (run folder explain/)."""
  run = specs.describe(config)
  model, source = loading.load_model(run.network, workdir)
  pictures = loading.named_pictures(run.data, workdir, images,
                                    max(run.summaries.num_images, 1))
  task = run.task
  inputs = loading.model_input([p.pixels for p in pictures], run.network.input_size, model)
  explanation = explain_lib.explain(model, inputs, run.summaries.explain,
                                    run.data.class_names, task,
                                    activation_pictures=len(pictures),
                                    batch_size=run.eval.global_batch_size,
                                    rgb_bands=run.data.rgb_bands)
  out_dir = os.path.join(workdir, 'explain')
  workdir_lib.ensure_writable_dir(out_dir, '--workdir')
  for layer, grids in explanation.activation_grids.items():
    for picture, grid in zip(pictures, grids):
      loading.write_png(os.path.join(out_dir, f'activations_{layer}_{picture.name}.png'), grid)
  for layer, grid in explanation.filter_grids.items():
    loading.write_png(os.path.join(out_dir, f'filters_{layer}.png'), grid)
  viewable = lambda pixels: rasters.viewable(pixels, run.data.bands, run.data.rgb_bands,
                                             run.data.nodata)
  for maps in explanation.class_maps:
    for picture, heatmap in zip(pictures, maps.heatmaps.maps):
      loading.write_png(os.path.join(out_dir, f'gradcam_{maps.label}_{picture.name}.png'),
                        gradcam.overlay(viewable(picture.pixels), heatmap))
  scores = explain_lib.score(explanation, [
      None if p.mask is None else explain_lib.mask_regions(p.mask, explanation, task)
      for p in pictures])
  report = gradcam_report(explanation, pictures, scores, explained_class_names(
      run.data.class_names, run.summaries.explain.class_index), source)
  atomic.write_text(os.path.join(out_dir, 'gradcam.json'), json.dumps(report, indent=1) + '\n')
  writer = summaries_lib.Summaries(workdir, enabled=True, runs=('explain',))
  summaries_lib.write_explanation(writer, 'explain', 0, viewable(inputs), explanation,
                                  report['summary'])
  writer.flush()
  logging.info('Explained %s on %d pictures into %s (%s); Grad-CAM layer %s; %s.', source,
               len(pictures), out_dir,
               ', '.join(f'{k} {v:.1f}s' for k, v in explanation.seconds.items()),
               explanation.gradcam_layer, ', '.join(
                   f'{label} energy lift {v["energy_lift"]:.2f} (non-blank {v["non_blank"]:.0%})'
                   for label, v in report['summary'].items()) or 'no masks to score against')
  return report


def gradcam_report(explanation, pictures: list, scores: list, class_names: list[str],
                   source: str) -> dict:
  """gradcam.json: the layer, per picture and explained label the heatmap's peak (`max`) and,
  with a mask, `energy_in_region` and `region_share`; a summary over scored pictures."""
  rows = []
  for i, picture in enumerate(pictures):
    classes = {}
    for maps in explanation.class_maps:
      entry = {'class': class_names[maps.classes[i]]} if maps.label.startswith('top') else {}
      entry.update(scores[i][maps.label] if scores[i] else
                   {'max': float(maps.heatmaps.peaks[i])})
      classes[maps.label] = {k: float(f'{v:.6g}') if isinstance(v, float) else v
                             for k, v in entry.items()}
    rows.append({'name': picture.name, 'classes': classes})
  scored = [s for s in scores if s]
  summary = {label: {k: round(v, 4) for k, v in values.items()}
             for label, values in pointing.summarize(scored).items()}
  return {'model': source, 'layer': explanation.gradcam_layer, 'num_scored': len(scored),
          'summary': summary, 'pictures': rows}
