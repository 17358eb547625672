"""The parts of a Slurm job this machine cannot run for real (many nodes, GPUs), as pure
functions on Slurm's environment: ranks and addresses, per-task GPUs, ports."""

import socket
import subprocess
import sys

import pytest

from errors import ConfigError
from tests.conftest import REPO
from training import cluster


def _env(rank: int, **extra) -> dict:
  return {'SLURM_PROCID': str(rank), 'SLURM_NTASKS': '2', 'SLURM_JOB_ID': '4242',
          'SLURM_STEP_TASKS_PER_NODE': '1(x2)', 'SLURM_STEP_NODELIST': 'node[9-10]', **extra}


def test_ranks_follow_slurms_node_order_not_text_order():
  """scontrol lists node9 before node10; text order would put node10 first."""
  nodes = ['node9', 'node10']
  port = cluster.job_port(4242)
  for rank in (0, 1):
    spec = cluster.slurm_cluster(_env(rank), nodes)
    assert spec['cluster']['worker'] == [f'node9:{port}', f'node10:{port}']
    assert spec['task'] == {'type': 'worker', 'index': rank}  # Rank 0 (node9) is the chief.


def test_several_tasks_per_node_get_their_own_ports_and_placement():
  env = _env(3, SLURM_NTASKS='5', SLURM_STEP_TASKS_PER_NODE='2(x2),1',
             SLURM_STEP_NODELIST='gpu[1-3]', SEGSTREAM_PORT_BASE='31000')
  nodes = ['gpu1', 'gpu2', 'gpu3']
  assert cluster.slurm_cluster(env, nodes)['cluster']['worker'] == [
      'gpu1:31000', 'gpu1:31001', 'gpu2:31000', 'gpu2:31001', 'gpu3:31000']
  env['SLURM_DISTRIBUTION'] = 'cyclic'
  assert cluster.slurm_cluster(env, nodes)['cluster']['worker'] == [
      'gpu1:31000', 'gpu2:31000', 'gpu3:31000', 'gpu1:31001', 'gpu2:31001']


def test_each_of_two_tasks_on_a_four_gpu_node_gets_two_gpus():
  base = {'CUDA_VISIBLE_DEVICES': '0,1,2,3', 'SLURM_STEP_TASKS_PER_NODE': '2(x2)',
          'SLURM_NODEID': '1'}
  assert cluster.gpus_of_task({**base, 'SLURM_LOCALID': '0'}) == '0,1'
  assert cluster.gpus_of_task({**base, 'SLURM_LOCALID': '1'}) == '2,3'
  assert cluster.gpus_of_task({**base, 'CUDA_VISIBLE_DEVICES': '4,5,6,7',
                               'SLURM_LOCALID': '1'}) == '6,7'  # Slurm's numbering is kept.
  # Left alone: Slurm bound them already, one task per node, or no GPUs (a CPU node).
  assert cluster.gpus_of_task({**base, 'SLURM_LOCALID': '1', 'SLURM_GPUS_PER_TASK': '2'}) is None
  assert cluster.gpus_of_task({**base, 'SLURM_STEP_TASKS_PER_NODE': '1(x2)'}) is None
  assert cluster.gpus_of_task({'SLURM_STEP_TASKS_PER_NODE': '2', 'SLURM_NODEID': '0',
                               'SLURM_LOCALID': '1'}) is None
  with pytest.raises(ConfigError, match='3 GPUs .* do not split evenly among 2 tasks'):
    cluster.gpus_of_task({**base, 'CUDA_VISIBLE_DEVICES': '0,1,2'})


def test_ports_are_chosen_per_job_inside_the_range_and_a_taken_one_is_clear():
  ports = {cluster.job_port(job) for job in range(1000, 1100)}
  assert len(ports) == 100  # Neighbouring jobs never share a block.
  assert all(cluster.PORT_RANGE[0] <= p and p + cluster.MAX_TASKS_PER_NODE <= cluster.PORT_RANGE[1]
             for p in ports)
  assert cluster.job_port(77) == cluster.job_port(77)  # A requeued job finds its own again.
  with socket.socket() as held:
    held.bind(('', 0))
    held.listen()
    port = held.getsockname()[1]
    with pytest.raises(ConfigError, match=rf'Port {port} on .* is taken .* '
                                          'Set SEGSTREAM_PORT_BASE'):
      cluster.check_port_free(f'localhost:{port}')
  cluster.check_port_free(f'localhost:{port}')  # Free again.


def test_slurm_formats_and_mismatches_are_clear():
  assert cluster.expand_tasks_per_node('2(x3),1') == [2, 2, 2, 1]
  with pytest.raises(ConfigError, match="SLURM_STEP_TASKS_PER_NODE='two'"):
    cluster.expand_tasks_per_node('two')
  with pytest.raises(ConfigError, match='placed 2 tasks but SLURM_NTASKS=3'):
    cluster.slurm_cluster(_env(0, SLURM_NTASKS='3'), ['node9', 'node10'])
  assert cluster.from_slurm(_env(0))
  assert not cluster.from_slurm(_env(0, TF_CONFIG='{}'))
  assert not cluster.from_slurm({})


def test_nothing_before_the_cluster_is_joined_lets_tensorflow_see_the_gpus():
  """join_cluster narrows CUDA_VISIBLE_DEVICES at the start of build_trainer: main.py's config
  and class-name steps before it must not initialise TensorFlow's devices."""
  script = ('import main\n'
            'from tensorflow.python.eager import context\n'
            'from configs import seg\nfrom training import settle\n'
            'config = seg.get_config()\nconfig.runtime.strategy = "multi_worker"\n'
            'settle.settle_config(config)\n'
            'print("initialised", context.context()._physical_devices is not None)\n')
  done = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert 'initialised False' in done.stdout, done.stderr[-2000:]
