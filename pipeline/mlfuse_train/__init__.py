"""MLFuse training inside the pipeline (spec ``mlfuse.md`` sections 10-11).

* :mod:`.losses`  — the four losses and their weighted sum.
* :mod:`.data`    — training pairs (any mix of pair sets, matched by name, sorted), VSM maps of img2
  read from the VSM stage, seeded aligned random crops, batches.
* :mod:`.trainer` — the published recipe (Adam, cosine schedule, batch 16), seeded, resumable,
  device ``auto``; writes the official checkpoint layout.
"""
