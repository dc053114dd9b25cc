"""bco-platform: alignment from binary feedback, with the standard library's ``platform`` intact.

This package shares its name with the standard library module ``platform``. Whenever the
repository root is on ``sys.path`` ahead of the standard library (``python -m platform.run``
from the root, a Ray job's ``working_dir``, ``PYTHONPATH``), ``import platform`` finds this
package, and every library in the process (Ray, torch, pip, ...) expects the standard API
(``platform.system()``, ``platform.uname()``, ...). So the package loads the standard
library's module under a private name and re-exports its whole namespace. Its functions keep
their own globals, so caches such as ``_uname_cache`` keep working unchanged.

Nothing heavy may be imported here: this file runs in every process that imports ``platform``.
"""

import importlib.util as _importlib_util
import os as _os
import sys as _sys
import sysconfig as _sysconfig

_STDLIB_NAME = "_stdlib_platform"


def _load_stdlib_platform():
    loaded = _sys.modules.get(_STDLIB_NAME)
    if loaded is not None:
        return loaded
    path = _os.path.join(_sysconfig.get_path("stdlib"), "platform.py")
    spec = _importlib_util.spec_from_file_location(_STDLIB_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the standard library module 'platform' from {path}")
    module = _importlib_util.module_from_spec(spec)
    _sys.modules[_STDLIB_NAME] = module
    spec.loader.exec_module(module)
    return module


_stdlib = _load_stdlib_platform()
_OWN = {"__name__", "__file__", "__spec__", "__loader__", "__package__", "__path__",
        "__builtins__", "__cached__", "__doc__"}
globals().update({k: v for k, v in vars(_stdlib).items() if k not in _OWN})

__version__ = "0.1.0"
