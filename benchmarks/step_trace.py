"""What tracing the train step costs, and where: the forward pass, the gradients, the
optimizer's update. Every process that trains traces its step once (each worker of a cluster
at each start, each test that trains), so this is start-up time for users and most of the
test suite's CPU (docs/results.md). Prints one JSON line per model, optimizer and replica
count, each measured in its own process (CPU seconds of the process, all threads):

    python -m benchmarks.step_trace [--models=book_segmentation,unet,segformer
        --optimizers=sgd,rmsprop,adam --replicas=1,2 --precision=float32
        --sync_batch_norm --real_size]

forward_s traces the model's training-mode call, gradients_s the loss and its gradients
(the forward pass again within it), step_s the whole step (gradients, the optimizer's update,
the loop around it); update_s = step_s - gradients_s. Zoo families are built at their test
scale (registry.Family.test_scale) or, with --real_size, as configs/base.py has them; the
book's model as it is. --sync_batch_norm: every batch norm takes the global batch's statistics.
"""

import json
import time

from absl import app
from absl import flags

from benchmarks import isolated

flags.DEFINE_list('models', ['book_segmentation', 'unet', 'segformer'],
                  'Registered segmentation models.')
flags.DEFINE_list('optimizers', ['sgd', 'rmsprop', 'adam'], 'train.optimizer values.')
flags.DEFINE_list('replicas', ['1', '2'], 'Logical CPU devices, one replica each.')
flags.DEFINE_string('precision', 'float32', 'Keras dtype policy.')
flags.DEFINE_integer('image_size', 64, 'Input side.')
flags.DEFINE_bool('sync_batch_norm', False, 'model.sync_batch_norm.')
flags.DEFINE_bool('real_size', False, 'Zoo families as configured, not at test scale.')
flags.DEFINE_string('one', '', 'Internal: measure model,optimizer,replicas in this process.')
FLAGS = flags.FLAGS


def measure(name: str, optimizer_name: str, replicas: int) -> dict:
  """Traces each part once, in this order, in a fresh process."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from configs import seg  # pylint: disable=import-outside-toplevel
  from modeling import models  # pylint: disable=import-outside-toplevel
  from training import optimizers, runtime  # pylint: disable=import-outside-toplevel
  from training import steps as steps_lib  # pylint: disable=import-outside-toplevel
  config = seg.get_config()
  config.runtime.cpu_devices = replicas
  config.model.name = name
  if not FLAGS.real_size:
    config.model.update(models.family(name).test_scale)
  config.model.sync_batch_norm = FLAGS.sync_batch_norm
  config.train.optimizer = optimizer_name
  runtime.configure_cpu_devices(replicas)
  strategy = runtime.create_strategy(config.runtime)
  size, batch = FLAGS.image_size, 4 * replicas
  with strategy.scope():
    model = models.build_model(config.model, size, 3, FLAGS.precision)
    optimizer = optimizers.make_optimizer(config.train, FLAGS.precision)
    optimizer.build(model.trainable_variables)
  steps = steps_lib.Steps(strategy, model, optimizer, global_batch_size=batch, num_classes=3)
  examples = tf.data.Dataset.from_tensors({
      'image': tf.random.uniform([size, size, 3], 0, 255),
      'label': tf.zeros([size, size, 1], tf.uint8)}).repeat().batch(batch)
  iterator = iter(strategy.experimental_distribute_dataset(examples))
  first = next(iterator)

  def traced(function, *args) -> tuple[float, int]:
    """(CPU seconds to trace, operations in the graph and the functions it calls)."""
    start = time.process_time()
    graph = function.get_concrete_function(*args).graph.as_graph_def()
    return (round(time.process_time() - start, 2),
            len(graph.node) + sum(len(f.node_def) for f in graph.library.function))

  forward_s, forward_ops = traced(tf.function(lambda b: strategy.run(
      lambda one: model(steps_lib.model_pictures(one), training=True), args=(b,)),
                                              autograph=False), first)
  gradients_s, gradients_ops = traced(tf.function(
      lambda b: strategy.run(steps._loss_and_gradients, args=(b,)),  # pylint: disable=protected-access
      autograph=False), first)
  step_s, step_ops = traced(steps._train_steps_fn, iterator, tf.constant(1))  # pylint: disable=protected-access
  return {'model': name, 'optimizer': optimizer_name, 'replicas': replicas,
          'precision': FLAGS.precision, 'sync_batch_norm': FLAGS.sync_batch_norm,
          'real_size': FLAGS.real_size, 'variables': len(model.trainable_variables),
          'forward_s': forward_s, 'gradients_s': gradients_s, 'step_s': step_s,
          'update_s': round(step_s - gradients_s, 2), 'forward_ops': forward_ops,
          'gradients_ops': gradients_ops, 'step_ops': step_ops}


def main(argv):
  del argv
  if FLAGS.one:
    name, optimizer_name, replicas = FLAGS.one.split(',')
    print(json.dumps(measure(name, optimizer_name, int(replicas))), flush=True)
    return
  passed = [f'--precision={FLAGS.precision}', f'--image_size={FLAGS.image_size}',
            f'--sync_batch_norm={FLAGS.sync_batch_norm}', f'--real_size={FLAGS.real_size}']
  for name in FLAGS.models:
    for optimizer_name in FLAGS.optimizers:
      for replicas in FLAGS.replicas:
        print(isolated.json_line('benchmarks.step_trace',
                                 f'--one={name},{optimizer_name},{replicas}', *passed),
              flush=True)


if __name__ == '__main__':
  app.run(main)
