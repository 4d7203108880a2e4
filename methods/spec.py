"""A method's registry entry (:class:`MethodSpec`) and :func:`register`, which a method module imports to register
itself.

This module imports no method: the method modules import it, and :mod:`methods.registry` (which loads every method
module, then answers ``get`` and ``all_methods``) imports both, so the import graph has no cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Stage = Literal["pretrain", "asr", "ground"]
Query = Literal["speech", "asr-text", "gold-text", "concept", "none"]
Supervision = Literal["weak", "full", "none"]

STAGES: tuple[str, ...] = ("pretrain", "asr", "ground")
QUERIES: tuple[str, ...] = ("speech", "asr-text", "gold-text", "concept", "none")  # concept: the oracle's hidden label
SUPERVISIONS: tuple[str, ...] = ("weak", "full", "none")


@dataclass(frozen=True)
class MethodSpec:
    """What the harness needs to know about a method, without building it.

    ``run`` is the method's entry point: ``run(ctx) -> RunResult`` (see :mod:`bench.run`); it is
    ``None`` for planned methods. ``config`` maps a profile name to the method's typed configuration. The rows a
    method fills are not a field: :attr:`rows` reads them from the tables, the one place that says so (issue 16).
    """

    name: str
    title: str
    stages: tuple[str, ...]
    query: str
    supervision: str
    description: str = ""
    run: Callable[..., Any] | None = None
    config: Callable[[str], Any] | None = None
    issue: int | None = None
    # its predictions do not depend on the seed (a fixed span, a deterministic fit): ``bench run`` runs one seed
    seed_free: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ValueError(f"method name {self.name!r} must be lower-case with no spaces")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"method {self.name}: unknown stage(s) {bad}; choose from {STAGES}")
        if self.query not in QUERIES:
            raise ValueError(f"method {self.name}: query {self.query!r} not in {QUERIES}")
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"method {self.name}: supervision {self.supervision!r} not in {SUPERVISIONS}")

    @property
    def blind(self) -> bool:
        """Reads only the annotations: no query input, no supervision (random, prior, whole video and variants)."""
        return self.query == "none" and self.supervision == "none"

    @property
    def implemented(self) -> bool:
        return self.run is not None

    @property
    def rows(self) -> tuple[str, ...]:
        """The table rows this method fills, ``tableN:row-id`` in table order, as ``tables/*.toml`` name them."""
        from bench import tables  # on use: registering a method reads no table

        return tuple(f"table{number}:{row}" for number, row in tables.rows_by_method().get(self.name, ()))


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a runnable method. Registering a name twice is an error, never a silent override."""
    if spec.run is None:
        raise ValueError(f"method {spec.name}: a registered method needs a run function")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


FINETUNE_SUFFIX = "-ft"


def finetuned(spec: MethodSpec, issue: int = 17) -> MethodSpec:
    """``<name>-ft``: ``spec`` with its pre-trained speech encoder fine-tuned in grounding (``finetune = True`` in
    its configuration), the run that fills the row's "mIoU (finetune)" cell in Table 1 (``tables/table01.toml``
    names it as the row's ``finetune`` method). ``bench run --method <name> --set finetune=true`` is the same run."""
    assert spec.config is not None, f"method {spec.name}: a fine-tuned variant needs a configuration"
    config = spec.config

    def tuned(profile: str) -> Any:
        return dataclasses.replace(config(profile), finetune=True)

    desc = f"{spec.description}; the pre-trained speech encoder fine-tuned with the grounding network (Table 1)"
    return dataclasses.replace(spec, name=spec.name + FINETUNE_SUFFIX, title=f"{spec.title} (fine-tuned encoder)",
                               description=desc, config=tuned, issue=issue)  # fmt: skip
