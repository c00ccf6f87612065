"""One module per benchmark of ``python -m pipeline bench <name>``; each defines
``register(subparsers)`` adding its parser with ``func(args) -> int``. Benchmarks print one JSON
line with their figures (median seconds, peak resident memory, ...)."""
