"""Calibration sweep over the synthetic benchmark's difficulty knobs (issue 4): measured here, never asserted.

For each world (a ``synth`` profile with :class:`~bench.data.synth.SynthConfig` overrides, built once and cached
by its config hash), every method runs for every seed through its own ``run`` function and the shared training
loop, exactly the code ``bench run`` uses, but **without MLflow tracking**: variant worlds never enter the
tracking store, so the paper tables (which read synth/<profile> runs) cannot mix them in. Prints one Markdown
table per world, mean ± std over seeds of the test metrics, the epochs chosen on val, and the issue's ordering
check; ``--out FILE`` keeps every run (per-epoch val and train curves too) as JSON lines.

A world is ``key=value`` pairs joined by commas (tuple values with ``:``, e.g. ``videos=300:50:50``); ``-``
is the profile as shipped. ``--set`` overrides method config fields for the methods that have them.

``--query VIEW`` (repeatable) asks where a gold-text method's query loses what the features allow: every split's
words are replaced before the method sees them (only the gold-text methods read them; the concepts come from the
synthetic annotations, so the views are a diagnostic of synth, never a benchmark row). The views, from the caption
as written to the concept itself:

- ``sentence``: the caption as written (the default, what ``bench run`` trains on);
- ``lemmas``: the caption with every verb and object synonym replaced by its canonical word in the same inflection
  ("cleans the vehicle" -> "washes the car"): what the synonyms cost;
- ``keywords``: only the caption's verb and object words as written ("cleans vehicle"): what the other words cost
  (a word filter: a form of a concept's verb elsewhere in the caption stays, as "plays" in "while music plays");
- ``canonical``: the concept's two canonical words ("wash car"): one fixed phrase per concept;
- ``concept``: one token per concept with a random unit vector of its own: the concept with no word knowledge.

``--swap-test`` asks how much of a method's score its query carries: each run also scores ``test_swapped``, the test
split with every query's input (words, speech, the frozen features or ASR transcript a method computed from them)
replaced by that of the next query of the same video that names another concept, its moment, duration and video
kept, so a prediction is scored against the moment its video's *other* query did not describe. A method that
ignores its query scores the same on both; one that follows its query falls towards the share of other moments that
overlap the original. Queries with no such sibling keep their own input and are counted (``n_swapped``). One
training, two scores: the swap is made on the data the method hands the shared grounding loop
(:func:`bench.train.fit_grounding`), as one more test split beside ``test_ood``, so training and the selection on val
are unchanged. The methods that do not train through that loop (the blind rows, the concept oracle) are refused.

Usage (a GPU machine runs many jobs at once with ``--device cuda --workers 12``)::

    python scripts/calibrate.py --world - --world noise_std=1,scene_scale=0 \\
        --methods prior,random,whole-video,base,base-text,sbase --seeds 0,1,2 --set train.epochs=12
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.swap import SWAPPED

REPORTED = ("R1@0.5", "mIoU", "centre_in", "pred_len")
VIEWS = ("sentence", "lemmas", "keywords", "canonical", "concept")
ORDER = ("prior", "base", "base-text")  # the criterion: prior < Base(speech) < Base(gold text) < 100 %


def parse_world(text: str, profile: str):
    """``"noise_std=1,videos=300:50:50"`` -> the profile's SynthConfig with those fields set (typed, checked)."""
    from bench import config as cfg
    from bench.data import synth

    base = synth.PROFILES[profile]
    if text.strip() in ("", "-"):
        return base
    overrides = cfg.parse_overrides([p.replace(":", ",") for p in text.split(",")])
    return cfg.apply_overrides(base, overrides)


def method_config(name: str, profile: str, overrides: dict[str, str]):
    """The method's profile config with the ``--set`` keys it has; keys it lacks are left to the other methods."""
    from bench import config as cfg
    from methods import registry

    c = registry.get(name).config(profile)
    mine = {k: v for k, v in overrides.items() if k in cfg.field_paths(c)}
    return cfg.apply_overrides(c, mine)


