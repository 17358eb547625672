"""Test process set-up: 2 logical CPU devices (tests of distribution take both as 2 replicas,
the rest run on one) and shared fixtures. Nothing here imports TensorFlow at module level:
pytest-xdist's controller loads this file too and runs no test (importing it there cost 3.5 s
before the workers started)."""

import contextlib
import ctypes.util
import json
import os
import subprocess
import sys

# The workers and the processes tests start inherit these (the loader and the allocator read
# them when a process starts). tcmalloc, where the machine has it (.ci/run installs Debian's
# libtcmalloc-minimal4), as TensorFlow users on CPUs preload it: graph building allocates and
# frees millions of small blocks, and test_steps.py with test_training.py took 11 % less CPU
# and two fifths less system time on it (docs/results.md); large allocations are not reported on
# stderr, which tests read. Without it, glibc's malloc: per-thread arenas otherwise keep
# TensorFlow's freed memory (three workers beside a 7 GB ONNX conversion once ran the machine
# out of memory), tensors up to 256 MB come from the heap, and up to 512 MB of freed heap stays
# mapped (mapping and unmapping each one again was a fifth of the suite's system time).
_ALLOCATOR = {'MALLOC_ARENA_MAX': '2', 'MALLOC_MMAP_THRESHOLD_': str(256 << 20),
              'MALLOC_TRIM_THRESHOLD_': str(512 << 20), 'MALLOC_TOP_PAD_': str(64 << 20)}
if 'LD_PRELOAD' not in os.environ and (_tcmalloc := ctypes.util.find_library('tcmalloc_minimal')):
  _ALLOCATOR.update(LD_PRELOAD=_tcmalloc, TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=str(1 << 40))
for _name, _value in _ALLOCATOR.items():
  os.environ.setdefault(_name, _value)

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """In every process that runs tests (not the xdist controller): 2 logical CPU devices, the
  garbage collector as main.py sets it, quiet logs, and no Grappler rewrites: they pay on long
  runs, but a test's graphs run a few steps and rewriting them costs more than it saves
  (measured: docs/results.md). Processes a test starts keep them."""
  if config.getoption('numprocesses', None) and 'PYTEST_XDIST_WORKER' not in os.environ:
    return
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from training import runtime  # pylint: disable=import-outside-toplevel
  runtime.configure_cpu_devices(2)
  runtime.collect_garbage_less_often()  # As main.py does.
  tf.get_logger().setLevel('ERROR')
  tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})


@contextlib.contextmanager
def graph_rewrites():
  """Grappler's rewrites on, as in a process a test starts: for a run in this process whose
  weights are compared with such a process's (fused ops round differently, and 60 steps of
  SGD carry the difference into the weights)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': False})
  try:
    yield
  finally:
    tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})


def model_config(name: str, **fields):
  """configs/base.py's model section for model `name`, with `fields` changed."""
  from configs import base  # pylint: disable=import-outside-toplevel
  config = base.get_base_config().model
  config.name = name
  config.update(fields)
  return config


def data_spec(config):
  """The config's data section as the data layer takes it (what the modes hand it)."""
  import specs  # pylint: disable=import-outside-toplevel
  return specs.describe(config).data


def small_config(workdir_data: str | None = None, settle: bool = True, **overrides):
  """The book config shrunk to seconds: synthetic data, 32 px, batch 8, one replica
  (`runtime__cpu_devices=2`: two, for tests of distribution), explain's filter patterns of
  two filters in one layer (the book's 64 in two layers took half of a short run's CPU);
  settled as main.py settles it (`settle=False`: as written, for tests of the checks)."""
  from configs import seg  # pylint: disable=import-outside-toplevel
  from training import settle as settled  # pylint: disable=import-outside-toplevel
  config = seg.get_config()
  config.data.source = 'synthetic'
  config.data.image_size = 32
  config.data.synthetic.num_trainval = 48
  config.data.synthetic.num_test = 13
  config.data.synthetic.photo_size = 64
  if workdir_data:
    config.data.synthetic.dir = workdir_data
  config.train.global_batch_size = 8
  config.eval.global_batch_size = 8
  config.train.epochs = 1
  config.runtime.cpu_devices = 1
  config.summaries.num_images = 2
  config.summaries.explain.num_filters = 2
  config.summaries.explain.num_filter_layers = 1
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split('__')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return settled.settle_config(config) if settle else config


@pytest.fixture(scope='session')
def synthetic_folder(tmp_path_factory):
  """One small synthetic dataset in the official layout, shared by the whole session."""
  from data import synthetic  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path_factory.mktemp('data') / 'synthetic_pets')
  return synthetic.write_synthetic_pets(folder, num_trainval=48, num_test=13, photo_size=64)


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, synthetic_folder):
  """A 20-epoch synthetic run with explain summaries: (workdir, results, config)."""
  from training import loop  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp('run'))
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        train__optimizer='adam', train__epochs=20, train__steps_per_call=3,
                        data__deterministic=True, summaries__explain_every_epochs=20,
                        summaries__explain__num_filters=16)
  return workdir, loop.train(config, workdir), config


