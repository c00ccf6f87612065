"""The one trainer of every learned fusion method (issue #14).

* :mod:`.recipe`      — what a method adds: a :class:`~.recipe.Recipe` (networks, optimisers,
  ``step(batch)`` returning named losses, ``fuse``, ``export``) registered with ``register_recipe``;
* :mod:`.trainer`     — config checks, data, seeding, loop, device/AMP, progress, previews,
  ``losses.csv``, ``summary.json``: :func:`~.trainer.train`, :func:`~.trainer.train_from_params`;
* :mod:`.data`        — training pairs from the dataset layer, optional maps, seeded aligned crops;
* :mod:`.checkpoints` — content fingerprint, resume checkpoints, the one loader;
* :mod:`.health`      — collapsed / diverged verdict of a finished run;
* :mod:`.methods`     — one recipe module per method (``mlfuse``, ...).
"""
