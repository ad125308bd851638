"""ladder_jax: SpatialLadder in JAX."""
