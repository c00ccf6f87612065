"""Image fusion: one registry of methods, colour handling, MLFuse inference and the fusion stage.

* :mod:`pipeline.fusion.registry` — ``FusionMethod`` interface, ``get_method(name, **options)``,
  ``available_methods()``;
* :mod:`pipeline.fusion.classical` — ``ir``, ``vis``, ``average``, ``max``, ``laplacian``, ``vsm_wls``
  (rule in :mod:`pipeline.fusion.vsm_wls`);
* :mod:`pipeline.fusion.mlfuse` — ``mlfuse`` (network :mod:`pipeline.fusion.mlfuse_net`, fast
  inference :mod:`pipeline.fusion.mlfuse_fast`);
* :mod:`pipeline.fusion.precomputed` — ``kind: precomputed`` folders of fused images;
* :mod:`pipeline.fusion.controls` — ``kind: control``: the ``oracle`` (positive) and ``shuffled``
  (negative) controls of the report's sensitivity check;
* :mod:`pipeline.fusion.colour` — YCbCr formulas and the grey/colour rule;
* :mod:`pipeline.fusion.stage` — ``fuse_pair``, ``fuse_samples`` (files, resume, timing).
"""
