"""Entry point: `python main.py --config=configs/seg.py --workdir=DIR [--mode=...]`."""

import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tensorflow as tf

from data import check_data
from errors import ConfigError, Preempted, UserError
from inference import explain
from inference import export
from inference import predict
from inference import score
import specs
from training import continuous_eval
from training import loop
from training import runtime
from training import settle

FLAGS = flags.FLAGS
# --mode: what to do with the workdir (FLAGS carries --images and --output).
MODES = {
    'train_and_eval': lambda config, workdir: loop.train(config, workdir, evaluate=True),
    'train': lambda config, workdir: loop.train(config, workdir, evaluate=False),
    'eval': loop.evaluate,
    'continuous_eval': continuous_eval.run,
    'explain': lambda config, workdir: explain.run(config, workdir, FLAGS.images),
    'predict': lambda config, workdir: predict.run(config, workdir, FLAGS.images, FLAGS.output),
    'score': score.run,
    'export': lambda config, workdir: export.run(config, workdir, FLAGS.output),
    'check_data': lambda config, workdir: sys.exit(check_data.run(specs.describe(config).data,
                                                                  workdir)),
}
config_flags.DEFINE_config_file('config', None, 'Experiment config file; override any field '
                                'with --config.<field>=<value>.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and the best model.')
flags.DEFINE_enum('mode', 'train_and_eval', list(MODES), 'What to do with the workdir.')
flags.DEFINE_string('images', None, 'explain/predict: pictures as comma-separated files, '
                    'folders or globs (explain default: the fixed validation pictures).')
flags.DEFINE_string('output', None, 'predict/export: output folder (default: WORKDIR/predict, '
                    'WORKDIR/export).')
flags.mark_flags_as_required(['config', 'workdir'])


def _config_file(argv: list[str]) -> str | None:
  """The path of --config=PATH[:ARGS] or --config PATH on the command line."""
  for i, arg in enumerate(argv):
    value = arg[len('--config='):] if arg.startswith('--config=') else (
        argv[i + 1] if arg == '--config' and i + 1 < len(argv) else None)
    if value is not None:
      return value if os.path.isfile(value) else value.split(':')[0]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with config errors (a config file that does not load, an unknown
  field, a bad value) as one clear line."""
  config_file = _config_file(argv)
  try:
    if config_file:
      settle.check_config_file(config_file)
  except ConfigError as e:
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(2)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (KeyError, AttributeError) as e:  # ml_collections' answer to an unknown field.
    text = str(e)
    field = re.search(r"'([A-Za-z0-9_]+)", text)
    hint = re.search(r'Did you mean .*?\?', text)
    message = (f'unknown config field {field.group(1) if field else text!r} in the --config '
               f'overrides. {hint.group(0) if hint else ""}')
  print(f'Error: {message}\nSee configs/base.py (or BUILD.md) for every config field.',
        file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  tf.get_logger().setLevel('WARNING')  # TF's per-trace INFO lines drown the training log.
  try:
    settle.settle_config(FLAGS.config)
    MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)
  except UserError as e:
    logging.error('%s', e)
    print(f'\n{"Stopped" if isinstance(e, Preempted) else "Error"}: {e}', file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  runtime.collect_garbage_less_often()
  app.run(main, flags_parser=parse_flags)
