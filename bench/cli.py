"""The ``bench`` command: the verbs and nothing else; each verb calls one function of the suite."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from bench import config as cfg
from bench import datasets

EPILOG = "Runs go to $WSVG_HOME (default ./runs); MLFLOW_TRACKING_URI overrides the tracking store."


def _add_view_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="synth",
        choices=datasets.DATASET_NAMES,
        help="whose runs fill the 'ours' lines (default: synth)",
    )
    p.add_argument("--profile", default="small", choices=cfg.PROFILES, help="default: small")
    p.add_argument(
        "--split",
        default="val_2",
        choices=("val_2", "test-ood"),
        help="the test split whose logged metrics fill the cells: val_2 (test/) or test-ood (test_ood/); default val_2",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="wsvg-bench: reproduce weakly-supervised spoken video grounding (SIL, ACL 2023).",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser(
        "run",
        help="train and evaluate methods; every run is tracked in MLflow",
        epilog=EPILOG,
        description="Run one method (--method), every implemented row of a table (--table), or "
        "one method's row of a table (both). One tracked run per seed.",
    )
    p.add_argument("--method", help="registry name (see `bench methods`), or several comma-separated (base,sil)")
    p.add_argument("--table", type=int, help="paper table number, 1-11")
    p.add_argument("--finetune", action="store_true",
                   help="with --table 1 alone: also each row's fine-tuned variant (the bracketed mIoU column)")
    p.add_argument("--dataset", default="synth", choices=datasets.DATASET_NAMES, help="default: synth")
    p.add_argument(
        "--profile",
        default="small",
        choices=cfg.PROFILES,
        help="tiny: CI smoke; small: the CPU default; paper: App. B.2 settings (default: small)",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma list or range, e.g. 0,1,2 or 0-4 (default: 0,1,2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run the (method, seed) runs in N worker processes, torch's threads shared among them "
                   "(default 1: one after another)")
    _add_threads_option(p)
    _add_data_root_options(p)
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one config field, e.g. --set train.epochs=3 (repeatable)",
    )

    p = sub.add_parser(
        "robustness",
        help="score trained runs on augmented test speech (Table 7's levels, Figure 4), one tracked run each",
        epilog=EPILOG,
        description="For each method and seed, the newest finished `bench run` of the same configuration is "
        "evaluated, without retraining, on its test speech augmented at each kind and level of Table 7; train and "
        "val stay clean and nothing is selected on test.",
    )
    p.add_argument("--method", required=True, help="registry name, or several comma-separated (sil,asr-rtbpn)")
    p.add_argument("--kinds", default="stretch,pitch,noise,all",
                   help="stretch, pitch, noise (each alone), all (the three in turn); default: all four")  # fmt: skip
    p.add_argument("--levels", default="low,medium,high", help="Table 7's columns; default: low,medium,high")
    p.add_argument("--augment-seed", type=int, default=0, help="draws the augmentation, alike for every method")
    p.add_argument("--dataset", default="synth", choices=datasets.DATASET_NAMES, help="default: synth")
    p.add_argument("--profile", default="small", choices=cfg.PROFILES, help="default: small")
    p.add_argument("--seeds", default="0,1,2", help="the source runs' seeds (default: 0,1,2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    _add_threads_option(p)
    _add_data_root_options(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="the --set options of the source runs (they name its configuration)")  # fmt: skip

    p = sub.add_parser("table", help="print a paper table: the paper's numbers beside the reproduced ones")
    p.add_argument("number", type=int, help="1-11")
    p.add_argument("--format", default="md", choices=("md", "latex"))
    _add_view_options(p)

    p = sub.add_parser(
        "calibrate",
        help="the calibration ladder: blind rows, references, the paper's methods, and whether the targets hold",
        description="Print the ladder (random / prior / whole video / the references / Table 1's methods / oracle) "
        "from tracked runs, with the calibration targets of the synthetic benchmark; --run first runs the rows "
        "that have no finished run.",
    )
    _add_view_options(p)
    p.add_argument("--run", action="store_true", help="run the rows that have no finished run first")
    p.add_argument("--by-length", action="store_true",
                   help="also R@1 IoU=0.5 by the moment's length (span / duration bins), from the runs' predictions")
    p.add_argument("--swap", action="store_true",
                   help="also the swap test (synth): each rung on val_2 beside its runs with every query given its "
                   "video's other query, the difference paired by query")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="seeds for --run (default: 0,1,2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device for --run")
    _add_threads_option(p)
    _add_data_root_options(p)

    p = sub.add_parser("report", help="write every table as Markdown and LaTeX into a report folder")
    p.add_argument("--out", type=Path, default=Path("reports/generated"), help="default: reports/generated")
    _add_view_options(p)

    sub.add_parser("methods", help="list the method registry: what runs today and what is planned")

    p = sub.add_parser("data", help="datasets: build the synthetic benchmark, check a real data root, list them")
    data_sub = p.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    data_sub.add_parser("list", help="the datasets `bench run --dataset` accepts, and their state")
    q = data_sub.add_parser("synth", help="generate (or find cached) the embedded synthetic benchmark")
    q.add_argument("--profile", default="small", choices=cfg.PROFILES, help="default: small")
    q.add_argument("--force", action="store_true", help="rebuild even if a cached copy exists")
    q = data_sub.add_parser("check", help="validate a real data root; lists exactly what is missing or corrupt")
    q.add_argument("root", type=Path)
    q.add_argument("--strict", action="store_true", help="treat warnings (e.g. spans clipped to the video) as errors")
    q.add_argument(
        "--deep",
        action="store_true",
        help="decode every audio file (finds silence and NaN samples; slower) instead of its header and last sample",
    )

    p = sub.add_parser("ui", help="open the MLflow UI on 127.0.0.1 over the suite's tracking store")
    p.add_argument("--port", type=int, default=5000)

    p = sub.add_parser(
        "evaluate",
        help="score a predictions file with the suite's one evaluator",
        description="Score a JSON-lines predictions file (format: `python -m pydoc bench.evaluate`"
        " or the README): one line per query with qid, duration, gt and ranked pred.",
    )
    p.add_argument("predictions", type=Path)
    p.add_argument("--nms", type=float, default=None, help="NMS threshold for R@5 (default: 0.45, as the paper)")
    p.add_argument(
        "--iou",
        default="standard",
        choices=("standard", "inflated-original"),
        help="inflated-original: the original code's (inter+1)/(union+1); not comparable to papers",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--float-ties",
        action="store_true",
        help="decide IoU = threshold ties in float64 as evaluator v1 and other code bases do (labelled in the output);"
        " default: exact",
    )

    p = sub.add_parser(
        "compare",
        help="paired difference of two methods over the same test queries and seeds, with a bootstrap interval",
        epilog=EPILOG,
        description="Read the newest FINISHED run per seed of methods A and B, score each run's test predictions query "
        "by query with the one evaluator, pair them by seed and query id, and print each method's mean ± std over "
        "seeds, the mean paired difference A − B and its 95 % bootstrap interval (10,000 resamples of the queries, "
        "seeds kept paired); 'inside noise' when the interval contains 0. A seed-free blind method (prior, "
        "whole-video) with one run is paired with every seed of the other.",
    )
    p.add_argument("a", metavar="A", help="registry name of the first method; METHOD@KIND-LEVEL (sil@all-high): its "
                   "runs scored on augmented test speech by `bench robustness`; METHOD@swapped: its runs on synth "
                   "scored with every query given its video's other query (the swap test)")
    p.add_argument("b", metavar="B", help="registry name of the second method (or METHOD@KIND-LEVEL)")
    _add_view_options(p)
    p.add_argument("--metric", default="R1@0.5", help="R1@0.5 (default), R5@0.7, mIoU, dR1@0.7, ...")
    p.add_argument("--seeds", help="only these seeds, e.g. 0,1,2 or 0-4 (default: every seed both have)")
    for side in ("a", "b"):
        p.add_argument(f"--set-{side}", action="append", metavar="KEY=VALUE", default=[],
                       help=f"read {side.upper()}'s runs made with this --set option (repeatable; default: the "
                       "method's own configuration, which is what tables show)")  # fmt: skip

    p = sub.add_parser(
        "claims",
        help="which of the paper's claims (tables/claims.toml) hold on the tracked runs: holds / fails / inconclusive",
        epilog=EPILOG,
        description="Decide every claim of tables/claims.toml with the paired bootstrap of `bench compare` (each "
        "pair A - B over the test queries, seeds kept paired): holds, fails, inconclusive or not-run, with the "
        "difference, its 95 % interval, n and the run ids, and the verdict on the paper's own numbers. On the real "
        "annotations only the claims with a blind side, as the paper's number against our measured blind row.",
    )
    _add_view_options(p)

    p = sub.add_parser(
        "wer",
        help="ASR accuracy (WER, CER, BLEU, chrF) on the grounding test split's speech; fills Table 8",
        epilog=EPILOG,
        description="Score the ASR (the profile's wav2vec2 trained on the pre-training corpus, cached as a stage; or "
        "a local CTC checkpoint) on the test queries' speech against their captions. Text is lower-cased, hyphens, "
        "dashes and slashes become spaces, other punctuation is removed and whitespace collapsed. Logs a tracked run "
        "(Table 8's row) with the per-utterance errors as CSV and JSON lines.",
    )
    p.add_argument("--profile", default="small", choices=cfg.PROFILES, help="default: small")
    p.add_argument("--dataset", default="synth", choices=datasets.DATASET_NAMES, help="default: synth")
    p.add_argument("--checkpoint", type=Path, help="a local Wav2Vec2ForCTC checkpoint directory (save_pretrained)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    _add_threads_option(p)
    _add_data_root_options(p)
    p.add_argument("--worst", type=int, default=10, metavar="N", help="list the N worst utterances (default: 10)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides", help="override an ASR config field")
    return parser


def _add_data_root_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="the local data root of --dataset activitynet-speech (default: $WSVG_DATA); layout: `bench data check`",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="activitynet-speech: leave out the queries whose wav is absent (counted in every run's params) instead "
        "of refusing to run",
    )


def _set_data_root(args: argparse.Namespace) -> None:
    """``--data-root`` and ``--skip-missing`` as the environment the dataset reads (so torchrun's ranks agree)."""
    import os

    from bench.data import speech_root

    if getattr(args, "data_root", None) is not None:
        os.environ[speech_root.ROOT_ENV] = str(args.data_root.expanduser().resolve())
    if getattr(args, "skip_missing", False):
        os.environ[speech_root.SKIP_ENV] = "1"


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch (default: torch's, one per core). On a machine that other jobs keep busy, 1 is "
        "far faster: measured on 2 cores under a load of about 6, a Base epoch of synth/small took 384 s with "
        "torch's 2 threads and 32 s with 1",
    )


def main(argv: list[str] | None = None) -> int:
    import signal

    if hasattr(signal, "SIGPIPE"):  # `bench methods | head` ends quietly instead of with a traceback
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    _set_data_root(args)
    try:
        return VERBS[args.verb](args)
    except (ValueError, KeyError, FileNotFoundError, NotImplementedError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"bench {args.verb}: error: {message}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While it lasts, ``kill PID`` ends the open run KILLED, as Ctrl-C does, instead of leaving it RUNNING."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args: argparse.Namespace) -> int:
    from bench import run, tables, tracking

    if args.finetune and (args.method or args.table is None):
        raise ValueError("--finetune goes with --table 1 alone (for one row: --method <row>-ft --table 1)")
    specs = run.methods_to_run(args.method, args.table, args.dataset, args.profile, finetune=args.finetune)
    seeds = run.parse_seeds(args.seeds)
    overrides = cfg.parse_overrides(args.overrides)
    if not specs:
        table = tables.load_table(args.table)
        print(
            f"bench run: none of the {len(table.rows)} rows of Table {args.table} (nor its blind rows) is "
            "implemented in this version of the suite; nothing was run. `bench methods` shows what is planned.",
            file=sys.stderr,
        )
    try:
        with _sigterm_interrupts():
            outcomes = run.run(
                specs,
                dataset=args.dataset,
                profile=args.profile,
                seeds=seeds,
                device=args.device,
                overrides=overrides,
                table=args.table,
                processes=args.jobs,
            )
    except KeyboardInterrupt:
        print(
            "bench run: interrupted; the open run ends KILLED, and the same command resumes from its last checkpoint",
            file=sys.stderr,
        )
        return 130
    if not tracking.is_main_process():  # under torchrun, rank 0 alone reports
        return 1 if any(o.status != "FINISHED" for o in outcomes) else 0
    for o in outcomes:
        extra = "  ".join(f"{k}={v * 100:.2f}" for k, v in o.test.items() if k.startswith(("R1@", "mIoU")))
        print(f"{o.status:8s} {o.method} seed={o.seed} run={o.run_id or '-'}  {extra or o.error}")
    if args.table is not None:
        print()
        print(tables.render(args.table, "md", args.dataset, args.profile))
    return 1 if any(o.status != "FINISHED" for o in outcomes) else 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from bench import robustness, run

    def names(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    try:
        with _sigterm_interrupts():
            outcomes = robustness.run(
                names(args.method),
                dataset=args.dataset,
                profile=args.profile,
                seeds=run.parse_seeds(args.seeds),
                kinds=names(args.kinds),
                levels=names(args.levels),
                augment_seed=args.augment_seed,
                device=args.device,
                overrides=cfg.parse_overrides(args.overrides),
            )
    except KeyboardInterrupt:
        print("bench robustness: interrupted; the open run ends KILLED", file=sys.stderr)
        return 130
    for o in outcomes:
        extra = "  ".join(f"{k}={v * 100:.2f}" for k, v in o.test.items() if k.startswith(("R1@", "mIoU")))
        print(f"{o.status:8s} {o.method} seed={o.seed} run={o.run_id or '-'}  {extra or o.error}")
    return 1 if any(o.status != "FINISHED" for o in outcomes) else 0


def cmd_table(args: argparse.Namespace) -> int:
    from bench import tables

    print(tables.render(args.number, args.format, args.dataset, args.profile, split=args.split), end="")
    hint = tables.empty_hint(args.number, args.dataset, args.profile, args.split)
    if hint:
        print(f"bench table: {hint}", file=sys.stderr)
    elif tables.load_table(args.number).kind != "config":  # stdout stays the table; what it shows goes to stderr
        print(f"bench table: Table {args.number} from dataset {args.dataset}, profile {args.profile}, test split "
              f"{args.split} (choose with --dataset, --profile, --split); the store holds finished runs of "
              f"{tables.held()}", file=sys.stderr)  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench import report

    written = report.write_report(args.out, args.dataset, args.profile, args.split)
    for path in written:
        print(path)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from bench import tables
    from methods import registry

    rows, methods = tables.rows_by_method(), registry.all_methods()
    print(f"{'method':22s} {'status':18s} {'query':10s} {'superv.':8s} {'stages':22s} {'tables':16s} run(ctx)")
    for name, spec in methods.items():
        status = "runs" if spec.implemented else (f"planned (#{spec.issue})" if spec.issue else "planned")
        where = ",".join(dict.fromkeys(str(number) for number, _ in rows.get(name, ()))) or (
            "all (blind)"
            if name in tables.BLIND_METHODS
            else "report (blind)"
            if spec.blind and spec.implemented
            else "-"
        )
        print(
            f"{name:22s} {status:18s} {spec.query:10s} {spec.supervision:8s} {'+'.join(spec.stages) or '-':22s} "
            f"{where:16s} {spec.source}"
        )
    undescribed = [name for name in tables.named_methods() if name not in methods]
    if undescribed:
        print(f"bench methods: the tables name {', '.join(undescribed)}, which nothing registers and "
              f"{registry.PLANNED_PATH} does not describe: register each, or describe it there", file=sys.stderr)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_verb == "synth":
        import time

        from bench.data import synth

        start = time.perf_counter()
        root = synth.build(args.profile, force=args.force)
        meta = json.loads((root / "meta.json").read_text())
        print(f"synth/{args.profile}: {root} ({time.perf_counter() - start:.1f} s this call)")
        print(f"  content hash {meta['content_hash']}; videos {meta['videos']}; queries {meta['queries']}")
        print("  build timings: " + ", ".join(f"{k} {v:.1f}" for k, v in meta["timings"].items()))
        return 0
    if args.data_verb == "check":
        from bench.data import check

        report = check.check_root(args.root, strict=args.strict, deep_audio=args.deep)
        print(report.summary())
        return 0 if report.ok else 1
    for name, spec in datasets.all_datasets().items():
        state = "available" if spec.open else f"planned (#{spec.issue})"
        print(f"{name:22s} {state:14s} {spec.description}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from bench import tracking, views

    command = tracking.ui_command(args.port)
    address = f"http://127.0.0.1:{args.port}"
    pages = views.save()
    print(f"MLflow UI on {address} over {tracking.tracking_uri()} (Ctrl-C stops it)")
    print(f"  every run, with method, seed and R@1 as columns: {address}{pages.pop(views.ALL_RUNS)}")
    print(f"  a table's runs in its order, R@1 beside the paper's: {address}{pages['table-1']} (table-N for table N)")
    sys.stdout.flush()
    return tracking.serve(command)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bench import evaluate, tables

    nms = evaluate.NMS_THRESHOLD if args.nms is None else args.nms
    ties = "float" if args.float_ties else "exact"
    metrics = evaluate.evaluate_file(args.predictions, nms_threshold=nms, iou_mode=args.iou, ties=ties)
    if args.json:
        out = {"file": str(args.predictions), "nms": nms, "iou": args.iou, "ties": ties, **metrics}
        print(json.dumps({**out, "evaluator": evaluate.definition(ties)}, indent=2))
        return 0
    print(f"{args.predictions}: {int(metrics['n'])} queries, NMS {nms}, IoU {args.iou}, ties {ties}")
    if args.iou != "standard":
        print("WARNING: inflated IoU (inter+1)/(union+1) of the original code; not comparable to standard IoU")
    if ties == "float":
        print("WARNING: FLOAT TIES: IoU = threshold decided in float64 (evaluator v1, other code); not the suite's")
    for key in (*evaluate.METRIC_KEYS, *evaluate.DIAGNOSTIC_KEYS):
        print(f"  {tables.METRIC_LABELS[key]:14s} {metrics[key] * 100:6.2f}")
    tied = ", ".join(f"IoU={m}: {int(metrics[f'n_tied@{m}'])}" for m in evaluate.IOU_THRESHOLDS)
    how = "float rounding decides them" if ties == "float" else "misses: IoU > m is strict"
    print(f"  queries whose top-1 IoU equals a threshold exactly ({how}): {tied}")
    for key in ("n_clipped_pred", "n_clipped_gt"):
        if metrics.get(key):
            print(f"  {key}: {int(metrics[key])} queries had a span clipped to [0, duration]")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench import compare, run

    seeds = run.parse_seeds(args.seeds) if args.seeds else None
    result = compare.compare(
        args.a,
        args.b,
        dataset=args.dataset,
        profile=args.profile,
        split=args.split,
        metric=args.metric,
        seeds=seeds,
        overrides_a=cfg.parse_overrides(args.set_a),
        overrides_b=cfg.parse_overrides(args.set_b),
    )
    print(compare.format_comparison(result))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from bench import claims

    results, left_out = claims.check(args.dataset, args.profile, args.split)
    print(claims.to_markdown(results, args.dataset, args.profile, args.split, left_out), end="")
    return 0


def cmd_wer(args: argparse.Namespace) -> int:
    from bench import run, wer

    out = run.run_wer(
        dataset=args.dataset,
        profile=args.profile,
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        device=args.device,
        overrides=cfg.parse_overrides(args.overrides),
        n_worst=args.worst,
    )
    print(f"ASR on the {args.dataset}/{args.profile} test speech: {wer.format_totals(out['totals'])}")
    print(f"  normalisation: {wer.NORMALISATION_TEXT}; run {out['run_id'] or '-'}")
    print(f"  per-utterance errors: {', '.join(str(p) for p in out['paths'])}")
    if args.worst > 0:
        print(wer.format_worst(out["rows"], args.worst))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench import calibrate, run
    from methods import registry

    if args.run:
        missing = [r for r in calibrate.ladder(args.dataset, args.profile, args.split) if isinstance(r, tuple)]
        specs = [registry.get(method) for method, _ in missing]
        if specs:
            print(f"bench calibrate: running {', '.join(s.name for s in specs)}", file=sys.stderr)
            run.run(specs, dataset=args.dataset, profile=args.profile, seeds=run.parse_seeds(args.seeds),
                    device=args.device)  # fmt: skip
    print(calibrate.render(args.dataset, args.profile, args.split))
    if args.by_length:
        print()
        print(calibrate.render_by_length(args.dataset, args.profile, args.split))
    if args.swap:
        print()
        print(calibrate.render_swap(args.dataset, args.profile))
    return 0


VERBS = {
    "run": cmd_run,
    "robustness": cmd_robustness,
    "calibrate": cmd_calibrate,
    "table": cmd_table,
    "report": cmd_report,
    "methods": cmd_methods,
    "data": cmd_data,
    "ui": cmd_ui,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "claims": cmd_claims,
    "wer": cmd_wer,
}

if __name__ == "__main__":
    sys.exit(main())
