"""Devices, distribution strategy and numeric precision, chosen from `config.runtime`."""

import gc
import os

from absl import logging
import tensorflow as tf

from errors import ConfigError
from training import cluster

STRATEGIES = ('mirrored', 'one_device', 'multi_worker')
PRECISIONS = ('auto', 'float32', 'mixed_float16', 'mixed_bfloat16')
JIT_COMPILE_SETTINGS = ('auto', 'on', 'off')


def collect_garbage_less_often() -> None:
  """Python's cycle collector runs a young collection every 50,000 allocations instead of
  700, and never scans what was made before (the imports): tracing a step function or
  building a keras-hub network makes millions of short-lived objects, and the default spent
  5-15 % of a short run's CPU on them (docs/results.md). Cycles are still collected."""
  gc.freeze()
  gc.set_threshold(50_000, 50, 100)


def configure_cpu_devices(cpu_devices: int) -> None:
  """Splits the host CPU into `cpu_devices` logical devices, so N replicas run without GPUs.

  Must run before TensorFlow initialises its devices; a later call for as many devices or
  fewer is a no-op (the strategy takes the first `cpu_devices`: tests split a process once).
  """
  if cpu_devices <= 0:
    return
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
  except RuntimeError as e:
    existing = len(tf.config.list_logical_devices('CPU'))
    if existing < cpu_devices:
      raise ConfigError(f'runtime.cpu_devices={cpu_devices} cannot be applied: TensorFlow '
                        f'already runs with {existing} CPU devices in this process.') from e


def create_strategy(runtime_config) -> tf.distribute.Strategy:
  """MirroredStrategy over every local GPU (or the logical CPUs), one device, or multi-worker."""
  if runtime_config.strategy == 'multi_worker':
    # Must come before anything initialises TensorFlow's runtime (listing logical devices does).
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=cluster_resolver(),
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=_collective(runtime_config.collective,
                                       bool(tf.config.list_physical_devices('GPU'))),
            timeout_seconds=runtime_config.collective_timeout_s or None))
  gpus = tf.config.list_logical_devices('GPU')
  if runtime_config.strategy == 'mirrored':
    if gpus:
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices('CPU')]
    cpus = cpus[:runtime_config.cpu_devices or len(cpus)]
    return tf.distribute.MirroredStrategy(
        devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
  return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')


COLLECTIVES = ('auto', 'ring', 'nccl')


def _collective(name: str, have_gpus: bool):
  """`auto`: NCCL between GPUs, gRPC ring on CPUs."""
  implementations = tf.distribute.experimental.CommunicationImplementation
  if name == 'auto':
    return implementations.NCCL if have_gpus else implementations.RING
  return {'ring': implementations.RING, 'nccl': implementations.NCCL}[name]


def join_cluster(runtime_config) -> None:
  """Under srun without TF_CONFIG: this task's TF_CONFIG and GPUs from Slurm's environment.
  Must run before anything lists devices, so each task sees only its own GPUs."""
  if runtime_config.strategy == 'multi_worker' and cluster.from_slurm():
    cluster.export_slurm_task()


def cluster_resolver():
  """The cluster this process belongs to, from TF_CONFIG (set by join_cluster under srun)."""
  if os.environ.get('TF_CONFIG'):
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()
  raise ConfigError('runtime.strategy=multi_worker needs a cluster description: set TF_CONFIG '
                    '(python -m launch.tf_config prints it for task i of a host list), run '
                    'under srun (Slurm), or use python -m launch.launch_local on one machine.')


def _cluster_task(strategy: tf.distribute.Strategy):
  """(task type, task id, cluster spec as a dict) of this process, or None outside a cluster."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return None
  return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def task_name(strategy: tf.distribute.Strategy) -> str:
  """'worker 1' style name of this task, or 'local' outside a cluster."""
  task = _cluster_task(strategy)
  return f'{task[0]} {task[1]}' if task else 'local'


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Tasks that train (chief and workers); 1 outside a cluster."""
  task = _cluster_task(strategy)
  return len(task[2].get('chief', [])) + len(task[2].get('worker', [])) if task else 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the one task that writes summaries, exports and the resolved config: the chief,
  else worker 0 of a cluster without one, and a process outside a cluster."""
  task = _cluster_task(strategy)
  if task is None or task[0] == 'chief':
    return True
  return task[0] == 'worker' and task[1] == 0 and 'chief' not in task[2]


def auto_precision(capabilities: list[tuple[int, int]]) -> tuple[str, str]:
  """(policy, why) for runtime.precision=auto from every local GPU's compute capability:
  mixed_bfloat16 when all have >= 8.0 (Ampere and newer: no loss scaling needed),
  mixed_float16 when all have tensor cores (>= 7.0), float32 otherwise and on CPUs."""
  if not capabilities:
    return 'float32', 'no GPU'
  lowest = min(tuple(c) for c in capabilities)
  shown = f'{lowest[0]}.{lowest[1]}'
  if lowest >= (8, 0):
    return 'mixed_bfloat16', f'every GPU has compute capability >= 8.0 (lowest {shown})'
  if lowest >= (7, 0):
    return 'mixed_float16', (f'every GPU has tensor cores, but one has compute capability '
                             f'{shown} < 8.0, too old for bfloat16')
  return 'float32', f'a GPU has compute capability {shown} < 7.0 (no tensor cores)'


def resolve_precision(precision: str) -> str:
  """The dtype policy to train in: `precision` itself, or for `auto` auto_precision's choice,
  logged with the reason."""
  if precision != 'auto':
    return precision
  capabilities = [tf.config.experimental.get_device_details(g).get('compute_capability', (0, 0))
                  for g in tf.config.list_physical_devices('GPU')]
  policy, why = auto_precision(capabilities)
  logging.info('runtime.precision=auto: %s (%s).', policy, why)
  return policy


def resolve_jit_compile(setting: str) -> bool:
  """`auto`: XLA on GPUs, where it pays; off on CPUs."""
  if setting == 'auto':
    return bool(tf.config.list_physical_devices('GPU'))
  return setting == 'on'
