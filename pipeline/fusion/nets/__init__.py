"""Network definitions of the published fusion methods (``nn.Module`` only: no file I/O, no
pre/post-processing). Module attribute names follow the official checkpoints' keys so
``load_state_dict(strict=True)`` works unchanged; shared pieces live in :mod:`.blocks`.
Registry glue (weights, conventions) is in :mod:`pipeline.fusion.pretrained` and
:mod:`pipeline.fusion.published`; training recipes import these modules directly.
"""
