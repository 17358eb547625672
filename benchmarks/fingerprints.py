"""Weight fingerprints of three fixed deterministic runs, to show a refactor changed no number.

python -m benchmarks.fingerprints prints one line per run and process: the run, the process,
and the sum/sum-of-squares fingerprint of every final weight (training/loop.py logs it). Run it
before and after a change: the lines must be identical.
"""

import os
import re
import subprocess
import sys
import tempfile

from absl import app

TINY = ['--config.data.source=synthetic', '--config.data.image_size=32',
        '--config.train.global_batch_size=8', '--config.eval.global_batch_size=8',
        '--config.data.synthetic.num_trainval=48', '--config.data.synthetic.num_test=12',
        '--config.data.synthetic.photo_size=48', '--config.train.steps_per_epoch=4',
        '--config.train.epochs=2', '--config.data.deterministic=True',
        '--config.train.optimizer=sgd', '--config.train.learning_rate=0.05']
BOOK = ['--config=configs/seg.py', *TINY, '--config.summaries.explain_every_epochs=0']
SCALE = ['--config=configs/seg_xception.py', *TINY, '--config.train.weight_decay=0.0',
         '--config.train.gradient_accumulation_steps=2', '--config.train.global_clipnorm=1.0',
         '--config.train.ema_decay=0.9', '--config.summaries.explain_every_epochs=1',
         '--config.summaries.explain.num_filters=4',
         '--config.summaries.explain.num_filter_layers=1']
RUNS = {
    'book, 1 process x 2 devices': ['main.py', *BOOK, '--config.runtime.cpu_devices=2'],
    'book, 2 local workers': ['-m', 'launch.launch_local', '--workers=2', '--', *BOOK],
    'seg_xception EMA+clipping+accumulation+explain, 1 process x 2 devices':
        ['main.py', *SCALE, '--config.runtime.cpu_devices=2'],
}
FINGERPRINT = re.compile(r'Final weights on (\S+ \d+|local): fingerprint (\S+)')


def fingerprints(args: list[str]) -> list[tuple[str, str]]:
  """Runs one command in a fresh workdir; (process, fingerprint) for each process it ran."""
  with tempfile.TemporaryDirectory() as workdir:
    out = subprocess.run([sys.executable, *args, f'--workdir={workdir}/run'],
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  found = sorted(FINGERPRINT.findall(out.stdout + out.stderr))
  if out.returncode or not found:
    raise RuntimeError(f'{args} exited {out.returncode}:\n{(out.stdout + out.stderr)[-3000:]}')
  return found


def main(argv):
  del argv
  for name, args in RUNS.items():
    for process, fingerprint in fingerprints(args):
      print(f'{name} | {process} | {fingerprint}', flush=True)


if __name__ == '__main__':
  app.run(main)
