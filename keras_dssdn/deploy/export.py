"""``from keras_dssdn.deploy.export import export_bundle`` keeps working: the public API of
:mod:`keras_dssdn.deploy` (:data:`keras_dssdn.deploy.PUBLIC_API`) under its former module name.

The code lives in the step modules (``bundle``, ``prepare``, ``calibrate``, ``convert``, ``evaluate``,
``verify``, ``report``; see :mod:`keras_dssdn.deploy`); the command line is :mod:`keras_dssdn.cli.export`.
"""

import importlib as _importlib

from keras_dssdn.deploy import PUBLIC_API as _PUBLIC_API

globals().update({name: getattr(_importlib.import_module(module), name) for name, module in _PUBLIC_API.items()})

__all__ = sorted(_PUBLIC_API)
