"""HandBooster pipeline core library.

Heavy dependencies (torch, pyrender, pybullet, prefect) are imported inside the modules that
need them, so importing :mod:`pipeline` and running ``handbooster --help`` stay instant.
"""

__version__ = "0.1.0"
