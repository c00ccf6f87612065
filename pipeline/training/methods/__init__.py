"""Training recipes, one module per learned fusion method (importing this package registers them)."""
from pipeline.training.methods import mlfuse  # noqa: F401
