"""The loop's periodic actions: one schedule rule, and the order they run in at a boundary."""

import contextlib

from training import actions


def test_a_schedule_is_due_every_n_steps_every_n_epochs_and_at_the_end():
  every_4_steps = actions.Schedule(steps=4)
  every_2_epochs = actions.Schedule(epochs=2, at_end=True)  # 5 steps an epoch, 3 epochs.
  due = lambda schedule: [s for s in range(1, 16) if schedule.due(s, 5, 15)]
  assert due(every_4_steps) == [4, 8, 12]
  assert due(every_2_epochs) == [10, 15]  # Epoch 2, and the last step (epoch 3).
  assert due(actions.Schedule(epochs=1)) == [5, 10, 15]
  assert due(actions.Schedule(steps=4, epochs=1)) == [4, 5, 8, 10, 12, 15]
  assert due(actions.NEVER) == []


def test_due_actions_run_averaged_first_in_one_swap_then_the_rest_in_order():
  calls = []

  @contextlib.contextmanager
  def average_weights():
    calls.append('swap in')
    yield
    calls.append('swap out')

  def record(name, result=None):
    return lambda step: calls.append(f'{name} {step}') or result

  listed = [
      actions.Action('evaluate', actions.Schedule(epochs=1), record('evaluate', {'eval': 1}),
                     averaged=True),
      actions.Action('explain', actions.Schedule(epochs=2), record('explain'), averaged=True),
      actions.Action('checkpoint', actions.Schedule(steps=3, epochs=1), record('checkpoint')),
      actions.Action('flush', actions.Schedule(epochs=1), record('flush')),
  ]
  results = actions.run_due(listed, 10, 5, 20, average_weights)
  assert calls == ['swap in', 'evaluate 10', 'explain 10', 'swap out', 'checkpoint 10',
                   'flush 10']
  assert results == {'eval': 1}
  calls.clear()
  assert actions.run_due(listed, 7, 5, 20, average_weights) == {}
  assert calls == []  # Nothing due mid-epoch at step 7: no swap either.
  actions.run_due(listed, 7, 5, 20, average_weights, forced=('checkpoint',))  # A stop signal.
  assert calls == ['checkpoint 7']
