"""Regenerate the committed example report (``reports/examples/synth-small/``): every run it shows, then the report.

What the report reads decides what runs, and that is read from the tables' and figures' own data, never listed here:
every row of every table (``tables/table*.toml``; Table 1 with its fine-tune column), each grounding table's blind
rows and references, Table 2's latency at the profile's and at the paper's sizes (``scripts/bench_latency.py``), the
series of Figures 4, 5 and 9 (``tables/figures.toml``: a method's own runs, a sweep's values other than the method's
default as ``--set KEY=VALUE`` runs, and Figure 4's levels as ``bench robustness`` runs of its series), every blind
method and variant on every benchmark of the report's blind section (synth and the real annotations: the claims'
``prior-miou`` is one), and last ``bench report --out``. Each step is one ``bench`` command, run in a process of its
own and printed before it runs.

A (method, seed, configuration) that already has a FINISHED run in the store is left out of its step, and a step with
nothing left is skipped: an interrupted regeneration goes on where it stopped, and nothing computed is lost. The
plan is made before anything runs (later steps leave out what earlier ones will make: the blind rows of Table 3 are
those of Table 1), so ``--dry-run`` prints exactly what would run.

    .venv/bin/python scripts/example_report.py --dry-run             # the plan on this store, one command a line
    .venv/bin/python scripts/example_report.py                       # synth/small, seeds 0,1,2: about a day on 2 cores
    .venv/bin/python scripts/example_report.py --profile tiny --seeds 0 --out reports/generated/tiny-example
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench import config as cfg
from bench import report, robustness, tables, tracking
from bench.run import methods_to_run, parse_seeds
from methods import registry

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "tables" / "figures.toml"
ROBUSTNESS_SWEEP = "augmentation_level"  # Figure 4's sweep: the augmentation levels of `bench robustness`
DATASET = "synth"
Made = tuple[str, str, int, str]


@dataclass
class Step:
    """One command of the plan and what it makes: ``(dataset, method, seed, what)``, where ``what`` is a training
    run's ``overrides`` param (``-`` for the method's own configuration) or a measure (``latency``, ``robustness``)."""

    why: str
    argv: list[str]
    makes: set[Made] = field(default_factory=set)

    def script(self) -> bool:
        return self.argv[0].endswith(".py")

    def command(self) -> list[str]:
        if self.script():
            return [sys.executable, str(ROOT / self.argv[0]), *self.argv[1:]]
        return [sys.executable, "-m", "bench.cli", *self.argv]

    def shown(self) -> str:
        return " ".join(self.argv if self.script() else ["bench", *self.argv])


def finished(profile: str) -> set[Made]:
    """What the store holds for ``profile`` on every benchmark the report reads (see :class:`Step`); a method's
    robustness counts when every (kind, level) of ``bench robustness`` has its run."""
    return {m for dataset in report.BENCHMARKS for m in _finished(dataset, profile)}


def _finished(dataset: str, profile: str) -> set[Made]:
    runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    made: set[Made] = set()
    if not len(runs):
        return made
    measure = runs["params.measure"] if "params.measure" in runs else [None] * len(runs)
    overrides = runs["params.overrides"] if "params.overrides" in runs else ["-"] * len(runs)
    levels: dict[tuple[str, int], set[str]] = {}
    for i, (method, seed, m, o) in enumerate(zip(runs["params.method"], runs["params.seed"], measure, overrides,
                                                 strict=True)):  # fmt: skip
        o = o if isinstance(o, str) else "-"  # a run logged before the param: its method's own
        if not isinstance(m, str):
            made.add((dataset, method, int(seed), o))
        elif m == robustness.MEASURE and o == "-":
            row = runs.iloc[i]
            level = f"{row['params.augment.kind']}-{row['params.augment.level']}"
            levels.setdefault((method, int(seed)), set()).add(level)
        else:
            made.add((dataset, method, int(seed), m))
    whole = {f"{k}-{lv}" for k in robustness.KINDS for lv in robustness.LEVELS}
    return made | {(dataset, m, s, robustness.MEASURE) for (m, s), got in levels.items() if got >= whole}


def sweep_default(method: str, key: str, profile: str) -> object:
    """The value of ``key`` in ``method``'s configuration at ``profile``: the sweep's point that is its own run."""
    return functools.reduce(getattr, key.split("."), registry.get(method).config(profile))


def sweep_overrides(method: str, key: str, value: object, profile: str) -> str:
    """The ``overrides`` param a ``--set key=value`` run of ``method`` logs (:func:`bench.config.overrides_param`)."""
    default = registry.get(method).config(profile)
    resolved = cfg.apply_overrides(default, {key: str(value)})
    return cfg.overrides_param({key: str(value)}, resolved, default)


def by_missing_seeds(names: list[str], todo) -> dict[tuple[int, ...], list[str]]:
    """``names`` grouped by the seeds ``todo(name)`` says each still needs (none: left out), so that one command
    serves every method that needs the same seeds."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in names:
        if seeds := tuple(todo(name)):
            groups.setdefault(seeds, []).append(name)
    return groups


