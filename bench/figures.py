"""The paper's figures from logged runs, as ``bench report`` writes them: each a PNG and a PDF with its data as CSV.

Reads runs, never trains. Every figure names in its caption the dataset, profile, test split, seeds and commits it
was drawn from, and every point that averages seeds carries an error bar of ± one sample standard deviation over them
(n beside each point in the CSV; a point of one seed has no bar). A method's points are its runs of the profile's
default configuration (config hash), the newest per seed, except on Figure 9's sweeps. ``tables/figures.toml``
records what the paper's text says about each figure: it gives no plotted value for any of them, so each figure shows
ours alone and its caption says so.

- **Figure 4** (:func:`robustness`): test R@1 IoU=0.5 of each method against the augmentation level of Table 7, one
  panel per augmentation (time stretching, pitch shifting, noise, all three in turn), the clean point being the
  source runs' own test metrics (``bench robustness``, :mod:`bench.robustness`).
- **Figure 5 (a)** (:func:`semantic_objectives`): the three semantic-task variants' test metrics, grouped bars.
- **Figure 5 (b)** and the **training curves of a table's rows** (:func:`curves`): the grounding loss
  (``train/loss``, the epoch's mean) and val R@1 IoU=0.5 per epoch, from each run's MLflow history, mean ± std over
  seeds per epoch.
- **Figure 9 (a), (b)** (:func:`sweep`): SIL's test R@1 IoU=0.5 against the mask ratio and against T, from runs made
  with ``bench run --method sil --set asp.mask_ratio=0.15`` (or ``--set T=6``): a run counts for a value when its
  resolved configuration (the ``config/resolved.json`` artifact) is the profile's default but for the swept key.
- **Timeline** (:func:`timeline`): a few test queries, drawn with a fixed seed from the queries every shown method
  predicted (not chosen on results), each with its video's annotated moments, its ground truth and each method's
  top-1 span, from the runs' predictions artifacts.

The moment-length histogram is :func:`bench.moments.plot_histogram`, saved the same way (:mod:`bench.plots`).
"""

from __future__ import annotations

import math
import random
import tempfile
import textwrap
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench import config as cfg
from bench import stats, tables, tracking
from bench.plots import pyplot, save_figure

FIGURES_PATH = tables.TABLES_DIR / "figures.toml"
METRIC = "R1@0.5"
ROBUSTNESS = "robustness"  # the ``measure`` param of bench robustness's runs (bench.robustness.MEASURE)
KIND_TITLES = {"stretch": "time stretching", "pitch": "pitch shifting", "noise": "noise addition",
               "all": "all three in turn"}  # fmt: skip
LEVEL_ORDER = ("clean", "low", "medium", "high")
TIMELINE_METHODS = ("sil", "asr-rtbpn", "base")  # Figure 6's rows that run here (Base + VILT is planned), and Base
TIMELINE_QUERIES = 3
CURVE_KEYS = {"train/loss": "training loss (train/loss)", "val/R1_IoU0.5": "val R@1, IoU=0.5 (%)"}


@dataclass
class Figure:
    """One written figure: its file stem, title, caption, the plotted points and the files (PNG, PDF, CSV)."""

    name: str
    title: str
    caption: str
    data: pd.DataFrame
    paths: list[Path]


def paper_figure(fig_id: str) -> dict[str, Any]:
    """The entry of ``tables/figures.toml`` for ``fig4``, ``fig5a``, ...: what the paper's text says of the figure."""
    for entry in tomllib.loads(FIGURES_PATH.read_text())["figures"]:
        if entry["id"] == fig_id:
            return entry
    raise KeyError(f"{FIGURES_PATH.name} has no figure {fig_id!r}")


def paper_note(fig_id: str) -> str:
    """What the caption says of the paper's own values of ``fig_id``."""
    entry = paper_figure(fig_id)
    if any(s.get("y") for s in entry.get("series", [])):
        return f"The paper's values ({FIGURES_PATH.name}) are not plotted."
    return f"The paper's text gives no plotted values for this figure ({FIGURES_PATH.name}): only ours are shown."


def labels(fig_id: str) -> dict[str, str]:
    """Method -> the series name the paper's figure gives it."""
    return {s["method"]: s["label"] for s in paper_figure(fig_id).get("series", [])}


