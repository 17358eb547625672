"""Which layer should Grad-CAM read? Scores every feature layer of a trained model (prints JSON).

For each layer with a 4-D output but the input's rescaling (or those named in --layers),
Grad-CAM of every class on the first --num_images eval pictures, scored against their trimaps
at each picture's own resolution (interpretability/pointing.py): per class the energy lift
(1.0: no better than a uniform map) and the share of pictures whose heatmap is not blank. The
layer that gradcam.default_layer picks is marked.

    python -m benchmarks.gradcam_layers --config=configs/seg_xception.py \\
        --config.data.source=folder --config.data.folder=DIR --workdir=RUN [--num_images=24]
"""

import json
import time

from absl import app
from absl import flags
import keras
from ml_collections import config_flags

from inference import loading
from interpretability import explanation as explain_lib
from interpretability import gradcam
from interpretability import pointing
import specs

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'The trained run\'s config.')
flags.DEFINE_string('workdir', None, 'A trained workdir.')
flags.DEFINE_integer('num_images', 24, 'Eval pictures to score on.')
flags.DEFINE_list('layers', [], 'Layers to score (default: every layer with a 4-D output).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  config = FLAGS.config
  run = specs.describe(config)
  task = run.task
  model, _ = loading.load_model(run.network, FLAGS.workdir)
  pictures = loading.named_pictures(run.data, FLAGS.workdir, None, FLAGS.num_images)
  inputs = loading.model_input([p.pixels for p in pictures], config.data.image_size)
  default = gradcam.default_layer(model, task)
  shortcuts = gradcam.shortcut_projections(model)
  layers = FLAGS.layers or [l.name for l in model.layers[1:] if len(l.output.shape) == 4
                            and not isinstance(l, keras.layers.Rescaling)]
  for layer in layers:
    start = time.perf_counter()
    maps = explain_lib.class_maps(model, inputs, layer, tuple(config.data.class_names),
                              task, config.summaries.explain.top_classes,
                              config.eval.global_batch_size)
    explanation = explain_lib.Explanation({}, {}, layer, maps, {})
    scores = explain_lib.score(explanation, [explain_lib.mask_regions(p.mask, explanation,
                                                                task) for p in pictures])
    summary = pointing.summarize(scores)
    print(json.dumps({
        'layer': layer, 'side': model.get_layer(layer).output.shape[1],
        'default': layer == default, 'shortcut_projection': layer in shortcuts,
        'energy_lift': {k: round(v['energy_lift'], 3) for k, v in summary.items()},
        'non_blank': {k: round(v['non_blank'], 3) for k, v in summary.items()},
        'seconds': round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == '__main__':
  app.run(main)