def plan(profile: str, seeds: list[int], sweep_seeds: list[int], out: str, jobs: int,
         have: set[Made] | None = None) -> list[Step]:  # fmt: skip
    """The commands that make the report, leaving out what ``have`` (default: the store) already holds."""
    done = set(finished(profile) if have is None else have)
    common = ["--profile", profile, *(["--jobs", str(jobs)] if jobs > 1 else [])]
    steps: list[Step] = []

    def missing(method: str, wanted: list[int], overrides: str, dataset: str) -> list[int]:
        spec = registry.get(method)
        return [s for s in (wanted[:1] if spec.seed_free else wanted) if (dataset, method, s, overrides) not in done]

    def runs_step(why: str, names: list[str], wanted: list[int], table: int | None = None,
                  sets: dict[str, str] | None = None, dataset: str = DATASET) -> None:  # fmt: skip
        """One ``bench run`` per set of missing seeds (most often one), for the methods that miss them."""
        overrides = "-"
        if sets:
            ((key, value),) = sets.items()
            overrides = sweep_overrides(names[0], key, value, profile)
        for todo, group in by_missing_seeds(names, lambda n: missing(n, wanted, overrides, dataset)).items():
            where = ["--table", str(table)] if table else []
            where += ["--dataset", dataset] if dataset != DATASET else []
            argv = ["run", "--method", ",".join(group), *where, *common,
                    "--seeds", ",".join(map(str, todo)), *[a for k, v in (sets or {}).items() for a in ("--set", f"{k}={v}")]]  # noqa: E501  # fmt: skip
            made = {(dataset, m, s, overrides) for m in group for s in todo}
            done.update(made)
            steps.append(Step(why, argv, made))

    for number in tables.TABLE_NUMBERS:
        table = tables.load_table(number)
        if not any(r.method for r in table.rows):
            continue  # Table 7 is the augmentations' configuration: nothing to run
        finetune = any(r.finetune for r in table.rows)
        names = [s.name for s in methods_to_run(None, number, DATASET, profile, finetune=finetune)]
        runs_step(f"Table {number}", names, seeds, table=number)

    rows = [r.method for r in tables.load_table(2).rows if r.method]
    for measure, extra in (("latency", []), ("latency-paper-sizes", ["--sizes", "paper"])):
        made = {(DATASET, m, 0, measure) for m in rows}
        if not made <= done:
            steps.append(Step(f"Table 2 ({measure})", ["scripts/bench_latency.py", "--profile", profile, *extra], made))
            done.update(made)

    robust: list[str] = []
    for figure in tomllib.loads(FIGURES.read_text())["figures"]:
        for series in figure.get("series", []):
            method, sweep = series["method"], series.get("sweep")
            runs_step(f"Figure {figure['id'][3:]}", [method], seeds)
            if sweep and sweep["key"] == ROBUSTNESS_SWEEP:
                robust.append(method)
            elif sweep:
                own = sweep_default(method, sweep["key"], profile)
                for value in sweep["values"]:
                    if value != own:
                        runs_step(f"Figure {figure['id'][3:]}: {sweep['key']} = {value}", [method], sweep_seeds,
                                  sets={sweep["key"]: value})  # fmt: skip
    def unscored(method: str) -> list[int]:
        return [s for s in seeds if (DATASET, method, s, robustness.MEASURE) not in done]

    for todo, group in by_missing_seeds(robust, unscored).items():
        argv = ["robustness", "--method", ",".join(group), "--profile", profile, "--seeds", ",".join(map(str, todo))]
        steps.append(Step("Figure 4 (robustness)", argv,
                          {(DATASET, m, s, robustness.MEASURE) for m in group for s in todo}))  # fmt: skip

    for dataset in report.BENCHMARKS:  # the blind section and the claims on the real annotations
        runs_step(f"the blind rows on {dataset}", report.blind_methods(), seeds, dataset=dataset)

    steps.append(Step("the report", ["report", "--out", out, "--profile", profile]))
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="small", choices=cfg.PROFILES)
    p.add_argument("--seeds", default="0,1,2", help="the seeds of every table row and figure series (default 0,1,2)")
    p.add_argument("--sweep-seeds", default=None, help="the seeds of Figure 9's swept values (default: --seeds)")
    p.add_argument("--out", default="reports/examples/synth-small", help="the report's folder")
    p.add_argument("--jobs", type=int, default=1, help="passed to each bench run (worker processes)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    steps = plan(args.profile, seeds, parse_seeds(args.sweep_seeds) if args.sweep_seeds else seeds, args.out,
                 args.jobs)  # fmt: skip
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.why}: {step.shown()}", flush=True)
        if args.dry_run:
            continue
        code = subprocess.run(step.command()).returncode
        if code != 0:
            print(f"example_report: step {i} ended {code}; run this script again to go on from it", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
