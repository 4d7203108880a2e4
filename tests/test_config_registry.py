"""Typed configs and overrides; the method registry and its agreement with the paper's tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bench import config as cfg
from bench import context as spec_store
from bench import tables
from methods import registry


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    layers: int = 2
    bias: bool = True
    ratios: tuple[float, ...] = (0.5,)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    mode: str = "a"
    train: Inner = field(default_factory=Inner)
    limit: int | None = None


def test_overrides_cast_to_field_types():
    out = cfg.apply_overrides(
        Outer(),
        {
            "train.lr": "2e-4",
            "train.layers": "4",
            "train.bias": "false",
            "train.ratios": "0.15,0.3",
            "limit": "7",
            "name": "y",
        },
    )
    assert out == Outer(name="y", train=Inner(lr=2e-4, layers=4, bias=False, ratios=(0.15, 0.3)), limit=7)
    assert cfg.apply_overrides(Outer(limit=3), {"limit": "none"}).limit is None


def test_unknown_or_bad_override_keys_are_errors():
    with pytest.raises(ValueError, match="valid keys: name, mode, train.lr"):
        cfg.apply_overrides(Outer(), {"train.lrr": "1"})
    with pytest.raises(ValueError, match="expects int"):
        cfg.apply_overrides(Outer(), {"train.layers": "two"})
    with pytest.raises(ValueError, match="is a group"):
        cfg.apply_overrides(Outer(), {"train": "1"})
    with pytest.raises(ValueError, match="key=value"):
        cfg.parse_overrides(["train.lr"])


def test_config_hash_is_stable_and_sensitive():
    a, b = Outer(), Outer(train=Inner(lr=2e-3))
    assert cfg.config_hash(a) == cfg.config_hash(Outer()) and len(cfg.config_hash(a)) == 12
    assert cfg.config_hash(a) != cfg.config_hash(b)


def test_profiles_follow_appendix_b2():
    assert cfg.GROUNDING_TRAIN["paper"].lr == 3e-4 and cfg.GROUNDING_TRAIN["paper"].warmup_updates == 200
    assert cfg.GROUNDING_TRAIN["paper"].epochs == 10
    assert cfg.PRETRAIN_TRAIN["paper"].lr == 2e-4 and cfg.PRETRAIN_TRAIN["paper"].warmup_updates == 7000
    assert cfg.PRETRAIN_TRAIN["paper"].epochs == 40
    assert set(cfg.GROUNDING_TRAIN) == set(cfg.PROFILES) == set(cfg.PRETRAIN_TRAIN)
    with pytest.raises(ValueError):
        cfg.check_profile("huge")


def test_every_table_row_names_a_registered_or_planned_method():
    known = registry.all_methods()
    for table in tables.load_all():
        for row in table.rows:
            if table.kind == "config":
                continue
            if row.method is None:
                assert row.not_reproducible, f"table {table.number} row {row.id}"
                continue
            assert row.method in known, f"table {table.number} row {row.id} names unknown method {row.method}"
            spec = known[row.method]
            assert spec.implemented or row.method in registry.planned()


def test_registry_rejects_bad_specs_and_duplicates(monkeypatch):
    monkeypatch.setattr(spec_store, "_REGISTRY", {})
    with pytest.raises(ValueError, match="lower-case"):
        registry.MethodSpec("Bad Name", "t", (), "speech", "weak")
    with pytest.raises(ValueError, match="stage"):
        registry.MethodSpec("x", "t", ("train",), "speech", "weak")
    with pytest.raises(ValueError, match="run function"):
        registry.register(registry.MethodSpec("x", "t", (), "speech", "weak"))
    spec = registry.MethodSpec("x", "t", (), "speech", "weak", run=lambda ctx: None)
    registry.register(spec)
    with pytest.raises(ValueError, match="twice"):
        registry.register(spec)
    assert registry.get("x") is spec and registry.all_methods()["x"] is spec


def test_every_paper_method_is_known_with_stages_query_and_supervision():
    methods = registry.all_methods()
    for name in (
        "sil",
        "base",
        "asr-rtbpn",
        "vslnet",
        "vgcl",
        "sbase",
        "base+lsem",
        "wslln+lsem",
        "rtbpn+lsem",
        "base+wav2vec2",
        "base+vilt",
        "base+lut",
        "asr-wslln",
        "asr-scn",
    ):
        assert name in methods
    assert methods["sil"].stages == ("pretrain", "ground") and methods["sil"].supervision == "weak"
    assert methods["asr-rtbpn"].query == "asr-text" and methods["vslnet"].supervision == "full"


# -- the rows and the planned methods come from the tables (issue 16) ----------------------------------------------


@pytest.fixture
def own_tables(tmp_path, monkeypatch):
    """A copy of ``tables/`` and of ``methods/planned.toml`` that a test may edit; the registry reads the copies."""
    folder = tmp_path / "tables"
    folder.mkdir()
    for path in tables.TABLES_DIR.glob("*.toml"):
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    planned = tmp_path / "planned.toml"
    planned.write_text(registry.PLANNED_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(tables, "TABLES_DIR", folder)
    monkeypatch.setattr(registry, "PLANNED_PATH", planned)
    return folder, planned


def add_row(folder, number: int, row_id: str, method: str) -> None:
    path = folder / f"table{number:02d}.toml"
    path.write_text(path.read_text() + f'\n[[rows]]\nid = "{row_id}"\nmethod = "{method}"\nlabel = "x"\ninfo = {{}}\n')


def test_a_method_fills_the_rows_the_tables_give_it():
    # the rows that drifted while they were a second list: SIL's in Tables 2 and 9, ASR-RTBPN's in Table 2
    assert registry.get("sil").rows == ("table1:sil", "table2:sil", "table3:sil", "table4:sil", "table9:sil",
                                        "table11:sil")  # fmt: skip
    assert registry.get("asr-rtbpn").rows == ("table1:asr-rtbpn", "table2:asr-rtbpn", "table9:asr-rtbpn")
    assert registry.get("base").rows == ("table1:base", "table3:base")
    assert registry.get("base-text").rows == () and registry.get("sil-freq-only").rows == ()  # a reference, a figure
    assert tables.rows_by_method()["vgcl"] == ((1, "vgcl"), (10, "vgcl"))


def test_a_row_added_to_a_table_is_a_row_of_its_method(own_tables):
    folder, _ = own_tables
    add_row(folder, 5, "base-again", "base")
    assert registry.get("base").rows == ("table1:base", "table3:base", "table5:base-again")


def test_planned_means_named_by_the_tables_and_registered_by_nothing(capsys):
    registered = registry.registered()
    named = [m for m in tables.named_methods() if m not in registered]
    # every method the tables name runs: the cascades' fine-tune cells were the last (issue 17); the planned path
    # itself is what the next test exercises with a row of its own
    assert list(registry.planned()) == named == []
    cells = ["asr-wslln-ft", "asr-scn-ft", "asr-rtbpn-ft"]
    assert set(cells) <= set(tables.named_methods())
    assert all(registry.get(m).rows == (f"table1:{m.removesuffix('-ft')}",) for m in cells)
    assert registry.get("vgcl").supervision == "full" and registry.get("vgcl").implemented
    from bench import cli

    assert cli.main(["methods"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["vgcl"] == ["vgcl", "runs", "speech", "full", "pretrain+ground", "1,10", "methods/vgcl.py:run"]
    assert lines["base+lut"][1] == lines["base"][1] == lines["sil-ft"][1] == "runs"
    # the cascade's run is the text method's (methods/cascade.py registers SCN's run on the ASR's transcripts)
    assert lines["asr-scn-ft"] == ["asr-scn-ft", "runs", "asr-text", "weak", "asr+ground", "1", "methods/scn.py:run"]


def test_a_new_table_row_makes_a_planned_method_once_described(own_tables, capsys):
    folder, planned = own_tables
    add_row(folder, 3, "newnet", "newnet")
    with pytest.raises(ValueError, match=r"table03\.toml names method 'newnet'.*add \['newnet'\] to planned\.toml"):
        registry.get("newnet")
    from bench import cli

    assert cli.main(["methods"]) == 0
    shown = capsys.readouterr()
    assert "newnet" not in shown.out.split() and "the tables name newnet, which nothing registers" in shown.err
    planned.write_text(planned.read_text() + '\n["newnet"]\ntitle = "NewNet"\nstages = ["ground"]\nquery = "speech"\n'
                       'supervision = "weak"\nissue = 99\ndescription = "a test row"\n')  # fmt: skip
    spec = registry.get("newnet")
    assert (spec.title, spec.stages, spec.issue, spec.implemented, spec.rows) == (
        "NewNet", ("ground",), 99, False, ("table3:newnet",))
    assert cli.main(["methods"]) == 0
    line = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("newnet ")]
    assert line == [["newnet", "planned", "(#99)", "speech", "weak", "ground", "3", "-"]]
    from bench import run

    with pytest.raises(NotImplementedError, match="issue 99 adds it"):
        run.methods_to_run("newnet", 3)
    assert cli.main(["run", "--method", "newnet", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench run: error:") and "not implemented" in err and "Traceback" not in err


def test_planned_toml_holds_only_what_the_tables_cannot_say(own_tables):
    folder, planned = own_tables
    add_row(folder, 3, "newnet", "newnet")
    good = planned.read_text() + ('\n["newnet"]\ntitle = "NewNet"\nstages = ["ground"]\nquery = "speech"\n'
                                  'supervision = "full"\ndescription = "d"\n')  # fmt: skip
    registry.all_methods()  # the good file is accepted
    entry = 'title = "t"\nstages = ["ground"]\nquery = "speech"\nsupervision = "weak"\ndescription = "d"\n'
    cases = {
        f'{good}\n["base"]\n{entry}': r"\['base'\] describes a method that is registered now; delete the entry",
        f'{good}\n["nosuch"]\n{entry}': r"\['nosuch'\] is not named by any table or figure",
        good.replace('query = "speech"\nsupervision = "full"', 'supervision = "full"'): r"missing: \['query'\]",
        good.replace('supervision = "full"', 'supervision = "strong"'): r"\['newnet'\]: method newnet: supervision",
        good.replace('title = "NewNet"', 'title = "NewNet"\nissue = "soon"'): r"wrong or unknown: \['issue'\]",
        good + "\n[broken\n": "not valid TOML",
    }
    for text, message in cases.items():
        planned.write_text(text)
        with pytest.raises(ValueError, match=message) as err:
            registry.all_methods()
        assert str(planned) in str(err.value)


def test_an_unknown_name_is_answered_with_each_close_name_once():
    with pytest.raises(KeyError) as err:
        registry.get("base+lasp")  # base+asp is both registered and named by the tables: suggested once
    names = str(err.value).split("Did you mean ")[1].split("?")[0].split(", ")
    assert "base+asp" in names and len(names) == len(set(names))
