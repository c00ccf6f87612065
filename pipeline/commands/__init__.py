"""One module per CLI command; each defines ``register(subparsers)`` (see :mod:`pipeline.cli`)."""
