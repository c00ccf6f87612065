"""FuseBench: does this image-fusion method help the tasks that come after it?

Importing the package changes nothing: no environment variable, no file. The hermetic offline
settings (:func:`pipeline.hermetic.apply`) are applied where a process starts FuseBench work: the
CLI (:func:`pipeline.cli.main`), the Prefect flows (importing :mod:`flows`) and the tests.
"""

__version__ = "0.1.0"
