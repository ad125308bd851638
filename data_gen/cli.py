"""The error handling every command line of the project shares (data_gen's and ladder_jax's).

data_gen imports nothing of ladder_jax (ladder_jax imports data_gen), so the one mechanism lives
here, at the lower layer, and ladder_jax's entry points use it too.
"""

import functools
import sys

# Bad input (a row, a field, a config key, a target, a checkpoint): every error the project raises
# for it is a ValueError subclass whose message names the file, row and field (FormatError,
# ExampleError, CheckpointError, ConfigError, SceneError, ...); a missing or unreadable file is an
# OSError naming the path.
INPUT_ERRORS = (ValueError, OSError)
DEBUG_FLAG = "--debug"


def reports_errors(main):
  """Wraps `main(argv) -> exit code` so INPUT_ERRORS print as one `error: ...` line on stderr with
  exit code 1 and no traceback; `--debug` anywhere in argv lets them raise with their traceback."""

  @functools.wraps(main)
  def wrapped(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
      return main(argv)
    except INPUT_ERRORS as e:
      if debug:
        raise
      print(f"error: {e}", file=sys.stderr)
      return 1

  return wrapped