@pytest.fixture(scope='session')
def trained_exports(trained_run, tmp_path_factory):
  """trained_run exported once to every format and quantization, for the tests that read the
  files: {(format, quantize): (folder, its export.json)}. This 32-px model's outline is 1-2 px
  wide, where int8 loses first, and how much depends on the trained weights: over 8 runs of
  this config (4 seeds, Keras' Adam and the fused one) int8 kept 0.65-0.89 of the outline in
  ONNX, 0.79-0.93 in LiteRT, and 0.864-0.97 averaged over classes (docs/results.md), so int8's
  gate is 0.85 (the gate itself: test_export's planted disagreement)."""
  from inference import export  # pylint: disable=import-outside-toplevel
  workdir, _, config = trained_run
  return {(fmt, quantize): export_to(config, workdir, tmp_path_factory.mktemp(f'{fmt}-{quantize}'),
                                     fmt, quantize,
                                     min_agreement=0.85 if quantize == 'int8' else 0.0)
          for fmt, qs in export.FORMATS.items() for quantize in qs}


def export_to(config, workdir: str, output, fmt: str, quantize: str = 'none', **fields):
  """--mode=export of `workdir` to `output` in `fmt` and `quantize` (other export fields in
  `fields`): (the folder, its export.json)."""
  from inference import artifacts  # pylint: disable=import-outside-toplevel
  from inference import export  # pylint: disable=import-outside-toplevel
  config = config.copy_and_resolve_references()
  config.export.format, config.export.quantize = fmt, quantize
  config.export.update(fields)
  folder = export.run(config, workdir, str(output))
  with open(os.path.join(folder, artifacts.RECORD)) as f:
    return folder, json.load(f)


@pytest.fixture(scope='session')
def trained_unet(tmp_path_factory, synthetic_folder):
  """The Xception U-Net trained briefly on synthetic shapes, on all 48 trainval pictures and
  evaluated on the 13 test ones: (workdir, config)."""
  workdir = str(tmp_path_factory.mktemp('unet'))
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__validation_fraction=0.0,
                        data__image_size=64, model__name='xception_unet',
                        model__widths=(16, 32, 64, 128), train__optimizer='adam',
                        train__learning_rate=3e-3, train__epochs=12, train__steps_per_call=3,
                        data__deterministic=True, summaries__explain_every_epochs=12,
                        summaries__explain__num_filters=4,
                        summaries__explain__num_filter_layers=1, runtime__cpu_devices=2)
  from training import loop  # pylint: disable=import-outside-toplevel
  results = loop.train(config, workdir)
  assert results['eval']['iou/pet'] > 0.6, results['eval']  # It has learned the shapes.
  return workdir, config


def run_main(*args, timeout=300):
  """Runs main.py in a subprocess, as a user would; returns the CompletedProcess."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, os.path.join(REPO, 'main.py'), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout, env=env)


def main_in_process(capsys, *args) -> tuple[int, str]:
  """main.py's flag parsing and `main` in this process: (exit status, what it printed to
  stderr; its log lines are in caplog, what it printed to stdout is left for
  `capsys.readouterr().out`). Seconds cheaper than `run_main`, which starts TensorFlow again;
  the flags are as before the call after it. It runs on one replica, as a fresh process does,
  unless the args set runtime.cpu_devices."""
  import main  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not any(arg.startswith('--config.runtime.cpu_devices') for arg in args):
    args = (*args, '--config.runtime.cpu_devices=1')  # One replica, as in a fresh process.
  level, argv, defined = tf.get_logger().level, sys.argv, set(main.FLAGS)
  sys.argv = ['main.py', *args]  # config_flags finds the --config.<field> overrides there.
  try:
    main.main(main.parse_flags(sys.argv))
    status = 0
  except SystemExit as e:
    status = e.code
  finally:
    main.FLAGS.unparse_flags()
    for name in set(main.FLAGS) - defined:  # The overrides config_flags defined: the next
      delattr(main.FLAGS, name)  # parse defines them again.
    tf.get_logger().setLevel(level)
    sys.argv = argv
  printed = capsys.readouterr()
  sys.stdout.write(printed.out)
  return status, printed.err


# Module or session fixtures too cheap to be worth keeping their tests on one worker.
_CHEAP_SHARED = {'synthetic_folder', 'tmp_path_factory'}
# Tests that wait for processes they start (Slurm's requeue, workers joining a cluster, a
# killed run): handed out first, so the other workers' tests fill their waits.
_WAITING_FILES = ('test_slurm.py', 'test_multiworker.py', 'test_reliability.py',
                  'test_continuous_eval.py')


@pytest.hookimpl(tryfirst=True)  # Before xdist's own hook reads the marks into node ids.
def pytest_collection_modifyitems(items):
  """Under pytest-xdist (pytest.ini: -n 2 --dist loadgroup) every test that shares a costly
  module or session fixture (a trained run, a local Slurm, a two-worker launch) runs on the
  worker that built it: a fixture is built once per worker process. The tests that wait for
  launched processes come first, then the slow ones, so the quick ones fill the workers' ends
  (a 70 s test handed out last kept one worker busy 55 s after the others had finished)."""
  items.sort(key=lambda item: (item.path.name not in _WAITING_FILES,  # Stable: else as found.
                               item.get_closest_marker('slow') is None))
  for item in items:
    definitions = item._fixtureinfo.name2fixturedefs  # pylint: disable=protected-access
    shared = [name for name in item.fixturenames
              if name in definitions and name not in _CHEAP_SHARED
              and definitions[name][-1].scope in ('module', 'session')]
    # The group is the fixture the others are built from (trained_exports: trained_run).
    roots = [name for name in shared
             if not set(definitions[name][-1].argnames) & set(shared)]
    if roots:  # A parametrized fixture is one per parameter: each its own group (no ']':
      # xdist reads the group after the last '@' only when no ']' follows it).
      params = getattr(item, 'callspec', None) and item.callspec.params
      param = f'-{params[roots[0]]}' if params and roots[0] in params else ''
      item.add_marker(pytest.mark.xdist_group(roots[0] + param))