def accuracy_runs(runs: pd.DataFrame, method: str, own: bool = True) -> pd.DataFrame:
    """The training runs (no ``measure``: neither latency nor robustness) of ``method``: those of its own
    configuration (:func:`bench.tables.default_runs`, so that a sweep's ``--set`` runs never stand for the method),
    or with ``own=False`` every configuration (a sweep's figure reads each run's configuration itself)."""
    if runs is None or not len(runs) or "params.method" not in runs:
        return pd.DataFrame()
    mine = runs[runs["params.method"] == method]
    if "params.measure" in mine:
        mine = mine[mine["params.measure"].isna()]
    return tables.default_runs(mine) if own else mine


def newest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each seed, in seed order: what the tables aggregate."""
    if not len(runs):
        return runs
    newest = runs.sort_values("start_time", ascending=False).drop_duplicates("params.seed")
    return newest.sort_values("params.seed", key=lambda s: s.astype(int))


def metric_column(metric: str, split: str) -> str:
    return f"metrics.{tables.test_split(split).prefix}{tracking.mlflow_key(metric)}"


def point(runs: pd.DataFrame, column: str, **where: Any) -> dict[str, Any]:
    """Mean ± sample std (percent) of ``column`` over ``runs`` (one per seed), with n, the seeds and the run ids."""
    values = [100 * float(v) for v in runs[column]] if column in runs else []
    values = [v for v in values if not math.isnan(v)]
    mean, std = mean_std(values)
    return {**where, "mean": mean, "std": std, "n": len(values), "seeds": ",".join(map(str, runs["params.seed"])),
            "run_ids": ",".join(runs["run_id"])}  # fmt: skip


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (:func:`bench.stats.summarise`); NaN where undefined (no value; one seed has no std, and
    its error bar is not drawn), never a 0.0 that reads as a measured spread in the CSV."""
    if not values:
        return math.nan, math.nan
    summary = stats.summarise(values)
    return summary.mean, summary.std if summary.std is not None else math.nan


def caption(what: str, dataset: str, profile: str, split: str, used: pd.DataFrame, note: str) -> str:
    """The caption every figure carries: what it shows, then dataset, profile, split, seeds and commits."""
    seeds = sorted({int(s) for s in used["params.seed"]}) if len(used) else []
    commits = sorted(
        {str(c)[:7] + ("+dirty" if d == "true" else "") for c, d in zip(used.get("params.commit", []),
                                                                        used.get("params.dirty", []), strict=False)}
    )  # fmt: skip
    text = (
        f"{what} Dataset {dataset}, profile {profile}, test split {split}; seeds {', '.join(map(str, seeds)) or 'none'}"
        f"; commits {', '.join(commits) or 'unknown'}. Runs: the newest FINISHED one per seed, of each method's "
        f"default configuration unless said otherwise. Error bars: ± one sample standard deviation over seeds (n per "
        f"point in the CSV; one seed, no bar). {note}"
    )
    if dataset == "synth":
        text += " The synthetic benchmark's numbers are not a reproduction of the paper's."
    return text


def _write(fig: Any, out: Path, name: str, title: str, text: str, data: pd.DataFrame) -> Figure:
    paths = save_figure(fig, out / f"{name}.png", title, text)
    data.to_csv(out / f"{name}.csv", index=False)
    return Figure(name, title, text, data, [*paths, out / f"{name}.csv"])


# -- Figure 4 -----------------------------------------------------------------------------------------------------


