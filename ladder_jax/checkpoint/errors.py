"""The error every checkpoint reader raises for a directory that does not match the model."""


class CheckpointError(ValueError):
    """A checkpoint that does not match the model (names the file, tensor and shapes)."""
