"""The files under ``keras_dssdn/deploy/templates/``, read with :mod:`importlib.resources`.

``*.tmpl`` files are :class:`string.Template` texts (``${name}`` placeholders;
C / C++ never uses ``$``); the others (``dssdn_example.cc``,
``arena_probe.py``) are used as they are. Package data: ``deploy/templates/*``.
"""

from __future__ import annotations

import functools
import string
from importlib import resources


@functools.lru_cache(maxsize=None)
def template_text(name: str) -> str:
    """The text of ``templates/<name>`` (UTF-8)."""
    return resources.files("keras_dssdn.deploy").joinpath("templates", name).read_text(encoding="utf-8")


def render(name: str, **values) -> str:
    """``templates/<name>`` with every ``${key}`` replaced by ``str(values[key])``; a missing key is a KeyError."""
    return string.Template(template_text(name)).substitute({k: str(v) for k, v in values.items()})
