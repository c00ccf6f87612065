"""Prefect flows: one module per DVC stage (``python -m flows.<stage>``). See :mod:`flows._common`."""
import pipeline  # noqa: F401  (hermetic offline settings before prefect is imported)
