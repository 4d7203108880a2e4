"""``bench claims``: the claims file's schema, its names, and verdicts on a store of hand-made tracked runs.

The store is made with the suite's own tracking code (``tracking.start_run``, as ``bench run`` logs): each run's
predictions artifact is written by hand so that every verdict can be derived on paper. 40 queries of 100 s videos,
true moment [0, 50]; a hit predicts [0, 50] (IoU 1), a miss [0, 20] (IoU 0.4, below 0.5):

- ``sil`` hits every query (seeds 0, 1); ``base`` misses every query (seeds 0, 1): ``sil > base`` clearly holds
  (d_q = 1 on every query, so every resample's mean is 1 and the interval is [+100, +100]) and ``base > sil``
  clearly fails;
- ``base+lsem`` hits queries 0-19 and ``base+asp`` queries 1-20 (seeds 0, 1): the two differ on two queries in
  opposite directions, mean difference 0, an interval around 0: inside noise, inconclusive;
- ``prior`` (seed-free, one run) hits queries 0-3 (10 %).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tomllib
from pathlib import Path

import pytest

from bench import claims, cli, evaluate, tables, tracking
from methods import registry

N = 40
HIT, MISS = [0.0, 50.0], [0.0, 20.0]
HITS = {
    "sil": set(range(N)),
    "base": set(),
    "base+lsem": set(range(20)),
    "base+asp": set(range(1, 21)),
    "prior": set(range(4)),
}
SEEDS = {"sil": (0, 1), "base": (0, 1), "base+lsem": (0, 1), "base+asp": (0, 1), "prior": (0,)}
RESAMPLES = 2000


def _write(path: Path, hits: set[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"qid": f"v{i}#0", "duration": 100.0, "gt": [0.0, 50.0], "pred": [HIT if i in hits else MISS]}
             for i in range(N)]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _log(method: str, seed: int, dataset: str, tmp: Path, params: dict | None = None) -> str:
    base = {"method": method, "dataset": dataset, "profile": "small", "seed": seed, **(params or {})}
    with tracking.start_run(f"{method}/{dataset}/small/seed{seed}", base) as log:
        for split in tables.TEST_SPLITS.values():
            path = _write(tmp / dataset / f"{method}{seed}" / Path(split.artifact).name, HITS[method])
            log.log_metrics(evaluate.evaluate_file(path), prefix=split.prefix)
            log.log_artifact(path, "predictions")
        return log.run_id


def _log_latency(method: str, seconds: list[float]) -> str:
    params = {"method": method, "dataset": "synth", "profile": "small", "seed": 0, "measure": "latency"}
    with tracking.start_run(f"{method}/synth/small/latency", params) as log:
        log.log_metrics({"latency_s": sum(seconds) / len(seconds)}, prefix="test/")
        log.log_dict({"queries": [f"v{i}#0" for i in range(len(seconds))], "seconds": seconds}, claims.LATENCY_ARTIFACT)
        return log.run_id


@pytest.fixture
def store(home, tmp_path):
    ids = {(m, s): _log(m, s, "synth", tmp_path) for m, seeds in SEEDS.items() for s in seeds}
    ids[("prior", "real")] = _log("prior", 0, "activitynet-captions", tmp_path, {"prior_start": 0.0, "prior_end": 0.5})
    # SIL 10 ms + 1 ms per query index mod 3, ASR-Base 50 ms: SIL is faster on every query
    ids[("sil", "latency")] = _log_latency("sil", [0.010 + 0.001 * (i % 3) for i in range(30)])
    ids[("asr-base", "latency")] = _log_latency("asr-base", [0.050] * 30)
    return ids


def claim(id_: str, pairs, relation="greater", quantifier="every", metric="R1@0.5", margin=None, table=None):
    return claims.Claim(id_, "suite", "test", "a test claim", tuple(pairs), relation, quantifier, metric, margin, table)


def by_id(results):
    return {r.claim.id: r for r in results}


def test_hand_made_runs_give_the_verdicts_derived_by_hand(store):
    tests = [
        claim("clear-hold", [("sil", "base")]),
        claim("clear-fail", [("base", "sil")]),
        claim("noise", [("base+lsem", "base+asp")]),
        claim("missing", [("sil", "vgcl")]),
        claim("every-with-a-fail", [("sil", "base"), ("base", "sil")]),
        claim("every-open", [("sil", "base"), ("sil", "vgcl")]),
        claim("majority", [("sil", "base"), ("sil", "base+asp"), ("base+lsem", "base+asp")], quantifier="majority"),
        claim("equivalent-wide", [("base+lsem", "base+asp")], relation="equivalent", margin=1.0),
        claim("equivalent-narrow", [("base+lsem", "base+asp")], relation="equivalent", margin=20.0),
        claim("noninferior", [("base+lsem", "base+asp")], relation="noninferior", margin=20.0),
        claim("faster", [("sil", "asr-base")], relation="less", metric="latency_s"),
        claim("faster-missing", [("sil", "asr-rtbpn")], relation="less", metric="latency_s"),
    ]
    results, left_out = claims.check("synth", "small", "val_2", claims=tests, resamples=RESAMPLES)
    got = by_id(results)
    assert left_out == 0
    assert {k: r.verdict for k, r in got.items()} == {
        "clear-hold": "holds",
        "clear-fail": "fails",
        "noise": "inconclusive",
        "missing": "not-run",
        "every-with-a-fail": "fails",  # one counter-example decides 'every', whatever the other pairs are
        "every-open": "not-run",  # holds on the pair that ran, but vgcl has no run: not decided
        "majority": "holds",  # 2 of 3 pairs hold (sil > base, sil > base+asp)
        "equivalent-wide": "inconclusive",  # the interval (about ±5 points) reaches beyond ±1
        "equivalent-narrow": "holds",  # ... and lies inside ±20
        "noninferior": "holds",
        "faster": "holds",
        "faster-missing": "not-run",
    }
    hold = got["clear-hold"].pairs[0]
    assert (hold.difference, hold.low, hold.high) == (100.0, 100.0, 100.0)
    assert (hold.n_seed_pairs, hold.n_queries) == (2, N)
    assert hold.runs_a == (store[("sil", 0)], store[("sil", 1)])
    assert hold.runs_b == (store[("base", 0)], store[("base", 1)])
    fail = got["clear-fail"].pairs[0]
    assert (fail.difference, fail.low, fail.high) == (-100.0, -100.0, -100.0)
    noise = got["noise"].pairs[0]
    # d_q = +1 on query 0, -1 on query 20, 0 elsewhere: mean 0; a resample's mean is (k0 - k20) / 40 points apart
    assert noise.difference == 0.0 and noise.low < 0 < noise.high and noise.low == -noise.high
    assert noise.high in (2.5, 5.0, 7.5)  # a multiple of 1/40, in points
    assert "no finished run of 'vgcl'" in got["missing"].pairs[0].reason
    fast = got["faster"].pairs[0]
    # per-query SIL - ASR-Base: -40, -39 or -38 ms, one third each: mean -39 ms
    assert fast.difference == pytest.approx(-39.0) and -40.0 <= fast.low <= fast.high <= -38.0
    assert fast.runs_a == (store[("sil", "latency")],)
    assert "no latency run of asr-rtbpn" in got["faster-missing"].pairs[0].reason


def test_a_seed_free_blind_row_pairs_with_every_seed(store):
    (result,), _ = claims.check("synth", "small", claims=[claim("over-prior", [("sil", "prior")])], resamples=RESAMPLES)
    pair = result.pairs[0]
    assert result.verdict == "holds" and pair.n_seed_pairs == 2 and pair.difference == pytest.approx(90.0)
    assert pair.runs_b == (store[("prior", 0)],)


def test_real_annotations_check_the_papers_number_against_our_blind_row(store):
    tests = [claim("sil-over-prior", [("sil", "prior")], table=1), claim("learned-only", [("sil", "base")], table=1),
             claim("no-paper-row", [("sil-freq-only", "prior")], table=1)]  # fmt: skip
    results, left_out = claims.check("activitynet-captions", "small", claims=tests, resamples=RESAMPLES)
    got = by_id(results)
    assert left_out == 1 and "learned-only" not in got  # no blind side: annotations alone cannot decide it
    pair = got["sil-over-prior"].pairs[0]
    # the paper's SIL R@1 IoU=0.5 (Table 1) is 30.26; our prior on the real store hits 4 of 40 = 10 %
    assert pair.difference == pytest.approx(30.26 - 10.0)
    assert pair.verdict == "holds" and pair.low > 0  # the prior's mean has sd sqrt(.1 * .9 / 40) = 4.7 points
    assert "the paper's sil (Table 1, on activitynet-speech) vs our measured prior" in pair.basis
    assert pair.runs_b == (store[("prior", "real")],) and pair.runs_a == ()
    assert got["no-paper-row"].verdict == "not-run"
    assert "Table 1 prints no R1@0.5 for sil-freq-only" in got["no-paper-row"].pairs[0].reason
    text = claims.to_markdown(results, "activitynet-captions", "small", "val_2", left_out)
    assert "1 claims need video and speech and are left out" in text


def test_the_cli_checks_the_shipped_claims(store):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["claims", "--profile", "small"])
    text = out.getvalue()
    assert code == 0, err.getvalue()
    row = re.search(r"^\| sil-over-prior \|.*$", text, re.M).group(0)
    assert "**holds**" in row and "1 holds" in row
    # base+asp > base+lsem at R@1 IoU=0.5 (Table 5's conciseness claim) is inside noise on these runs
    assert "**inconclusive**" in re.search(r"^\| lconc-improves-attention \|.*$", text, re.M).group(0)
    # a claim whose methods have no runs, and one that is not checked
    assert "**not-run**" in re.search(r"^\| asp-improves-sbase \|.*$", text, re.M).group(0)
    assert "**not checked**" in re.search(r"^\| semantic-losses-speed-convergence \|.*$", text, re.M).group(0)
    # the robustness claim pairs runs on augmented speech, which this store lacks
    assert "3 not-run" in re.search(r"^\| sil-robust \|.*$", text, re.M).group(0)
    assert "### sil-over-prior: holds" in text and store[("sil", 0)][:8] in text


# --- pure rules -------------------------------------------------------------------------------------------------


def test_decide_and_combine_by_hand():
    assert claims.decide("greater", 0.1, 2.0) == "holds" and claims.decide("greater", -0.1, 2.0) == "inconclusive"
    assert claims.decide("greater", -2.0, -0.1) == "fails" and claims.decide("less", -2.0, -0.1) == "holds"
    assert claims.decide("equivalent", -0.5, 0.9, 1.0) == "holds"
    assert claims.decide("equivalent", -0.5, 1.1, 1.0) == "inconclusive"
    assert claims.decide("equivalent", 1.2, 3.0, 1.0) == "fails"
    assert claims.decide("noninferior", -0.9, 5.0, 1.0) == "holds"
    assert claims.decide("noninferior", -3.0, -1.5, 1.0) == "fails"
    assert claims.combine(["holds", "holds"]) == "holds"
    assert claims.combine(["holds", "not-run"]) == "not-run" and claims.combine(["fails", "not-run"]) == "fails"
    assert claims.combine(["holds", "inconclusive"]) == "inconclusive"
    assert claims.combine(["holds", "holds", "fails"], "majority") == "holds"
    assert claims.combine(["holds", "fails", "not-run"], "majority") == "not-run"  # the unknown pair decides
    assert claims.combine(["fails", "fails", "holds", "holds"], "majority") == "fails"  # half is not 'generally'


# --- the shipped claims file -------------------------------------------------------------------------------------


def test_every_method_and_table_named_in_claims_exists():
    shipped = claims.load_claims()
    known = registry.all_methods()
    figures = {f["id"] for f in tomllib.loads(claims.FIGURES_PATH.read_text())["figures"]}
    for c in shipped:
        assert c.table or c.figure or c.unchecked or c.origin == "suite", c.id
        if c.figure:
            assert c.figure in figures, c.id
        for method in c.methods:
            assert method in known, f"{c.id}: {method} is not in the registry"
        if c.table:
            rows = {r.method for r in tables.load_table(c.table).rows}
            # every learned method of the claim is a row of its table, so the paper's number is found
            assert {m for m in c.methods if not known[m].blind} <= rows, c.id
    assert len({c.id for c in shipped}) == len(shipped) >= 30
    assert sum(c.origin == "suite" for c in shipped) >= 3


def test_the_papers_own_numbers_support_its_claims(home):
    """Each checked claim with a table, decided on the paper's printed numbers: hand-checked against the tables."""
    results, _ = claims.check("synth", "small", claims=claims.load_claims(), runs=None, resamples=10)
    paper = {r.claim.id: r.paper_verdict for r in results}
    assert paper["cascaded-over-e2e"] == "holds"  # 15 of 21 pairs (ASR-WSLLN beats only WSLLN+L_sem)
    assert paper["sil-over-weak-baselines-r1"] == "holds"  # 30.26 above every baseline (at most 28.80)
    assert paper["lrob-no-significant-effect"] == "holds"  # 30.26 - 30.02 = 0.24, inside ±1
    assert paper["sil-comparable-to-text-r1-0.3"] == "holds"  # 49.46 - 49.77 = -0.31 > -1
    assert paper["sil-faster-than-asr-base"] == "holds"  # 0.044 s below 0.090 and 0.094
    assert paper["lseq-over-ldis"] == "" and paper["sil-over-prior"] == ""  # no paper number on one side
    cascaded = next(r for r in results if r.claim.id == "cascaded-over-e2e")
    assert sum(p.paper_difference > 0 for p in cascaded.pairs) == 15


