"""The method registry: one entry per runnable configuration of the paper (or of this suite).

A method is registered once, with what a reader needs to place it in the paper: its stages, its query
input, its supervision and the table rows it implements. Tables (``tables/*.toml``) name methods by
registry name; ``bench run --method NAME`` looks them up here.

Methods that a later issue will implement are declared in :data:`PLANNED` with the issue that brings
them, so that every paper row names a method that is either runnable or openly not yet built. Nothing
in ``PLANNED`` can be run: ``bench run`` refuses it with the issue number.
"""

from __future__ import annotations

from methods import spec as _spec
from methods.planned import PLANNED
from methods.spec import QUERIES, STAGES, SUPERVISIONS, MethodSpec, Query, Stage, Supervision, register

__all__ = ["PLANNED", "QUERIES", "STAGES", "SUPERVISIONS", "MethodSpec", "Query", "Stage", "Supervision", "register",
           "all_methods", "get", "is_known"]  # fmt: skip


def __getattr__(name: str) -> object:
    """``registry._REGISTRY`` reads the store of :mod:`methods.spec`, where :func:`register` writes."""
    if name == "_REGISTRY":
        return _spec._REGISTRY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_methods() -> dict[str, MethodSpec]:
    """Registered methods first, then planned ones not (yet) registered; keyed by name."""
    _load_builtin_methods()
    out = dict(_spec._REGISTRY)
    for name, spec in PLANNED.items():
        out.setdefault(name, spec)
    return out


def get(name: str) -> MethodSpec:
    """The spec of ``name``; unknown names raise with the closest known names."""
    methods = all_methods()
    if name in methods:
        return methods[name]
    import difflib

    close = difflib.get_close_matches(name, methods, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no method named {name!r}.{hint} `bench methods` lists them all.")


def is_known(name: str) -> bool:
    return name in all_methods()


_loaded = False
# Modules that call register() at import; each method issue appends its module here.
_BUILTIN_MODULES: tuple[str, ...] = (
    "methods.blind",
    "methods.base",
    "methods.sil",
    "methods.asr",
    "methods.wslln",
    "methods.rtbpn",
    "methods.scn",
    "methods.tan",
    "methods.oracle",
    "methods.vslnet",
    "methods.cascade",
    "methods.lsem",
    "methods.w2v2",
    "methods.lut",
    "methods.vilt",
)


def _load_builtin_methods() -> None:
    """Import the method modules once, so that their ``register`` calls run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
