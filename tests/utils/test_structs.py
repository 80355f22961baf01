"""kzoo.utils.structs: frozen dataclasses from nested mappings, every key and value checked and named; moved flat
keys read where they went; presets; the range checks."""

from __future__ import annotations

import dataclasses
import warnings
from typing import ClassVar

import pytest

from kzoo.utils.structs import (
    INT32_MAX,
    ConfigError,
    check_choice,
    check_count,
    check_finite,
    check_fraction,
    dataclass_from_dict,
    move_flat_keys,
)


@dataclasses.dataclass(frozen=True)
class Head:
    kind: str = "plain"
    channels: int = 8
    ratios: tuple[float, ...] = (1.0,)


@dataclasses.dataclass(frozen=True)
class Net:
    moved_fields: ClassVar[dict[str, str]] = {"head_channels": "head.channels", "head": "head.kind"}
    presets: ClassVar[dict]

    name: str = "net"
    rate: float = 0.5
    depth: int | None = None
    flag: bool = False
    head: Head = Head()

    def __post_init__(self) -> None:
        if self.rate > 1:
            raise ValueError("rate must be <= 1")


Net.presets = {"wide": lambda: Net(name="wide", head=Head(channels=64, ratios=(0.5, 2.0)))}


def test_nested_values_are_converted_and_checked():
    net = dataclass_from_dict(Net, {"rate": "1e-3", "depth": 3, "head": {"ratios": [1, 2]}})
    assert net == Net(rate=0.001, depth=3, head=Head(ratios=(1.0, 2.0)))
    assert dataclass_from_dict(Net, {"depth": None}).depth is None


@pytest.mark.parametrize(
    "values, message",
    [
        ({"size": 1}, r"unknown config key 'model.size'; known keys here: \['depth', 'flag', 'head', 'name', 'rate'\]"),
        ({"rate": "fast"}, "config key 'model.rate' must be a number, got 'fast'"),
        ({"rate": float("nan")}, "config key 'model.rate' must be a finite number"),
        ({"rate": True}, "config key 'model.rate' must be a number"),
        ({"depth": 2.5}, "config key 'model.depth' must be int"),
        ({"depth": True}, "config key 'model.depth' must be int"),
        ({"flag": "yes"}, "config key 'model.flag' must be bool"),
        ({"head": 3}, "config key 'model.head.kind' must be str"),  # the old flat 'head', moved
        ({"head": {"ratios": 1.0}}, "config key 'model.head.ratios' must be a list"),
        ({"head": {"width": 1}}, "unknown config key 'model.head.width'"),
        ({"head": {"channels": [8]}}, "config key 'model.head.channels' must be int"),
        ({"rate": 2.0}, "config section 'model': rate must be <= 1"),
        ({"preset": "narrow"}, r"config key 'model.preset' must be one of \['wide'\]"),
    ],
)
def test_every_problem_names_its_dotted_key(values, message):
    with pytest.raises(ConfigError, match=message):
        dataclass_from_dict(Net, values, "model.")


def test_a_preset_is_changed_key_by_key():
    net = dataclass_from_dict(Net, {"preset": "wide", "head": {"channels": 32}})
    assert net == Net(name="wide", head=Head(channels=32, ratios=(0.5, 2.0)))


def test_moved_flat_keys_are_read_where_they_went_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'model.head_channels' has moved to 'model.head.channels'"):
        net = dataclass_from_dict(Net, {"head_channels": 16}, "model.")
    assert net.head == Head(channels=16)
    with pytest.warns(DeprecationWarning, match="'head' has moved to 'head.kind'"):
        assert dataclass_from_dict(Net, {"head": "deep"}).head == Head(kind="deep")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new form of a key that is also a section's name: no warning
        assert dataclass_from_dict(Net, {"head": {"channels": 4}}).head.channels == 4
    with pytest.raises(ConfigError, match="has moved to 'model.head.channels', which is given too: keep one"):
        with pytest.warns(DeprecationWarning):
            dataclass_from_dict(Net, {"head_channels": 16, "head": {"channels": 4}}, "model.")
    with pytest.raises(ConfigError, match="config key 'train.old' has moved: use train.new"):
        dataclass_from_dict(Net, {"old": 1}, "train.", moved_keys={"train.old": "train.new"})


def test_move_flat_keys_alone():
    with pytest.warns(DeprecationWarning):
        assert move_flat_keys({"a_b": 1, "c": 2}, {"a_b": "a.b"}) == {"a": {"b": 1}, "c": 2}


def test_range_checks():
    check_choice("k", "x", ("x", "y"))
    with pytest.raises(ConfigError, match=r"config key 'k' must be one of \['x', 'y'\], got 'z'"):
        check_choice("k", "z", ("x", "y"))
    for ok in (0, 0.5, 1, None):
        check_fraction("p", ok)
    for bad in (-0.1, 1.01, float("nan"), "0.5", True):
        with pytest.raises(ConfigError, match="config key 'p' must be"):
            check_fraction("p", bad)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\), got 1"):
        check_fraction("p", 1, high_open=True)
    check_count("n", INT32_MAX)
    with pytest.raises(ConfigError, match=r"must be <= 2147483647 \(int32\)"):
        check_count("n", INT32_MAX + 1)
    with pytest.raises(ConfigError, match="must be >= 1, got 0"):
        check_count("n", 0)
    with pytest.raises(ConfigError, match="must be an int"):
        check_count("n", 2.0)
    check_finite("x", 0.0, 0.0)
    with pytest.raises(ConfigError, match="must be > 0.0, got 0.0"):
        check_finite("x", 0.0, 0.0, low_open=True)
    with pytest.raises(ConfigError, match="must be a finite number"):
        check_finite("x", float("inf"))
