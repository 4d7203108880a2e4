"""``bench claims``: which of the paper's claims hold on the runs in the tracking store.

The claims are data (``tables/claims.toml``, schema in ``tables/README.md``): each quotes the paper, names where it
stands (section, table or figure) and the comparison it implies: method ``a`` against method ``b`` on one metric of
a test split, for every pair of ``a x b`` (or the listed ``pairs``), with a ``relation``:

- ``greater`` / ``less``: holds when the 95 % interval of the paired difference A - B lies wholly above (below) 0,
  fails when it lies wholly on the other side, inconclusive when it contains 0;
- ``equivalent`` (the paper's "no significant effect", "comparable"): holds when the interval lies inside
  ``[-margin, +margin]`` points, fails when it lies wholly outside (beyond ``+margin`` or below ``-margin``);
- ``noninferior`` ("comparable even better"): holds when the interval's lower end is above ``-margin``, fails
  when its upper end is below ``-margin``.

Each pair is decided by :func:`bench.compare.compare`, the paired bootstrap over test queries with seeds kept
paired that ``bench compare`` prints (nothing is re-implemented here); a pair whose runs are missing is
``not-run``. A claim over several pairs is decided from the pairs' verdicts by its ``quantifier``, treating
``not-run`` pairs as unknown: ``every`` holds only if each pair holds and fails if one fails; ``majority``
("generally") holds if more than half of the pairs hold and fails if half or more fail. Whatever the unknown pairs
could turn out to be, a decided verdict would not change; otherwise the claim is ``not-run`` (some runs missing)
or ``inconclusive``.

The latency claim (``metric = "latency_s"``) pairs the newest latency run of each system (``scripts/
bench_latency.py``, param ``measure = latency``) by query on its per-query seconds (``latency/seconds.json``) and
bootstraps the difference with the same :func:`bench.stats.paired_bootstrap`.

On the real annotations (``activitynet-captions``, ``activitynet-cd``: annotations only, so blind rows alone
run) a pair of a learned method and a blind one is checked as **the paper's number against our measured blind
row**: the learned side is the constant the paper prints in the claim's table, the interval that of the blind row's
mean over its test queries (the same bootstrap, the constant on every query). Such lines say so. Claims with no
blind side cannot be decided there and are left out, with their count.

Beside the measured verdict every claim shows what the paper's own numbers say (the point differences of the
claim's table, no interval): a claim the paper's table does not support is worth knowing before any run.
Claims marked ``unchecked`` (training curves, sweeps, pictures) are listed with the reason and never decided.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import compare, stats, tables, tracking
from bench.data.captions import SOURCES

CLAIMS_PATH = tables.TABLES_DIR / "claims.toml"
FIGURES_PATH = tables.TABLES_DIR / "figures.toml"
RELATIONS = ("greater", "less", "equivalent", "noninferior")
QUANTIFIERS = ("every", "majority")
ORIGINS = ("paper", "suite")
VERDICTS = ("holds", "fails", "inconclusive", "not-run")
UNCHECKED = "not checked"
LATENCY_METRIC = "latency_s"
LATENCY_ARTIFACT = "latency/seconds.json"
_SYMBOL = {"greater": ">", "less": "<", "equivalent": "≈", "noninferior": "≥≈"}
_KEYS = {
    "id", "origin", "source", "quote", "table", "figure", "a", "b", "pairs", "relation", "quantifier", "metric",
    "margin", "note", "unchecked",
}  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """One claim of ``claims.toml``; ``pairs`` are the (A, B) comparisons it implies (empty when ``unchecked``)."""

    id: str
    origin: str
    source: str
    quote: str
    pairs: tuple[tuple[str, str], ...] = ()
    relation: str = "greater"
    quantifier: str = "every"
    metric: str = ""
    margin: float | None = None  # points, for equivalent / noninferior
    table: int | None = None
    figure: str | None = None
    note: str = ""
    unchecked: str = ""

    @property
    def methods(self) -> list[str]:
        """The registry names the pairs compare (``sil@all-high`` is SIL's runs on augmented speech: ``sil``)."""
        return list(dict.fromkeys(compare.split_side(m)[0] for pair in self.pairs for m in pair))

    def statement(self) -> str:
        """The comparison in one line, e.g. ``sil > asr-wslln, asr-scn on R@1 IoU=0.5 (every pair)``."""
        if self.unchecked:
            return UNCHECKED
        label = tables.METRIC_LABELS.get(self.metric, self.metric)
        left = list(dict.fromkeys(a for a, _ in self.pairs))
        right = list(dict.fromkeys(b for _, b in self.pairs))
        if len(left) * len(right) == len(self.pairs):
            text = f"{', '.join(left)} {_SYMBOL[self.relation]} {', '.join(right)}"
        else:
            text = "; ".join(f"{a} {_SYMBOL[self.relation]} {b}" for a, b in self.pairs)
        margin = "" if self.margin is None else f", margin {self.margin:g} point{'s' * (self.margin != 1)}"
        many = f" ({self.quantifier} pair)" if len(self.pairs) > 1 else ""
        return f"{text} on {label}{margin}{many}"


def load_claims(path: Path = CLAIMS_PATH) -> list[Claim]:
    """Parse and check ``claims.toml``; an error names the file, the claim and the fix."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the paper's claims ship with the suite in tables/")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    entries = raw.get("claims")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[claims]] entries; see tables/README.md")
    figures = {f["id"] for f in tomllib.loads(FIGURES_PATH.read_text())["figures"]}
    claims = [_parse(entry, path, figures) for entry in entries]
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate claim ids {duplicates}")
    return claims


def _parse(entry: dict, path: Path, figures: set[str]) -> Claim:
    name = entry.get("id", "?")

    def bad(why: str) -> ValueError:
        return ValueError(f"{path}: claim {name!r}: {why}; see tables/README.md (claims.toml)")

    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise bad(f"unknown key(s) {unknown}")
    for key in ("id", "origin", "source", "quote"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise bad(f"needs a non-empty string {key!r}")
    if entry["origin"] not in ORIGINS:
        raise bad(f"origin {entry['origin']!r} is not one of {ORIGINS}")
    table, figure = entry.get("table"), entry.get("figure")
    if table is not None and table not in tables.TABLE_NUMBERS:
        raise bad(f"table {table!r} is not one of the paper's tables 1-11")
    if figure is not None and figure not in figures:
        raise bad(f"figure {figure!r} is not in {FIGURES_PATH.name} ({', '.join(sorted(figures))})")
    unchecked = entry.get("unchecked", "")
    comparison = {"a", "b", "pairs", "relation", "quantifier", "metric", "margin"} & set(entry)
    if unchecked:
        if comparison:
            raise bad(f"an unchecked claim takes no comparison, but has {sorted(comparison)}")
        return Claim(entry["id"], entry["origin"], entry["source"], entry["quote"], table=table, figure=figure,
                     note=entry.get("note", ""), unchecked=unchecked)  # fmt: skip
    if "pairs" in entry:
        if {"a", "b"} & set(entry):
            raise bad("give either pairs or a and b, not both")
        pairs = entry["pairs"]
        if not isinstance(pairs, list) or not pairs or any(not _names(p) or len(p) != 2 for p in pairs):
            raise bad("pairs must be a non-empty list of [method A, method B]")
        pairs = [tuple(p) for p in pairs]
    else:
        a, b = entry.get("a"), entry.get("b")
        if not (_names(a) and _names(b)):
            raise bad("needs a and b (lists of method names) or pairs, or unchecked = 'why'")
        pairs = [(x, y) for x in a for y in b]
    if any(x == y for x, y in pairs):
        raise bad("a method is compared with itself")
    for side in {m for pair in pairs for m in pair}:
        try:
            compare.split_side(side)
        except ValueError as err:
            raise bad(str(err)) from None
    relation = entry.get("relation")
    if relation not in RELATIONS:
        raise bad(f"relation {relation!r} is not one of {RELATIONS}")
    quantifier = entry.get("quantifier", "every")
    if quantifier not in QUANTIFIERS:
        raise bad(f"quantifier {quantifier!r} is not one of {QUANTIFIERS}")
    metric = entry.get("metric")
    if metric != LATENCY_METRIC and metric not in compare.METRICS:
        raise bad(f"metric {metric!r} is not one of {', '.join((*compare.METRICS, LATENCY_METRIC))}")
    if metric == LATENCY_METRIC and relation not in ("greater", "less"):
        raise bad("a latency claim is greater or less")
    margin = entry.get("margin")
    needs_margin = relation in ("equivalent", "noninferior")
    if needs_margin != (margin is not None) or (margin is not None and not float(margin) > 0):
        raise bad(f"relation {relation} {'needs a positive' if needs_margin else 'takes no'} margin (points)")
    return Claim(
        id=entry["id"],
        origin=entry["origin"],
        source=entry["source"],
        quote=entry["quote"],
        pairs=tuple(pairs),
        relation=relation,
        quantifier=quantifier,
        metric=metric,
        margin=None if margin is None else float(margin),
        table=table,
        figure=figure,
        note=entry.get("note", ""),
    )


def _names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


# ----------------------------------------------------------------------------------------------------
# Deciding


def decide(relation: str, low: float, high: float, margin: float | None = None) -> str:
    """The verdict of one pair from the interval ``[low, high]`` of A - B (points, or seconds for latency)."""
    m = margin or 0.0
    if relation == "greater":
        return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"
    if relation == "less":
        return "holds" if high < 0 else "fails" if low > 0 else "inconclusive"
    if relation == "equivalent":
        return "holds" if -m < low and high < m else "fails" if low > m or high < -m else "inconclusive"
    if relation == "noninferior":
        return "holds" if low > -m else "fails" if high < -m else "inconclusive"
    raise ValueError(f"unknown relation {relation!r}")


def combine(verdicts: Sequence[str], quantifier: str = "every") -> str:
    """A claim's verdict from its pairs' (module docstring): ``not-run`` pairs are unknowns that could go either
    way, so a verdict is given only when every outcome of them would give it."""
    n = len(verdicts)
    holds, fails, unknown = verdicts.count("holds"), verdicts.count("fails"), verdicts.count("not-run")
    if quantifier == "every":
        if fails:
            return "fails"
        if holds == n:
            return "holds"
    elif quantifier == "majority":
        if holds > n / 2:
            return "holds"
        if fails >= n / 2:
            return "fails"
        # could the unknown pairs still decide it? if not, the claim is open on the runs that exist
    else:
        raise ValueError(f"unknown quantifier {quantifier!r}")
    return "not-run" if unknown else "inconclusive"


@dataclass(frozen=True)
class PairResult:
    """One comparison A - B: the verdict, the difference and its interval in display units, n and the runs."""

    a: str
    b: str
    verdict: str
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    n_seed_pairs: int = 0
    n_queries: int = 0
    runs_a: tuple[str, ...] = ()
    runs_b: tuple[str, ...] = ()
    basis: str = "measured"  # or: the paper's number against our measured blind row
    reason: str = ""  # why not-run
    paper_difference: float | None = None  # on the paper's own numbers (the claim's table)


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: str
    pairs: list[PairResult] = field(default_factory=list)
    paper_verdict: str = ""  # holds / fails on the paper's numbers, "" when the paper prints none

    @property
    def counts(self) -> str:
        """``7 holds, 3 not-run`` over the pairs."""
        verdicts = [p.verdict for p in self.pairs]
        return ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if verdicts.count(v))


@dataclass(frozen=True)
class Context:
    """Where the claims are checked."""

    dataset: str
    profile: str
    split: str
    runs: object  # the store's FINISHED runs of dataset/profile (a DataFrame)
    resamples: int = stats.RESAMPLES

    @property
    def real(self) -> bool:
        return tables.annotations_only(self.dataset)


def unit(metric: str) -> tuple[float, str]:
    """The factor from logged values to displayed ones and its unit: percent points, or milliseconds."""
    return (1000.0, "ms") if metric == LATENCY_METRIC else (100.0, "points")


def paper_number(table: int | None, method: str, metric: str) -> float | None:
    """What the paper prints for ``method`` in ``table`` (the first row naming it), in the table's units."""
    if table is None:
        return None
    for row in tables.load_table(table).rows:
        if row.method == method and metric in row.paper:
            return row.paper[metric]
    return None


def _paper_difference(claim: Claim, a: str, b: str) -> float | None:
    pa, pb = paper_number(claim.table, a, claim.metric), paper_number(claim.table, b, claim.metric)
    if pa is None or pb is None:
        return None
    factor = 1000.0 if claim.metric == LATENCY_METRIC else 1.0  # latency is printed in seconds, shown in ms
    return (pa - pb) * factor


def _is_blind(method: str) -> bool:
    from methods import registry

    try:
        return registry.get(method).blind
    except KeyError:
        return False


def decidable_on_annotations(claim: Claim) -> bool:
    """Whether blind rows can decide ``claim`` on annotations alone: each pair has exactly one blind side."""
    return bool(claim.pairs) and all(_is_blind(a) != _is_blind(b) for a, b in claim.pairs)


def evaluate(claim: Claim, ctx: Context) -> ClaimResult:
    """Decide ``claim`` on ``ctx``'s runs (module docstring)."""
    if claim.unchecked:
        return ClaimResult(claim, UNCHECKED)
    results = []
    for a, b in claim.pairs:
        paper = _paper_difference(claim, a, b)
        if ctx.real:
            result = _against_paper(claim, a, b, ctx)
        elif claim.metric == LATENCY_METRIC:
            result = _latency(claim, a, b, ctx)
        else:
            result = _measured(claim, a, b, ctx)
        results.append(dataclasses.replace(result, paper_difference=paper))
    verdict = combine([r.verdict for r in results], claim.quantifier)
    paper = [r.paper_difference for r in results]
    paper_verdict = ""
    if not ctx.real and all(p is not None for p in paper):
        paper_verdict = combine([decide(claim.relation, p, p, claim.margin) for p in paper], claim.quantifier)
    return ClaimResult(claim, verdict, results, paper_verdict)


def _from_interval(claim: Claim, a: str, b: str, d: stats.PairedDifference, **extra) -> PairResult:
    factor, _ = unit(claim.metric)
    low, high = d.low * factor, d.high * factor
    return PairResult(a, b, decide(claim.relation, low, high, claim.margin), d.mean * factor, low, high, d.n_pairs,
                      d.n_queries, **extra)  # fmt: skip


def _measured(claim: Claim, a: str, b: str, ctx: Context) -> PairResult:
    try:
        c = compare.compare(a, b, dataset=ctx.dataset, profile=ctx.profile, split=ctx.split, metric=claim.metric,
                            resamples=ctx.resamples, runs=ctx.runs)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        return PairResult(a, b, "not-run", reason=str(err))
    return _from_interval(claim, a, b, c.difference, runs_a=tuple(r.run_id for r in c.a.runs),
                          runs_b=tuple(r.run_id for r in c.b.runs))  # fmt: skip


def _against_paper(claim: Claim, a: str, b: str, ctx: Context) -> PairResult:
    """The paper's number of the learned side against the per-query values of our blind side."""
    blind, learned = (a, b) if _is_blind(a) else (b, a)
    number = paper_number(claim.table, learned, claim.metric)
    if number is None:
        where = f"Table {claim.table}" if claim.table else "the claim's table"
        return PairResult(a, b, "not-run", reason=f"{where} prints no {claim.metric} for {learned}")
    found = compare.newest_runs(ctx.runs, blind)
    if not found:
        return PairResult(a, b, "not-run", reason=f"no finished run of {blind!r}; `bench run --method {blind} "
                          f"--dataset {ctx.dataset} --profile {ctx.profile}` makes it")  # fmt: skip
    try:
        values = compare.scores(list(found.values()), ctx.split, claim.metric)
    except FileNotFoundError as err:
        return PairResult(a, b, "not-run", reason=str(err))
    qids = sorted(set.intersection(*(set(v) for v in values.values())))
    measured = np.array([[v[q] for q in qids] for v in values.values()], dtype=np.float64)
    constant = np.full_like(measured, number / 100.0)
    pair = (constant, measured) if learned == a else (measured, constant)
    d = stats.paired_bootstrap(*pair, resamples=ctx.resamples)
    on = tables.load_table(claim.table).paper_dataset
    basis = f"the paper's {learned} (Table {claim.table}, on {on}) vs our measured {blind}"
    ids = tuple(r.run_id for r in found.values())
    return _from_interval(claim, a, b, d, basis=basis, **({"runs_b": ids} if learned == a else {"runs_a": ids}))


def latency_runs(runs, method: str) -> str | None:
    """The newest FINISHED latency run (``measure = latency``) of ``method``, or None."""
    if runs is None or len(runs) == 0 or "params.measure" not in runs:
        return None
    mine = runs[(runs["params.method"] == method) & (runs["params.measure"] == "latency")]
    if len(mine) == 0:
        return None
    return str(mine.sort_values("start_time", ascending=False).iloc[0]["run_id"])


def _seconds(run_id: str, method: str, into: Path) -> dict[str, float]:
    path = compare.download(compare.Run(method, 0, run_id), LATENCY_ARTIFACT, into)
    data = json.loads(path.read_text())
    return dict(zip(data["queries"], map(float, data["seconds"]), strict=True))


def _latency(claim: Claim, a: str, b: str, ctx: Context) -> PairResult:
    ids = {m: latency_runs(ctx.runs, m) for m in (a, b)}
    missing = [m for m, i in ids.items() if i is None]
    if missing:
        return PairResult(a, b, "not-run", reason=f"no latency run of {', '.join(missing)}; "
                          f"`python scripts/bench_latency.py --profile {ctx.profile}` makes them")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp:
        try:
            seconds = {m: _seconds(ids[m], m, Path(tmp) / m) for m in (a, b)}
        except FileNotFoundError as err:
            return PairResult(a, b, "not-run", reason=str(err))
    qids = sorted(set(seconds[a]) & set(seconds[b]))
    if not qids:
        return PairResult(a, b, "not-run", reason=f"the latency runs of {a} and {b} share no query")
    d = stats.paired_bootstrap(np.array([seconds[a][q] for q in qids]), np.array([seconds[b][q] for q in qids]),
                               resamples=ctx.resamples)  # fmt: skip
    return _from_interval(claim, a, b, d, runs_a=(ids[a],), runs_b=(ids[b],), basis="measured (latency runs)")


def check(
    dataset: str = "synth",
    profile: str = "small",
    split: str = tables.DEFAULT_SPLIT,
    *,
    claims: Sequence[Claim] | None = None,
    runs=None,
    resamples: int = stats.RESAMPLES,
) -> tuple[list[ClaimResult], int]:
    """Every claim decided on ``dataset``/``profile``/``split``; on the real annotations only those blind rows can
    decide. Returns the results and how many claims were left out as undecidable there."""
    tables.test_split(split)
    claims = load_claims() if claims is None else list(claims)
    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    ctx = Context(dataset, profile, split, runs, resamples)
    chosen = [c for c in claims if decidable_on_annotations(c)] if ctx.real else claims
    return [evaluate(c, ctx) for c in chosen], len(claims) - len(chosen)


# ----------------------------------------------------------------------------------------------------
# Writing


def _num(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(i[:8] for i in ids)


def to_markdown(results: Sequence[ClaimResult], dataset: str, profile: str, split: str, left_out: int = 0) -> str:
    """The claims check as Markdown: a summary table, then each claim with its pairs."""
    real = tables.annotations_only(dataset)
    out = [
        f"Claims of SIL (ACL 2023) checked on dataset **{dataset}**, profile **{profile}**, test split "
        f"**{tables.split_description(split, dataset)}**, from the FINISHED runs in the tracking store.",
        "",
        "Each comparison A − B is the paired bootstrap of `bench compare`: per-query values recomputed from each run's"
        f" predictions with the one evaluator, seeds kept paired, {stats.RESAMPLES:,} resamples of the queries, 95 %"
        " interval, in percent points (latency: milliseconds). `holds`: the interval lies on the claimed side"
        " (inside the margin for ≈, above −margin for ≥≈); `fails`: wholly on the other side; `inconclusive`: it"
        " straddles; `not-run`: runs are missing. A claim over several pairs holds only if its quantifier holds"
        " whatever its not-run pairs turn out to be. 'Paper' is the verdict on the paper's own printed numbers"
        " (no interval).",
        "",
    ]
    if dataset == "synth":
        out += ["The synthetic benchmark is not ActivityNet Speech: a verdict here says what this suite's methods do"
                " on it, not whether the paper's numbers reproduce.", ""]  # fmt: skip
    if real:
        out += [
            f"{dataset} holds annotations only, so only the claims with a blind side are decided here, as the"
            " paper's number (ActivityNet Speech) against our measured blind row: the interval is the blind row's"
            f" over its test queries. {left_out} claims need video and speech and are left out."
            f" {SOURCES[dataset].versus_paper if dataset in SOURCES else ''}",
            "",
        ]
    out += ["| Claim | Where | Comparison | Verdict | Pairs | Paper |", "|---|---|---|---|---|---|"]
    for r in results:
        c = r.claim
        where = c.source + (f" (Table {c.table})" if c.table else f" ({c.figure})" if c.figure else "")
        out.append(f"| {c.id} | {where} | {c.statement()} | **{r.verdict}** | {r.counts or '–'} | "
                   f"{r.paper_verdict or '–'} |")  # fmt: skip
    for r in results:
        c = r.claim
        out += ["", f"### {c.id}: {r.verdict}", "", f"{c.source}: “{c.quote}”" + (f" {c.note}" if c.note else "")]
        if c.unchecked:
            out += ["", f"Not checked: {c.unchecked}."]
            continue
        _, units = unit(c.metric)
        out += [
            "",
            f"| A | B | verdict | A − B ({units}) | 95 % interval | seed pairs | queries | runs A | runs B "
            "| paper A − B | basis |",
            "|---|---|---|---:|---|---:|---:|---|---|---:|---|",
        ]
        for p in r.pairs:
            paper_side = "paper" if p.basis.startswith("the paper's") else "–"
            runs_a, runs_b = _ids(p.runs_a) if p.runs_a else paper_side, _ids(p.runs_b) if p.runs_b else paper_side
            interval = f"[{_num(p.low)}, {_num(p.high)}]" if p.low is not None else "–"
            basis = p.basis if p.verdict != "not-run" else f"not run: {p.reason}"
            out.append(
                f"| {p.a} | {p.b} | {p.verdict} | {_num(p.difference)} | {interval} | {p.n_seed_pairs or '–'} | "
                f"{p.n_queries or '–'} | {runs_a} | {runs_b} | {_num(p.paper_difference)} | "
                f"{basis.replace('|', '/')} |"
            )
    return "\n".join(out) + "\n"
