"""``bench report``: every paper table regenerated from tracked runs, as Markdown and LaTeX files.

Reads runs, never trains. Writes ``tableNN.md`` and ``tableNN.tex`` per table and an ``index.md`` that
names the dataset, profile, test split (``--split val_2|test-ood``) and commit the report was made from.
Regenerating a report rewrites these derived files; the runs they come from are never touched.

It also writes ``blind.md``: every blind method and variant (``random``, ``random-continuous``, ``prior`` and its
per-metric variants, ``whole-video``) on synth and on the real annotations (ActivityNet Captions and ActivityNet-CD)
side by side, all at the report's profile, from tracked runs only; and the moment-length histogram
``moment_lengths.png`` (with its counts in ``moment_lengths.csv``) of synth against the real splits, from the
annotation files (:mod:`bench.moments`). Nothing in it is typed by hand.

And ``figures.md``: Figures 4, 5 (a), 5 (b) and 9, the training curves of Table 1's rows and a qualitative timeline
of a few test queries, each a PNG and a PDF with its caption and its data as CSV (:mod:`bench.figures`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench import figures, moments, tables, tracking
from bench.data.captions import CD

BLIND_FILE = "blind.md"
CLAIMS_FILE = "claims.md"
HISTOGRAM_FILE = "moment_lengths.png"
FIGURES_FILE = "figures.md"
BLIND_METRICS = ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "dR1@0.5", "dR1@0.7", "mIoU", "centre_in", "pred_len")
BENCHMARKS = ("synth", *tables.REAL_DATASETS)


def write_report(out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT) -> list[Path]:
    """Every table of ``dataset``/``profile`` on test split ``split`` (``val_2`` or ``test-ood``) into ``out``."""
    tables.test_split(split)
    out.mkdir(parents=True, exist_ok=True)
    runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    git = tracking.git_state()
    written: list[Path] = []
    index = [
        "# wsvg-bench report",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `bench report` from the tracking store "
        f"`{store_label()}`; source commit {git['commit'][:12]}"
        f"{' (uncommitted changes)' if git['dirty'] == 'true' else ''}.",
        f"Runs shown: dataset **{dataset}**, profile **{profile}**, test split **{split}**, FINISHED runs only "
        f"({len(runs)} in the store).",
        "",
    ]
    if dataset == "synth":
        index += [
            "Numbers from the synthetic benchmark are not a reproduction of the paper's ActivityNet Speech "
            "numbers; the paper's numbers are shown beside them for orientation only.",
            "",
        ]
    for table in tables.load_all():
        rendered = tables.build(table, dataset, profile, runs, split)
        md = out / f"table{table.number:02d}.md"
        tex = out / f"table{table.number:02d}.tex"
        md.write_text(f"### Table {table.number}: {table.title}\n\n" + tables.to_markdown(rendered))
        tex.write_text(tables.to_latex(rendered, label=f"tab:sil-{table.number}"))
        written += [md, tex]
        index.append(f"- [Table {table.number}: {table.title}]({md.name}) ([LaTeX]({tex.name}))")
    written.append(write_claims(out, dataset, profile, split, runs))
    index.append(f"- [Paper-claims check: which of the paper's claims hold on these runs]({CLAIMS_FILE})")
    blind_files = write_blind_section(out, profile, split=split)
    written += blind_files
    index.append(f"- [Blind rows on every benchmark, and the moment-length histogram]({BLIND_FILE})")
    written += write_figures_section(out, dataset, profile, split, runs)
    index.append(f"- [Figures 4, 5 and 9, the training curves and a qualitative timeline]({FIGURES_FILE})")
    (out / "index.md").write_text("\n".join(index) + "\n")
    written.append(out / "index.md")
    return written


def store_label() -> str:
    """The tracking store as the report names it: a local SQLite file under the working directory by its relative
    path (a committed example report then names no machine's folders), anything else by its URI."""
    uri = tracking.tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri.removeprefix(prefix))
        if path.is_relative_to(Path.cwd()):
            return f"{path.relative_to(Path.cwd())} (SQLite, under the working directory)"
    return uri