@functools.cache
def canonical_words() -> tuple[dict[str, str], dict[str, str]]:
    """Every verb form -> the canonical verb's form of the same inflection, every object word -> the canonical one."""
    from bench.data import world

    verb_form = {f: syns[0][i] for syns in world.VERBS.values() for forms in syns for i, f in enumerate(forms)}
    return verb_form, {o: k for k, syns in world.OBJECTS.items() for o in syns}


def view_tokens(view: str, tokens: list[str], concept) -> list[str]:
    """One query's words under ``view`` (see the module docstring); ``concept`` is its planted (verb, object)."""
    verb_form, obj_word = canonical_words()
    if view == "sentence":
        return tokens
    if view == "lemmas":
        return [verb_form.get(t, obj_word.get(t, t)) for t in tokens]
    if view == "keywords":
        return [t for t in tokens if t in verb_form or t in obj_word] or tokens
    if view == "canonical":
        return [concept.verb, concept.obj]
    if view == "concept":
        return [f"concept{concept.index}"]
    raise ValueError(f"query view {view!r} is not one of {VIEWS}")


def query_view(data, dataset, view: str):
    """``data`` (a :class:`~bench.data.grounding.GroundingData`) with every split's words under ``view``.

    Words outside the vocabulary become row 0, as the loaders' OOV rule has it; ``concept`` appends one random unit
    vector per concept (a fixed generator, so every method and seed sees the same ones) to the word vectors.
    """
    import dataclasses

    import torch

    from bench.data import grounding, loader, world

    if view == "sentence":
        return data
    vocab, vectors = list(data.vocab), data.word_vectors
    if view == "concept":
        vocab += [f"concept{c.index}" for c in world.CONCEPTS]
        g = torch.Generator().manual_seed(0)
        extra = torch.randn(len(world.CONCEPTS), vectors.shape[1], generator=g, dtype=torch.float64)
        vectors = torch.cat([vectors, torch.nn.functional.normalize(extra, dim=-1).to(vectors)])
    row = {w: i + 1 for i, w in enumerate(vocab)}
    files = grounding.split_files(dataset)

    def split_view(name: str) -> grounding.GroundingSplit:
        split = data.split(name)
        q = split.queries
        concepts = dataset.query_concepts(files[name], split.qids)
        rows = []
        for w, n, c in zip(q["words"].tolist(), q["words_len"].tolist(), concepts, strict=True):
            tokens = [data.vocab[r - 1] if r > 0 else "" for r in w[:n]]
            rows.append(torch.tensor([row.get(t, 0) for t in view_tokens(view, tokens, world.CONCEPTS[c])]))
        words, lens = loader.pad_stack(rows)
        tensors = {**q.tensors, "words": words.to(q["words"]), "words_len": lens.to(q["words_len"])}
        return grounding.GroundingSplit(split.name, dataclasses.replace(q, tensors=tensors), split.videos)

    views = {name: split_view(name) for name in data.split_names}
    return dataclasses.replace(
        data, train=views["train"], val=views["val"], test=views["test"],
        extra_tests={k: views[k] for k in data.extra_tests}, vocab=vocab, word_vectors=vectors,
    )  # fmt: skip


def build_world(job: tuple[str, str, str]) -> tuple[str, str, str]:
    """Build (or find) one world; returns its name, root and content hash."""
    from bench.data import synth

    name, text, profile = job
    root = synth.build(profile, parse_world(text, profile), progress=False)
    return name, str(root), synth.SynthDataset.from_root(root, profile).content_hash


