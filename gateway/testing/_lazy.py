"""Lazy public names for the test kit's package facades (PEP 562).

Each facade (``gateway.testing`` and its peers' packages) lists its public names with the
submodule that defines each; a name is imported on first access and then kept in the package,
so importing a facade costs nothing (the pytest plugin imports ``gateway.testing`` in every
pytest run) and a test loads only the peers it uses. Type checkers read the facade's
``TYPE_CHECKING`` imports instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    namespace: MutableMapping[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__, __dir__`` for the module whose ``globals()`` is ``namespace``; ``exports``
    maps each public name to the module that defines it, relative to that one
    (``".server"``)."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