def write_figures_section(out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT,
                          runs=None) -> list[Path]:  # fmt: skip
    """``figures.md``: every figure :mod:`bench.figures` can draw from the runs (PNG, PDF and CSV each), with its
    caption, and one line per figure that is not drawn saying what to run for it."""
    made, absent = figures.write_figures(out, dataset, profile, split, runs)
    text = ["# Figures", ""]
    for f in made:
        png, pdf, csv = f.paths
        text += [f"## {f.title}", "", f"![{f.title}]({png.name})", "", f.caption, "",
                 f"[PDF]({pdf.name}), [data (CSV)]({csv.name})", ""]  # fmt: skip
    text += [f"Not drawn: {reason}" for reason in absent]
    path = out / FIGURES_FILE
    path.write_text("\n".join(text) + "\n")
    return [p for f in made for p in f.paths] + [path]


def write_claims(out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT, runs=None) -> Path:
    """``claims.md`` (:mod:`bench.claims`): every claim on the report's dataset, profile and split; the claims the
    paper never tested also on the other test split; and on each real annotations dataset at the same profile, the
    claims blind rows decide against the paper's numbers (on its val_2, and on ActivityNet-CD's test-ood too)."""
    from bench import claims

    shipped = claims.load_claims()
    suite = [c for c in shipped if c.origin == "suite"]
    other = next(s for s in tables.TEST_SPLITS if s != split)
    sections = [(dataset, split, shipped, runs), (dataset, other, suite, runs)]
    for real in tables.REAL_DATASETS:
        if real != dataset:
            sections.append((real, tables.DEFAULT_SPLIT, shipped, None))
    sections.append((CD.name, "test-ood", suite, None))
    text = ["# Paper-claims check", ""]
    for name, on, chosen, found in _unique(sections):
        results, left_out = claims.check(name, profile, on, claims=chosen, runs=found)
        which = "every claim" if chosen is shipped else "the claims the paper never tested"
        body = claims.to_markdown(results, name, profile, on, left_out)
        text += [f"## {name}/{profile}, test split {on}: {which}", "", body]
    path = out / CLAIMS_FILE
    path.write_text("\n".join(text))
    return path


