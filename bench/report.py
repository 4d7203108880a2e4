"""``bench report``: every paper table regenerated from tracked runs, as Markdown and LaTeX files.

Reads runs, never trains. Writes ``tableNN.md`` and ``tableNN.tex`` per table and an ``index.md`` that
names the dataset, profile and commit the report was made from. Regenerating a report rewrites these
derived files; the runs they come from are never touched.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench import tables, tracking


def write_report(out: Path, dataset: str, profile: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    git = tracking.git_state()
    written: list[Path] = []
    index = [
        "# wsvg-bench report",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `bench report` from the tracking store "
        f"`{tracking.tracking_uri()}`; source commit {git['commit'][:12]}"
        f"{' (uncommitted changes)' if git['dirty'] == 'true' else ''}.",
        f"Runs shown: dataset **{dataset}**, profile **{profile}**, FINISHED runs only ({len(runs)} in the store).",
        "",
    ]
    if dataset == "synth":
        index += [
            "Numbers from the synthetic benchmark are not a reproduction of the paper's ActivityNet Speech "
            "numbers; the paper's numbers are shown beside them for orientation only.",
            "",
        ]
    for table in tables.load_all():
        rendered = tables.build(table, dataset, profile, runs)
        md = out / f"table{table.number:02d}.md"
        tex = out / f"table{table.number:02d}.tex"
        md.write_text(f"### Table {table.number}: {table.title}\n\n" + tables.to_markdown(rendered))
        tex.write_text(tables.to_latex(rendered, label=f"tab:sil-{table.number}"))
        written += [md, tex]
        index.append(f"- [Table {table.number}: {table.title}]({md.name}) ([LaTeX]({tex.name}))")
    (out / "index.md").write_text("\n".join(index) + "\n")
    written.append(out / "index.md")
    return written
