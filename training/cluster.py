"""Which cluster this process is a task of, from TF_CONFIG or from Slurm's environment: pure
functions on the environment, so the parts a GPU cluster needs are tested without one.

Under srun this replaces TensorFlow's SlurmClusterResolver, which needs nvidia-smi on every
node, lists nodes in text order (node10 before node9, so ranks and addresses disagree), uses
one fixed port, and narrows CUDA_VISIBLE_DEVICES after TensorFlow has seen every GPU.
"""

import json
import os
import re
import socket
import subprocess

from errors import ConfigError

PORT_ENV = 'SEGSTREAM_PORT_BASE'  # Overrides the per-job port choice.
PORT_RANGE = (20000, 60000)  # Where per-job ports are chosen.
MAX_TASKS_PER_NODE = 16  # Ports a job reserves on each node: base .. base + 15.


def expand_tasks_per_node(spec: str) -> list[int]:
  """Slurm's SLURM_STEP_TASKS_PER_NODE ('2(x3),1') as one count per node ([2, 2, 2, 1])."""
  counts = []
  for part in spec.split(','):
    match = re.fullmatch(r'(\d+)(?:\(x(\d+)\))?', part.strip())
    if not match:
      raise ConfigError(f'SLURM_STEP_TASKS_PER_NODE={spec!r} is not in Slurm\'s format.')
    counts += [int(match.group(1))] * int(match.group(2) or 1)
  return counts


def task_nodes(nodes: list[str], tasks_per_node: list[int], distribution: str = 'block'
               ) -> list[str]:
  """The node of every rank, in rank order, as Slurm places them: `block` fills each node in
  the node list's own order (never re-sorted), `cyclic` deals ranks round the nodes."""
  if len(nodes) != len(tasks_per_node):
    raise ConfigError(f'Slurm lists {len(nodes)} nodes but task counts for '
                      f'{len(tasks_per_node)}.')
  if not distribution.startswith('cyclic'):
    return [node for node, count in zip(nodes, tasks_per_node) for _ in range(count)]
  placed, left = [], list(tasks_per_node)
  while any(left):
    for i, node in enumerate(nodes):
      if left[i]:
        placed.append(node)
        left[i] -= 1
  return placed


def job_port(job_id: int) -> int:
  """The first port of a job's block: spread by job id over PORT_RANGE, so two jobs sharing a
  node rarely meet and a rerun of the same job id finds the same one."""
  blocks = (PORT_RANGE[1] - PORT_RANGE[0]) // MAX_TASKS_PER_NODE
  return PORT_RANGE[0] + (job_id % blocks) * MAX_TASKS_PER_NODE


def slurm_cluster(env: dict, nodes: list[str]) -> dict:
  """TF_CONFIG (as a dict) of this srun task: every rank a worker at `node:port`, rank 0 the
  chief, each task on a node with its own port (the base plus its local index)."""
  rank, ntasks = int(env['SLURM_PROCID']), int(env['SLURM_NTASKS'])
  per_node = expand_tasks_per_node(env['SLURM_STEP_TASKS_PER_NODE'])
  placed = task_nodes(nodes, per_node, env.get('SLURM_DISTRIBUTION', 'block'))
  if len(placed) != ntasks:
    raise ConfigError(f'Slurm placed {len(placed)} tasks but SLURM_NTASKS={ntasks}.')
  if max(per_node) > MAX_TASKS_PER_NODE:
    raise ConfigError(f'{max(per_node)} tasks on one node: at most {MAX_TASKS_PER_NODE}.')
  base = int(env[PORT_ENV]) if env.get(PORT_ENV) else job_port(int(env['SLURM_JOB_ID']))
  seen, workers = {}, []
  for node in placed:
    workers.append(f'{node}:{base + seen.get(node, 0)}')
    seen[node] = seen.get(node, 0) + 1
  return {'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': rank}}


def gpus_of_task(env: dict) -> str | None:
  """CUDA_VISIBLE_DEVICES for this task: the node's GPUs (as Slurm lists them) split evenly
  among the tasks on the node by SLURM_LOCALID; None to leave it as it is (no GPUs, one task
  per node, or Slurm already bound GPUs per task with --gpus-per-task)."""
  if env.get('SLURM_GPUS_PER_TASK'):
    return None
  visible = env.get('CUDA_VISIBLE_DEVICES') or env.get('SLURM_STEP_GPUS') or env.get(
      'SLURM_JOB_GPUS') or ''
  gpus = [g for g in visible.split(',') if g.strip()]
  local_tasks = _tasks_on_this_node(env) or 1
  if not gpus or local_tasks == 1:
    return None
  if len(gpus) % local_tasks:
    raise ConfigError(f'{len(gpus)} GPUs ({",".join(gpus)}) do not split evenly among '
                      f'{local_tasks} tasks on this node: ask for a multiple of the tasks per '
                      'node, or use --gpus-per-task.')
  share = len(gpus) // local_tasks
  local = int(env.get('SLURM_LOCALID', '0'))
  return ','.join(gpus[local * share:(local + 1) * share])


def _tasks_on_this_node(env: dict) -> int | None:
  """SLURM_STEP_TASKS_PER_NODE's count for this node (SLURM_NODEID), if Slurm set both."""
  if not env.get('SLURM_STEP_TASKS_PER_NODE') or env.get('SLURM_NODEID') is None:
    return None
  return expand_tasks_per_node(env['SLURM_STEP_TASKS_PER_NODE'])[int(env['SLURM_NODEID'])]


def hostnames(nodelist: str) -> list[str]:
  """Slurm's compressed node list (node[9-10]) as names in Slurm's own order."""
  try:
    out = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], check=True,
                         capture_output=True, text=True, timeout=60).stdout
  except (OSError, subprocess.SubprocessError) as e:
    raise ConfigError(f'Cannot expand the Slurm node list {nodelist!r} with `scontrol show '
                      f'hostnames` ({e}): run under srun on a node with the Slurm client.'
                      ) from None
  return out.split()


def check_port_free(address: str) -> None:
  """A clear, fast failure when this task's port is taken, instead of a gRPC server that
  cannot start and peers that wait for it until the time limit."""
  port = int(address.rsplit(':', 1)[1])
  with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(('', port))
    except OSError as e:
      raise ConfigError(
          f'Port {port} on {socket.gethostname()} is taken ({e.strerror}): another job or '
          f'program holds it. Set {PORT_ENV} to the first of {MAX_TASKS_PER_NODE} free ports '
          '(each task takes the base plus its index on the node), or resubmit.') from None


def from_slurm(env: dict | None = None) -> bool:
  """Whether this process is an srun task with no TF_CONFIG of its own."""
  env = os.environ if env is None else env
  return not env.get('TF_CONFIG') and env.get('SLURM_PROCID') is not None and bool(
      env.get('SLURM_STEP_NODELIST'))


def export_slurm_task() -> None:
  """Sets TF_CONFIG (and this task's CUDA_VISIBLE_DEVICES) from Slurm's environment before
  TensorFlow looks at any device, and checks that the task's port is free."""
  env = dict(os.environ)
  tf_config = slurm_cluster(env, hostnames(env['SLURM_STEP_NODELIST']))
  gpus = gpus_of_task(env)
  if gpus is not None:
    os.environ['CUDA_VISIBLE_DEVICES'] = gpus
  check_port_free(tf_config['cluster']['worker'][tf_config['task']['index']])
  os.environ['TF_CONFIG'] = json.dumps(tf_config)
