"""Picture sizes as a config writes them (one side for a square, or (height, width)) and as
the code uses them: always a (height, width) pair."""


def sides(size) -> tuple[int, int]:
  """(height, width) of a config size: an int is a square's side."""
  if isinstance(size, int):
    return size, size
  height, width = size
  return height, width


def describe(size) -> str:
  """How a size reads in a message: '200' for a square, '512x1024' (height x width) else."""
  height, width = sides(size)
  return str(height) if height == width else f'{height}x{width}'