def robustness(runs: pd.DataFrame, out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT,
               metric: str = METRIC) -> Figure | str:  # fmt: skip
    """Figure 4 from the store's robustness runs and their source runs; a string says why it is not drawn."""
    if runs is None or not len(runs) or "params.measure" not in runs:
        return "Figure 4: no robustness runs (`bench robustness --method sil,asr-rtbpn,sil-freq-only,sil-time-only`)"
    rob = tables.default_runs(runs[runs["params.measure"] == ROBUSTNESS])
    if not len(rob):
        return "Figure 4: no robustness runs (`bench robustness --method sil,asr-rtbpn,sil-freq-only,sil-time-only`)"
    column = metric_column(metric, split)
    names = labels("fig4")
    present = set(rob["params.method"])
    methods = [m for m in names if m in present] + sorted(present - set(names))
    rows, used = [], []
    for method in methods:
        mine = rob[rob["params.method"] == method]
        for (kind, level), group in mine.groupby(["params.augment.kind", "params.augment.level"]):
            chosen = newest_per_seed(group)
            used.append(chosen)
            rows.append(point(chosen, column, method=method, label=names.get(method, method), kind=kind, level=level))
        sources = newest_per_seed(runs[runs["run_id"].isin(set(mine["params.source_run"]))])
        used.append(sources)
        rows.append(point(sources, column, method=method, label=names.get(method, method), kind="clean",
                          level="clean"))  # fmt: skip
    data = pd.DataFrame(rows)
    kinds = [k for k in KIND_TITLES if k in set(data["kind"])]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds) + 0.6, 3.2), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for i, method in enumerate(methods):
            mine = data[(data["method"] == method) & data["kind"].isin(["clean", kind])]
            mine = mine.assign(x=mine["level"].map(LEVEL_ORDER.index)).sort_values("x")
            nudge = 0.06 * (i - (len(methods) - 1) / 2)  # side by side, so that equal points keep their own bars
            ax.errorbar(mine["x"] + nudge, mine["mean"], yerr=mine["std"], marker="o", capsize=3, color=f"C{i}",
                        label=names.get(method, method))  # fmt: skip
        ax.set_xticks(range(len(LEVEL_ORDER)), LEVEL_ORDER)
        ax.set_title(KIND_TITLES[kind], fontsize=9)
        ax.set_xlabel("augmentation level (Table 7)")
    axes[0][0].set_ylabel(f"{tables.METRIC_LABELS[metric]} on {split} (%)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("Figure 4: robustness to augmented test speech", fontsize=10)
    noise = "; ".join(sorted(set(rob.get("params.augment.noise", pd.Series(dtype=str)).dropna()))) or "not logged"
    what = (
        f"Figure 4 (§4.4): {tables.METRIC_LABELS[metric]} of each trained model on its test speech augmented at "
        "Table 7's levels (each augmentation alone, and all three in turn), without retraining; 'clean' is the "
        f"source runs' own test score. Noise: {noise}."
    )
    text = caption(what, dataset, profile, split, pd.concat(used), paper_note("fig4"))
    return _write(fig, out, "fig4_robustness", "Figure 4: robustness analysis", text, data)


# -- Figure 5 (a) -------------------------------------------------------------------------------------------------

SEMANTIC_METRICS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")


def semantic_objectives(runs: pd.DataFrame, out: Path, dataset: str, profile: str,
                        split: str = tables.DEFAULT_SPLIT) -> Figure | str:  # fmt: skip
    """Figure 5 (a): the semantic-task variants' test metrics as grouped bars with error bars over seeds."""
    names = labels("fig5a")
    rows, used = [], []
    for method, label in names.items():
        chosen = newest_per_seed(accuracy_runs(runs, method))
        if not len(chosen):
            continue
        used.append(chosen)
        rows += [point(chosen, metric_column(m, split), method=method, label=label, metric=m) for m in SEMANTIC_METRICS]
    if not rows:
        return f"Figure 5 (a): no runs of {', '.join(names)} (`bench run --method base+ldis` and so on)"
    data = pd.DataFrame(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    shown = list(dict.fromkeys(data["method"]))
    width = 0.8 / len(shown)
    for i, method in enumerate(shown):
        mine = data[data["method"] == method]
        x = [SEMANTIC_METRICS.index(m) + (i - (len(shown) - 1) / 2) * width for m in mine["metric"]]
        ax.bar(x, mine["mean"], width, yerr=mine["std"], capsize=3, color=f"C{i}", label=names[method])
    ax.set_xticks(range(len(SEMANTIC_METRICS)), [tables.METRIC_LABELS[m] for m in SEMANTIC_METRICS])
    ax.set_xlabel("metric")
    ax.set_ylabel(f"test score on {split} (%)")
    ax.legend(fontsize=7)
    ax.set_title("Figure 5 (a): effect of the semantic task", fontsize=10)
    what = ("Figure 5 (a) (§4.5.1): Base over encoders pre-trained with the distance losses of Dong et al. (L_dis-s + "
            "L_dis-w), with L_seq, and with L_seq + L_word (each with the CTC warm-up), no AVCL.")  # fmt: skip
    text = caption(what, dataset, profile, split, pd.concat(used), paper_note("fig5a"))
    return _write(fig, out, "fig5a_semantic", "Figure 5 (a): effect of the semantic task", text, data)


# -- Figure 5 (b) and a table's training curves -------------------------------------------------------------------


def curves(runs: pd.DataFrame, out: Path, dataset: str, profile: str, methods: dict[str, str], name: str,
           title: str, what: str, note: str, split: str = tables.DEFAULT_SPLIT) -> Figure | str:  # fmt: skip
    """The grounding loss and val R@1 per epoch of ``methods`` (method -> label), mean ± std over seeds per epoch,
    from the MLflow history of each seed's newest run. Methods without a per-epoch history (the blind rows) are
    left out."""
    rows, used = [], []
    for method, label in methods.items():
        chosen = newest_per_seed(accuracy_runs(runs, method))
        if not len(chosen):
            continue
        histories = {key: [tracking.metric_history(r, key) for r in chosen["run_id"]] for key in CURVE_KEYS}
        if not any(histories["train/loss"]):
            continue
        used.append(chosen)
        for key, per_run in histories.items():
            scale = 100.0 if key.startswith("val/") else 1.0
            for epoch in sorted({e for h in per_run for e in h}):
                values = [scale * h[epoch] for h in per_run if epoch in h]
                mean, std = mean_std(values)
                rows.append({"method": method, "label": label, "key": key, "epoch": epoch, "mean": mean, "std": std,
                             "n": len(values)})  # fmt: skip
    if not rows:
        return f"{title}: no run of {', '.join(methods)} with a per-epoch history"
    data = pd.DataFrame(rows)
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for ax, (key, ylabel) in zip(axes, CURVE_KEYS.items(), strict=True):
        for i, method in enumerate(dict.fromkeys(data["method"])):
            mine = data[(data["method"] == method) & (data["key"] == key)]
            ax.errorbar(mine["epoch"], mine["mean"], yerr=mine["std"], marker=".", capsize=2, color=f"C{i % 10}",
                        linestyle="-" if i < 10 else "--", label=methods[method])  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=10)
    text = caption(what, dataset, profile, split, pd.concat(used), note)
    return _write(fig, out, name, title, text, data)


def semantic_curves(runs: pd.DataFrame, out: Path, dataset: str, profile: str,
                    split: str = tables.DEFAULT_SPLIT) -> Figure | str:  # fmt: skip
    """Figure 5 (b): the grounding loss L_base per epoch of the semantic-task variants (no AVCL, so train/loss is
    L_base)."""
    what = ("Figure 5 (b) (§4.5.1): the grounding loss L_base (eq. 10 + eq. 11; these variants have no AVCL) and val "
            "R@1 per epoch of grounding training, over encoders with each semantic objective.")  # fmt: skip
    title = "Figure 5 (b): grounding loss during grounding training"
    return curves(runs, out, dataset, profile, labels("fig5b"), "fig5b_grounding_loss", title, what,
                  paper_note("fig5b"), split)  # fmt: skip


def table_curves(runs: pd.DataFrame, out: Path, dataset: str, profile: str, number: int = 1,
                 split: str = tables.DEFAULT_SPLIT) -> Figure | str:  # fmt: skip
    """The training curves of table ``number``'s rows that have runs."""
    table = tables.load_table(number)
    methods = {r.method: r.label for r in table.rows if r.method}
    what = (f"Training curves of Table {number}'s rows: each method's own training loss (train/loss, the epoch's mean;"
            " L_base for the Base family, with lambda3 L_AVCL for SIL) and val R@1 IoU=0.5 per epoch, from the MLflow "
            "history; the test split is not read.")  # fmt: skip
    title = f"Training curves of Table {number}'s rows"
    return curves(runs, out, dataset, profile, methods, f"curves_table{number:02d}", title, what,
                  "The paper plots no such curves.", split)  # fmt: skip


# -- Figure 9 -----------------------------------------------------------------------------------------------------


def _get(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def _without(config: dict[str, Any], key: str) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    if not rest:
        return {k: v for k, v in config.items() if k != head}
    return {**config, head: _without(config[head], rest)}


def sweep(runs: pd.DataFrame, out: Path, dataset: str, profile: str, fig_id: str,
          split: str = tables.DEFAULT_SPLIT, metric: str = METRIC) -> Figure | str:  # fmt: skip
    """Figure 9 (a) or (b): the metric against the swept key's value, one point per value found in the store."""
    from methods import registry

    entry = paper_figure(fig_id)
    series = entry["series"][0]
    method, key = series["method"], series["sweep"]["key"]
    default = cfg.to_dict(registry.get(method).config(profile))
    mine = accuracy_runs(runs, method, own=False)
    value_of: dict[str, Any] = {}
    for run_id in mine.get("run_id", []):
        try:
            resolved = tracking.load_run_json(run_id, "config/resolved.json")["config"]
        except Exception:  # noqa: BLE001 - a run without its resolved config cannot be placed on the sweep
            continue
        if _without(resolved, key) == _without(default, key):
            value_of[run_id] = _get(resolved, key)
    if not value_of:
        return f"{entry['title']}: no run of {method} that differs from the {profile} default only in {key}"
    mine = mine[mine["run_id"].isin(value_of)]
    mine = mine.assign(value=mine["run_id"].map(value_of))
    column = metric_column(metric, split)
    rows, used = [], []
    for value, group in mine.groupby("value"):
        chosen = newest_per_seed(group)
        used.append(chosen)
        rows.append(point(chosen, column, method=method, key=key, value=value,
                          default=value == _get(default, key)))  # fmt: skip
    data = pd.DataFrame(rows).sort_values("value")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.errorbar(data["value"], data["mean"], yerr=data["std"], marker="o", capsize=3, label=series["label"])
    title = f"Figure 9 ({fig_id[-1]}): {entry['title']}"
    ax.set_xlabel(textwrap.fill(entry["x_label"], 48), fontsize=8)
    ax.set_ylabel(f"{tables.METRIC_LABELS[metric]} on {split} (%)")
    ax.set_xticks(list(data["value"]))
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    what = (f"{title} (App. C.3): {method} with `--set {key}=VALUE`, every other field the {profile} "
            f"profile's default ({_get(default, key)} for {key}); the paper sweeps {entry['x']}.")  # fmt: skip
    text = caption(what, dataset, profile, split, pd.concat(used), paper_note(fig_id))
    return _write(fig, out, f"{fig_id}_{key.split('.')[-1]}", title, text, data)


# -- the qualitative timeline -------------------------------------------------------------------------------------


def _sentences(dataset: str, profile: str, split: str) -> dict[str, str]:
    """Query id -> sentence of the test split, where the synthetic build is on disk (never built here)."""
    from bench import moments
    from bench.data import grounding

    if dataset != "synth":
        return {}
    source, _ = moments.synth_source(profile)
    if source is None:
        return {}
    return {m.qid: m.sentence for m in grounding.read_annotations(source, tables.test_split(split).key)}


def timeline(runs: pd.DataFrame, out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT,
             methods: Sequence[str] = TIMELINE_METHODS, n_queries: int = TIMELINE_QUERIES) -> Figure | str:  # fmt: skip
    """A few test queries, each a timeline of its video: the video's annotated moments, the ground truth and each
    method's top-1 span (lowest seed that every shown method has)."""
    from bench import compare, evaluate

    found = {m: newest_per_seed(accuracy_runs(runs, m)) for m in methods}
    found = {m: r for m, r in found.items() if len(r)}
    if not found:
        return f"Timeline: no run of {', '.join(methods)}"
    common = set.intersection(*({int(s) for s in r["params.seed"]} for r in found.values()))
    seed = min(common) if common else None
    if seed is None:
        return f"Timeline: {', '.join(found)} have no seed in common"
    chosen = {m: r[r["params.seed"].astype(int) == seed].iloc[0] for m, r in found.items()}
    predictions = {}
    with tempfile.TemporaryDirectory(prefix="bench-figures-") as tmp:
        for method, row in chosen.items():
            try:
                path = compare.download(compare.Run(method, seed, row["run_id"]), tables.test_split(split).artifact,
                                        Path(tmp) / method)  # fmt: skip
            except FileNotFoundError:  # a run that logged no predictions of this split is left off the timeline
                continue
            predictions[method] = evaluate.read_predictions(path)
    if not predictions:
        return f"Timeline: no predictions artifact in the runs of {', '.join(chosen)}"
    found = {m: found[m] for m in predictions}
    first = next(iter(predictions.values()))
    shared = set(first.qids).intersection(*(p.qids for p in predictions.values()))
    picked = random.Random(0).sample(sorted(shared), min(n_queries, len(shared)))  # a fixed draw, not by result
    sentences = _sentences(dataset, profile, split)
    row_of = {q: i for i, q in enumerate(first.qids)}
    rows = []
    for qid in picked:
        q = row_of[qid]
        video = qid.rsplit("#", 1)[0]
        for other, i in row_of.items():
            if other.rsplit("#", 1)[0] == video:
                rows.append({"qid": qid, "row": "video's moments", "start": float(first.gt[i, 0]),
                             "end": float(first.gt[i, 1]), "duration": float(first.duration[q])})  # fmt: skip
        rows.append({"qid": qid, "row": "ground truth", "start": float(first.gt[q, 0]), "end": float(first.gt[q, 1]),
                     "duration": float(first.duration[q])})  # fmt: skip
        for method, p in predictions.items():
            i = p.qids.index(qid)
            rows.append({"qid": qid, "row": method, "start": float(p.pred[i, 0, 0]), "end": float(p.pred[i, 0, 1]),
                         "duration": float(p.duration[i])})  # fmt: skip
    data = pd.DataFrame(rows)
    order = ["video's moments", "ground truth", *predictions]
    plt = pyplot()
    fig, axes = plt.subplots(len(picked), 1, figsize=(7.0, 0.45 * len(order) * len(picked) + 0.8), squeeze=False)
    for ax, qid in zip(axes[:, 0], picked, strict=True):
        mine = data[data["qid"] == qid]
        for _, r in mine.iterrows():
            y = len(order) - 1 - order.index(r["row"])
            colour = "0.75" if r["row"] == "video's moments" else ("k" if r["row"] == "ground truth" else
                                                                    f"C{order.index(r['row']) - 2}")  # fmt: skip
            ax.broken_barh([(r["start"], r["end"] - r["start"])], (y - 0.35, 0.7), color=colour, alpha=0.8)
        ax.set_yticks(range(len(order)), list(reversed(order)), fontsize=7)
        ax.set_xlim(0, float(mine["duration"].iloc[0]))
        ax.set_xlabel("time in the video (s)", fontsize=8)
        ax.set_title(f"{qid}: {sentences.get(qid, '(sentence not on disk)')}"[:110], fontsize=8)
    what = (f"Qualitative timeline (as Figure 6) of {len(picked)} test queries drawn with a fixed seed from those "
            "every "
            f"shown method predicted: the video's annotated moments (grey), the query's ground truth (black) and each "
            f"method's top-1 span, seed {seed} (one run per method, so no error bars).")  # fmt: skip
    used = pd.concat([r[r["params.seed"].astype(int) == seed] for r in found.values()])
    text = caption(what, dataset, profile, split, used, "The paper's Figure 6 shows other queries, on ActivityNet.")
    return _write(fig, out, "timeline", "Qualitative timeline of test queries", text, data)


def write_figures(out: Path, dataset: str, profile: str, split: str = tables.DEFAULT_SPLIT,
                  runs: pd.DataFrame | None = None, curves_table: int = 1
                  ) -> tuple[list[Figure], list[str]]:  # fmt: skip
    """Every figure that the store's runs of ``dataset``/``profile`` allow, and one line per figure that is not
    drawn (what to run for it)."""
    if runs is None:
        runs = tracking.finished_runs({"dataset": dataset, "profile": profile})
    out.mkdir(parents=True, exist_ok=True)
    made = [
        robustness(runs, out, dataset, profile, split),
        semantic_objectives(runs, out, dataset, profile, split),
        semantic_curves(runs, out, dataset, profile, split),
        sweep(runs, out, dataset, profile, "fig9a", split),
        sweep(runs, out, dataset, profile, "fig9b", split),
        table_curves(runs, out, dataset, profile, curves_table, split),
        timeline(runs, out, dataset, profile, split),
    ]
    return [f for f in made if isinstance(f, Figure)], [f for f in made if isinstance(f, str)]
