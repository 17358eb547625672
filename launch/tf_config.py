"""Prints the TF_CONFIG of task i of a multi-worker job, for launch scripts.

    export TF_CONFIG=$(python -m launch.tf_config --hosts=node1:2222,node2:2222 --task=$i)
"""

import json

from absl import app
from absl import flags


def tf_config(hosts: list[str], task: int) -> str:
  """TF_CONFIG for worker `task` of `hosts` (worker 0 acts as chief)."""
  if not 0 <= task < len(hosts):
    raise ValueError(f'--task={task} is not an index of the {len(hosts)} hosts.')
  return json.dumps({'cluster': {'worker': list(hosts)},
                     'task': {'type': 'worker', 'index': task}})


def main(argv):
  del argv
  print(tf_config(flags.FLAGS.hosts, flags.FLAGS.task))


if __name__ == '__main__':
  flags.DEFINE_list('hosts', None, 'host:port of every worker, the chief (task 0) first.')
  flags.DEFINE_integer('task', None, "This worker's index in --hosts.")
  flags.mark_flags_as_required(['hosts', 'task'])
  app.run(main)