def memory_log():
    """The tracking interface the training loop writes to, kept in memory: per-epoch metrics by key."""
    from bench.tracking import RunLogger

    class MemoryLog(RunLogger):
        def __init__(self) -> None:
            super().__init__(None, None)  # no MLflow: the other logging calls do nothing
            self.curves: dict[str, list[float]] = {}
            self.params: dict[str, Any] = {}

        def log_params(self, params: dict[str, Any]) -> None:
            self.params.update(params)

        def log_metrics(self, metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
            for k, v in metrics.items():
                self.curves.setdefault(prefix + k, []).append(float(v))

    return MemoryLog()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One (world, method, seed) through the method's run function, as ``bench run`` would call it."""
    import torch

    from bench.context import RunContext, set_seed
    from bench.data import grounding, synth
    from bench.tracking import runs_home
    from methods import registry

    torch.set_num_threads(job["threads"])
    spec = registry.get(job["method"])
    c = method_config(job["method"], job["profile"], job["set"])
    log = memory_log()
    t0 = time.perf_counter()
    load, views = grounding.load, {}

    def load_view(*args, **kw):  # the method's own load, then its words under the job's query view
        data = load(*args, **kw)
        if id(data) not in views:
            views[id(data)] = query_view(data, world, job["query"])
        return views[id(data)]

    with tempfile.TemporaryDirectory() as work:
        set_seed(job["seed"])
        world = synth.SynthDataset.from_root(Path(job["root"]), job["profile"])
        ctx = RunContext(spec, c, "synth", job["profile"], job["seed"], torch.device(job["device"]), log, Path(work),
                         runs_home() / "cache", preloaded=world, swap_test=bool(job.get("swap")))  # fmt: skip
        grounding.load = load_view
        try:
            result = spec.run(ctx)
        finally:
            grounding.load = load
    swapped = {}
    if job.get("swap"):
        if SWAPPED not in result.extra_tests:
            raise SystemExit(f"calibrate: {job['method']} did not train through bench.train.fit_grounding, so "
                             "--swap-test has nothing to swap (leave it out)")  # fmt: skip
        swapped = {
            "swapped": {k: float(v) for k, v in result.extra_tests[SWAPPED].items()},
            "n_swapped": int(log.params["swap_test.n_swapped"]),
            "n_test": int(log.params["swap_test.n_test"]),
        }
    return {
        **{k: job[k] for k in ("world", "spec", "content_hash", "method", "seed", "query")},
        "set": job["set"],
        "test": {k: float(v) for k, v in result.test.items()},
        **swapped,
        "selected_epoch": result.selected_epoch,
        "curves": log.curves,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def row_label(record: dict[str, Any]) -> str:
    """The summary's row: the method, and its query view where it is not the caption as written."""
    view = record.get("query", "sentence")
    return record["method"] if view == "sentence" else f"{record['method']} ({view})"


def mean_std(xs: list[float]) -> str:
    """``mean ± sample std`` of ``xs`` (std 0 for one value), two decimals."""
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def summarize(records: list[dict[str, Any]]) -> str:
    """One Markdown table per world: mean ± std over seeds (in %), epochs chosen on val, the ordering check."""
    out = []
    for world in dict.fromkeys(r["world"] for r in records):
        rows = [r for r in records if r["world"] == world]
        swap = any("swapped" in r for r in rows)
        extra = ["R1@0.5 swapped", "swapped queries"] if swap else []
        out += [f"### world {world}: `{rows[0]['spec']}` (content hash {rows[0]['content_hash']})", "",
                "| method | seeds | " + " | ".join([*REPORTED, *extra]) + " | selected epochs | s per run |",
                "|---" * (len(REPORTED) + len(extra) + 4) + "|"]  # fmt: skip
        means = {}
        for method in dict.fromkeys(map(row_label, rows)):
            runs = sorted((r for r in rows if row_label(r) == method), key=lambda r: r["seed"])
            cells = [mean_std([r["test"][k] * (1 if k == "pred_len" else 100) for r in runs]) for k in REPORTED]
            if swap:
                had = [r for r in runs if "swapped" in r]
                cells.append(mean_std([100 * r["swapped"]["R1@0.5"] for r in had]) if had else "-")
                cells.append(", ".join(f"{r['n_swapped']} of {r['n_test']}" for r in had) if had else "-")
            means[method] = statistics.mean(r["test"]["R1@0.5"] for r in runs)
            epochs = ",".join(str(r["selected_epoch"]) if r["selected_epoch"] is not None else "-" for r in runs)
            secs = statistics.mean(r["seconds"] for r in runs)
            out.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + f" | {epochs} | {secs:.0f} |")
        if all(m in means for m in ORDER):
            holds = means["prior"] < means["base"] < means["base-text"] < 1.0
            out.append(f"\nprior < base < base-text < 100 % on R@1 IoU=0.5: {'holds' if holds else 'fails'}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", action="append", help="SynthConfig overrides: noise_std=1,scene_scale=0 (- = as shipped)")
    p.add_argument("--profile", default="small", choices=("tiny", "small", "paper"))
    p.add_argument("--methods", default="prior,random,whole-video,base,base-text,sbase")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method config override")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=1, help="parallel processes (0 = in this process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", type=Path, help="append every run as a JSON line here")
    p.add_argument("--query", action="append", choices=VIEWS, help="gold-text query view (repeatable; see above)")
    p.add_argument("--swap-test", action="store_true", help="also score test_swapped: each test query given another "
                   "query's words and speech of the same video (see above)")  # fmt: skip
    a = p.parse_args(argv)
    from bench import config as cfg
    from methods import registry

    worlds = a.world or ["-"]
    overrides = cfg.parse_overrides(a.set)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if registry.get(m).run is None:
            raise SystemExit(f"calibrate: method {m!r} does not run yet (see `bench methods`)")
    for key in overrides:
        if not any(key in cfg.field_paths(registry.get(m).config(a.profile)) for m in methods):
            raise SystemExit(f"calibrate: no chosen method has the config key {key!r}")
    views = a.query or ["sentence"]
    if views != ["sentence"]:
        other = [m for m in methods if registry.get(m).query != "gold-text"]
        if other:
            raise SystemExit(f"calibrate: --query changes the gold-text words only; {', '.join(other)} do not read "
                             "them (run them without --query)")  # fmt: skip
    if a.swap_test:
        other = [m for m in methods if registry.get(m).query in ("none", "concept")]
        if other:
            raise SystemExit(f"calibrate: --swap-test swaps the queries; {', '.join(other)} read none (leave them "
                             "out)")  # fmt: skip
    for w in worlds:
        parse_world(w, a.profile)  # a typo is an error before anything is built
    names = [f"w{i}" for i in range(len(worlds))]
    builds = [(n, w, a.profile) for n, w in zip(names, worlds, strict=True)]
    pool = mp.get_context("spawn").Pool(a.workers) if a.workers > 0 else None
    imap = pool.imap_unordered if pool else map
    try:
        built = {n: (root, chash) for n, root, chash in imap(build_world, builds)}
        jobs = [
            {"world": n, "spec": w, "root": built[n][0], "content_hash": built[n][1], "method": m, "seed": int(s),
             "set": overrides, "profile": a.profile, "device": a.device, "threads": a.threads, "query": v,
             "swap": a.swap_test}
            for n, w in zip(names, worlds, strict=True) for m in methods for v in views for s in a.seeds.split(",")
        ]  # fmt: skip
        records = []
        for r in imap(run_job, jobs):
            records.append(r)
            swapped = f", swapped {100 * r['swapped']['R1@0.5']:.2f}" if "swapped" in r else ""
            print(f"{r['world']} {row_label(r)} seed {r['seed']}: R1@0.5 {100 * r['test']['R1@0.5']:.2f}{swapped} "
                  f"mIoU {100 * r['test']['mIoU']:.2f} ({r['seconds']:.0f} s)", flush=True)  # fmt: skip
            if a.out:
                with a.out.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
    finally:
        if pool:
            pool.close()
    records.sort(key=lambda r: (r["world"], methods.index(r["method"]), views.index(r["query"]), r["seed"]))
    text = summarize(records)
    print(text)
    return text


if __name__ == "__main__":
    main()
