"""Perturbations of the test split for the robustness study (FuseBench issue 17).

* :mod:`.kinds` -- single perturbation kinds (misregistration, infrared sensor faults, visible
  degradations) as pure functions of a uint8 image and a seeded generator;
* :mod:`.families` -- named families of severity levels from ``params.yaml`` ``perturb``,
  validation and deterministic application to a pair;
* :mod:`.stage` -- the ``perturb`` stage: every selected level of the test split written once
  (``data/perturbed``), and the reader of those files.
"""
