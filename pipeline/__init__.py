"""FuseBench: does this image-fusion method help the tasks that come after it?

Importing the package makes the process hermetic and offline (see :mod:`pipeline.hermetic`)
before any heavy library is imported.
"""
from pipeline import hermetic as _hermetic

__version__ = "0.1.0"

_hermetic.apply()
