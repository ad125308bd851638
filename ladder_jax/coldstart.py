"""python -m ladder_jax.coldstart ...: cold-start data by rejection sampling (ladder_jax.rl.coldstart)."""

import sys

from ladder_jax.rl.coldstart import main

if __name__ == "__main__":
    sys.exit(main())