HEAD = "[[claims]]\nid = 'x'\norigin = 'paper'\nsource = 's'\nquote = 'q'\n"
PAIR = "a = ['sil']\nb = ['base']\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (HEAD, "needs a and b"),
        (HEAD.replace("'paper'", "'them'") + "unchecked = 'w'\n", "origin 'them'"),
        (HEAD + PAIR + "relation = 'bigger'\nmetric = 'R1@0.5'\n", "relation 'bigger'"),
        (HEAD + PAIR + "relation = 'equivalent'\nmetric = 'R1@0.5'\n", "needs a positive margin"),
        (HEAD + PAIR + "relation = 'greater'\nmetric = 'R1@0.5'\nmargin = 1.0\n", "takes no margin"),
        (HEAD + PAIR + "relation = 'greater'\nmetric = 'R2@0.5'\n", "metric 'R2@0.5'"),
        (HEAD + "pairs = [['sil', 'sil']]\nrelation = 'greater'\nmetric = 'R1@0.5'\n", "compared with itself"),
        (HEAD + "pairs = [['sil@all-hi', 'sil']]\nrelation = 'less'\nmetric = 'R1@0.5'\n", "KIND-LEVEL"),
        (HEAD + "table = 12\nunchecked = 'w'\n", "table 12"),
        (HEAD + "figure = 'fig7'\nunchecked = 'w'\n", "figure 'fig7'"),
        (HEAD + "unchecked = 'w'\nmetric = 'mIoU'\n", "takes no comparison"),
        (HEAD + "unchecked = 'w'\nwhere = 1\n", "unknown key"),
        ((HEAD + "unchecked = 'w'\n") * 2, "duplicate"),
        ("claims = 3\n", "no [[claims]]"),
        ("[[claims]\n", "not valid TOML"),
    ],
)
def test_a_malformed_claims_file_is_one_clear_error(tmp_path, text, error):
    path = tmp_path / "claims.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        claims.load_claims(path)
    assert str(path) in str(info.value)


def test_the_report_includes_the_claims_check(store, tmp_path):
    from bench import report

    out = tmp_path / "report"
    written = report.write_report(out, "synth", "small")
    assert out / "claims.md" in written and "(claims.md)" in (out / "index.md").read_text()
    text = (out / "claims.md").read_text()
    sections = re.findall(r"^## (.*)$", text, re.M)
    assert sections == [
        "synth/small, test split val_2: every claim",
        "synth/small, test split test-ood: the claims the paper never tested",
        "activitynet-captions/small, test split val_2: every claim",
        "activitynet-cd/small, test split val_2: every claim",
        "activitynet-cd/small, test split test-ood: the claims the paper never tested",
    ]
    # the real-annotations section: the paper's SIL against the measured prior of the hand-made store
    real = text.split("## activitynet-captions/small")[1].split("## activitynet-cd")[0]
    assert re.search(r"^\| sil-over-prior \|.*\*\*holds\*\*", real, re.M)
    assert "| sil | prior | holds | +20.26 |" in real
