"""Starts a tf.data service dispatcher or worker, so input processing runs on CPU machines.

    python -m data.service --role=dispatcher --port=5050
    python -m data.service --role=worker --dispatcher=HOST:5050 [--port=5051]

then train with --config.data.service_address=grpc://HOST:5050. Workers need the data (the
workdir's prepared_data, or data.data_dir) at the same paths as the trainer.
"""

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

flags.DEFINE_enum('role', None, ['dispatcher', 'worker'], 'Which server to run.')
flags.DEFINE_integer('port', 0, 'Port to listen on (0: any free port).')
flags.DEFINE_string('dispatcher', None, 'worker: the dispatcher as HOST:PORT.')
flags.DEFINE_string('worker_host', 'localhost', 'worker: the host name the dispatcher and '
                    'trainers use to reach this worker.')
FLAGS = flags.FLAGS


def start_dispatcher(port: int = 0) -> tf.data.experimental.service.DispatchServer:
  return tf.data.experimental.service.DispatchServer(
      tf.data.experimental.service.DispatcherConfig(port=port))


def start_worker(dispatcher: str, port: int = 0, host: str = 'localhost'
                 ) -> tf.data.experimental.service.WorkerServer:
  return tf.data.experimental.service.WorkerServer(
      tf.data.experimental.service.WorkerConfig(
          dispatcher_address=dispatcher.removeprefix('grpc://'), port=port,
          worker_address=f'{host}:%port%'))


def main(argv):
  del argv
  if FLAGS.role == 'dispatcher':
    server = start_dispatcher(FLAGS.port)
    logging.info('tf.data service dispatcher at %s', server.target)
  else:
    if not FLAGS.dispatcher:
      raise app.UsageError('--role=worker needs --dispatcher=HOST:PORT')
    server = start_worker(FLAGS.dispatcher, FLAGS.port, FLAGS.worker_host)
    logging.info('tf.data service worker for %s', FLAGS.dispatcher)
  server.join()


if __name__ == '__main__':
  flags.mark_flag_as_required('role')
  app.run(main)
