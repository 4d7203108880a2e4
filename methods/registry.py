"""The method registry: one entry per runnable configuration of the paper (or of this suite), and the planned ones.

A method registers itself once, in its own module, with :func:`bench.context.register` (what a reader needs to place
it in the paper: its stages, its query input, its supervision). Which table rows it fills is not part of that: the
tables (``tables/*.toml``) name methods by registry name, and :attr:`MethodSpec.rows` reads the rows from them.

A method is **planned** when the tables (or ``tables/figures.toml``) name it and nothing registers it (issue 16), so
every paper row names a method that is either runnable or openly not yet built. Nothing planned can be run: ``bench
run`` refuses it with the issue that brings it.

What the tables cannot say about a planned method (its title, stages, query, supervision, the issue, a description)
lives in ``methods/planned.toml``, and only there. Not in per-row fields of ``tables/*.toml``: a method fills several
rows (VGCL is in Tables 1 and 10), which would repeat the same facts per row and let them disagree; and the tables
hold what the paper prints, checked against its text, while issue numbers and stages are this suite's plans. Not in
Python: a data file keyed by method name holds nothing but those facts, one entry per method, so it cannot grow into
a second registry. An entry lives only while its method is unregistered: :func:`planned` refuses an entry for a
registered method, or for one no table names, with the fix.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from bench import context as _contract
from bench.context import QUERIES, STAGES, SUPERVISIONS, MethodSpec, Query, Stage, Supervision, register

__all__ = ["PLANNED_PATH", "QUERIES", "STAGES", "SUPERVISIONS", "MethodSpec", "Query", "Stage", "Supervision",
           "all_methods", "get", "is_known", "planned", "register", "registered"]  # fmt: skip

PLANNED_PATH = Path(__file__).with_name("planned.toml")
PLANNED_KEYS = {"title": str, "stages": list, "query": str, "supervision": str, "issue": int, "description": str}
"""Each entry of ``planned.toml``: its keys and their TOML types (``issue`` may be left out: no issue filed yet)."""


def __getattr__(name: str) -> object:
    """``registry._REGISTRY`` reads the store of :mod:`bench.context`, where :func:`register` writes."""
    if name == "_REGISTRY":
        return _contract._REGISTRY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def registered() -> dict[str, MethodSpec]:
    """The registered (runnable) methods, keyed by name, in the order their modules registered them."""
    _load_builtin_methods()
    return dict(_contract._REGISTRY)


def all_methods() -> dict[str, MethodSpec]:
    """Registered methods first, then the planned ones (:func:`planned`); keyed by name."""
    return {**registered(), **planned()}


def get(name: str) -> MethodSpec:
    """The spec of ``name``: registered, else planned; unknown names raise with the closest known names."""
    _load_builtin_methods()
    if name in _contract._REGISTRY:
        return _contract._REGISTRY[name]
    from bench import tables

    named = tables.named_methods()
    if name in named:
        return _planned_spec(name, named[name], _planned_entries())
    close = difflib.get_close_matches(name, list(dict.fromkeys([*_contract._REGISTRY, *named])), n=3)  # each name once
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no method named {name!r}.{hint} `bench methods` lists them all.")


def is_known(name: str) -> bool:
    """Registered, or named by the tables (and so planned)."""
    _load_builtin_methods()
    if name in _contract._REGISTRY:
        return True
    from bench import tables

    return name in tables.named_methods()


def planned() -> dict[str, MethodSpec]:
    """Every method the tables and figures name that nothing registers, in table order, as ``planned.toml``
    describes it; an entry there for a registered method or for one no table names is an error that says what to do.

    A method the tables name that ``planned.toml`` does not describe is left out (:func:`get` of it raises with the
    fix, and ``bench methods`` names it on stderr), so that a registry of stand-ins, as the tests build, still lists.
    """
    from bench import tables

    _load_builtin_methods()
    named = tables.named_methods()
    entries = _planned_entries()
    for name in entries:
        if name in _contract._REGISTRY:
            raise ValueError(f"{PLANNED_PATH}: [{name!r}] describes a method that is registered now; delete the "
                             "entry (the register call in its module is its one description)")  # fmt: skip
        if name not in named:
            raise ValueError(f"{PLANNED_PATH}: [{name!r}] is not named by any table or figure in tables/; delete "
                             "the entry, or give the method its row in tables/*.toml")  # fmt: skip
    return {name: _planned_spec(name, path, entries) for name, path in named.items()
            if name in entries and name not in _contract._REGISTRY}  # fmt: skip


def _planned_entries() -> dict[str, dict]:
    """``planned.toml`` parsed and checked entry by entry; errors name the file, the entry and the fix."""
    try:
        raw = tomllib.loads(PLANNED_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{PLANNED_PATH} is missing: it ships with the suite beside methods/registry.py "
                                "(restore it from git)") from None  # fmt: skip
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{PLANNED_PATH}: not valid TOML ({err}); its header says what an entry holds") from None
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{PLANNED_PATH}: {name!r} is not a table; write it as [{name!r}] with its keys")
        required = set(PLANNED_KEYS) - {"issue"}
        wrong = [k for k, v in entry.items() if k not in PLANNED_KEYS or not isinstance(v, PLANNED_KEYS[k])]
        if wrong or not required <= set(entry):
            raise ValueError(f"{PLANNED_PATH}: [{name!r}] needs {sorted(required)} (and, once filed, issue), of "
                             f"the types in the file's header; wrong or unknown: {sorted(wrong)}, missing: "
                             f"{sorted(required - set(entry))}")  # fmt: skip
    return raw


def _planned_spec(name: str, named_in: Path, entries: dict[str, dict]) -> MethodSpec:
    """The spec of planned method ``name`` (no ``run``), which ``named_in`` names, from its ``planned.toml`` entry."""
    if name not in entries:
        raise ValueError(f"{named_in} names method {name!r}, which nothing registers and {PLANNED_PATH} does not "
                         f"describe: register it from its module (listed in methods/registry.py), or add "
                         f"[{name!r}] to {PLANNED_PATH.name} with its title, stages, query, supervision and "
                         "description")  # fmt: skip
    e = entries[name]
    try:
        return MethodSpec(name, e["title"], tuple(e["stages"]), e["query"], e["supervision"], e["description"],
                          issue=e.get("issue"))  # fmt: skip
    except ValueError as err:
        raise ValueError(f"{PLANNED_PATH}: [{name!r}]: {err}") from None


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
    "methods.vgcl",
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
