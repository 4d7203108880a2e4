"""Typed configs and overrides; the method registry and its agreement with the paper's tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bench import config as cfg
from bench import tables
from methods import registry
from methods import spec as spec_store


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
            assert spec.implemented or row.method in registry.PLANNED


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