def _unique(sections: list) -> list:
    """Each (dataset, split) once, the first (the fuller claim set) kept."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for section in sections:
        if section[:2] not in seen:
            seen.add(section[:2])
            kept.append(section)
    return kept


def blind_methods() -> list[str]:
    """Every runnable blind method and variant, in registry order (the order ``methods/blind.py`` gives)."""
    from methods import registry

    return [n for n, s in registry.all_methods().items() if s.implemented and s.blind]


def blind_rows(
    profile: str, runs_by_dataset: dict[str, object] | None = None, split: str = tables.DEFAULT_SPLIT
) -> tables.Rendered:
    """The blind methods on every benchmark: one line per (method, benchmark), mean ± std over seeds of the newest
    FINISHED run per seed on test split ``split``, as the tables aggregate them; a prior's span comes from its runs'
    params."""
    if runs_by_dataset is None:
        runs_by_dataset = {d: tracking.finished_runs({"dataset": d, "profile": profile}) for d in BENCHMARKS}
    header = [
        "Method",
        f"Benchmark (test: {split})",
        "Prior's span",
        "",
        *map(tables.METRIC_LABELS.get, BLIND_METRICS),
    ]
    lines: list[list[str]] = []
    provenance: list[str] = []
    hashes: set[str] = set()
    for method in blind_methods():
        for dataset in BENCHMARKS:
            runs = runs_by_dataset.get(dataset)
            repro = tables.collect(runs, method, split)
            label = f"{dataset}/{profile}" if dataset == "synth" else f"{dataset} (real)"
            if repro is None:
                lines.append([method, label, "", "ours", *["missing"] * len(BLIND_METRICS)])
                continue
            hashes.update(f"{dataset} {h}" for h in repro.dataset_hashes)
            provenance.append(f"{method} on {dataset}: runs {', '.join(repro.run_ids)}")
            cells = [tables.fmt_repro(m, repro) for m in BLIND_METRICS]
            lines.append([method, label, _prior_span(runs, repro.run_ids), f"ours (n={repro.n})", *cells])
    caption = (
        f"Blind rows (no video, no query) on every benchmark, profile {profile}: mean ± sample std over the n seeds"
        f" of FINISHED runs (one seed: its value alone), test split {tables.test_split(split).description}, in"
        " percent; dR@1 is the discounted recall of Yuan et al. 2021. synth is the embedded synthetic benchmark;"
        " activitynet-captions is the real ActivityNet Captions annotations and activitynet-cd the real"
        f" ActivityNet-CD annotations, on which test/ is {CD.labels['val_2']} ({CD.files['val_2']}) and test_ood/ is"
        f" {CD.labels['test_ood']} ({CD.files['test_ood']}); both give real-data rows (the paper's numbers are in the"
        " tables, not here). 'prior' is tuned for R@1 IoU=0.5, 'prior-<metric>' for that metric, each on train only"
        f" (on activitynet-cd, which has no training split, on {CD.labels['train']}); its span is [start, end] as"
        " fractions of the duration. 'random' ranks the 153 2D-TAN candidates (N = 64), "
        "'random-continuous' draws continuous spans. 'missing' means no finished run."
        + (f" Content hashes: {'; '.join(sorted(hashes))}." if hashes else "")
    )
    align = "llll" + "r" * len(BLIND_METRICS)
    return tables.Rendered(header, lines, caption, provenance, align)


def _prior_span(runs, run_ids: list[str]) -> str:
    """``[a, b]`` from the prior runs' params (one span unless seeds were run with different configs); empty for
    methods that choose no span."""
    if "params.prior_start" not in runs:
        return ""
    mine = runs[runs["run_id"].isin(run_ids)]
    spans = {
        f"[{float(a):.2f}, {float(b):.2f}]"
        for a, b in zip(mine["params.prior_start"], mine["params.prior_end"], strict=True)
        if a is not None and str(a) != "nan"
    }
    return " / ".join(sorted(spans))


def write_blind_section(
    out: Path, profile: str, runs_by_dataset: dict[str, object] | None = None, split: str = tables.DEFAULT_SPLIT
) -> list[Path]:
    """``blind.md`` with the blind rows of every benchmark, and the moment-length histogram with its counts."""
    out.mkdir(parents=True, exist_ok=True)
    series, absent = moments.collect(profile)
    text = [
        "# Blind rows on every benchmark",
        "",
        tables.to_markdown(blind_rows(profile, runs_by_dataset, split)),
        "## Moment length (span / duration)",
        "",
    ]
    written: list[Path] = []
    if series:
        figure = out / HISTOGRAM_FILE
        git = tracking.git_state()
        caption = (
            f"Moment length (span / video duration) of every split's annotated moments: "
            f"{', '.join(dict.fromkeys(s.benchmark for s in series))}; the share of each split's moments per bin of "
            f"width {1 / moments.BINS:g}. Profile {profile}; read from the annotation files, so no seeds and no error "
            f"bars; commit {git['commit'][:7]}{'+dirty' if git['dirty'] == 'true' else ''}."
        )
        moments.plot_histogram(series, figure, caption=caption)
        written += [figure, figure.with_suffix(".pdf"), figure.with_suffix(".csv")]
        text += [
            f"![moment length histogram]({HISTOGRAM_FILE})",
            "",
            f"Bin counts (bins of width {1 / moments.BINS:g}): [{figure.with_suffix('.csv').name}]"
            f"({figure.with_suffix('.csv').name}). Read from the annotation files with the blind methods' reader "
            "(bad entries dropped and counted, as they are).",
            "",
        ]
        stats = moments.summary(series)
        text += [stats.to_markdown(index=False, floatfmt=".3f", intfmt=","), ""]
    text += [f"Not shown: {reason}" for reason in absent]
    path = out / BLIND_FILE
    path.write_text("\n".join(text) + "\n")
    return [*written, path]
