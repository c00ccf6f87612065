"""Controls: fusion "methods" whose downstream answer is known in advance (registry kind ``control``).

They are not fusion methods; they test the benchmark (:mod:`pipeline.report.sensitivity`):

* ``oracle`` (**positive** control, demo data only): see :class:`Oracle`;
* ``shuffled`` (**negative** control): see :class:`Shuffled`.

Reports show them apart from the real methods and never rank them.
"""
from __future__ import annotations

CONTROL_ROLES = {"oracle": "positive", "shuffled": "negative"}   # implementation -> role
