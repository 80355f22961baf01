"""Frozen dataclasses from nested mappings (YAML), every key and value checked: the one such loader in kzoo.

``kzoo.config`` builds experiment configs with it; models use it for their own specs (``BlockSpec``,
``MaskRCNNConfig`` from a saved Keras config).
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    """ConfigError naming ``key`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"config key '{key}' must be one of {list(choices)}, got {value!r}")


def check_range(
    key: str, value: float | None, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    """ConfigError naming ``key`` unless ``low <= value <= high`` (``low < value`` with ``low_open``);
    ``None`` values pass (optional keys)."""
    if value is None:
        return
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigError(f"config key '{key}' must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"config key '{key}' must be <= {high}, got {value!r}")


def _convert(value: Any, annotation: Any, key: str, moved_keys: Mapping[str, str]) -> Any:
    """Check and convert a YAML value to a field's annotated type."""
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dataclass_from_dict(typing.cast(type, annotation), value, key + ".", moved_keys)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, moved_keys)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        item = args[0]
        return tuple(_convert(v, item, key, moved_keys) for v in value)
    if annotation is float:
        # YAML 1.1 reads "1e-3" (no dot) as a string: accept any spelling Python reads as a finite number
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
        return float(value)
    if annotation in (int, str, bool, dict) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"config key '{key}' must be {annotation.__name__}, got {value!r}")
    return value


def move_flat_keys(
    values: Mapping[str, Any], moved: Mapping[str, str], prefix: str = "", stacklevel: int = 2
) -> dict[str, Any]:
    """``values`` with each old flat key of ``moved`` (``rpn_nms_threshold``) put where it went (``moved`` maps it to
    ``section.field``: ``rpn.nms_threshold``, or to a new name beside it: NIN's ``classes`` -> ``num_classes``),
    each with a ``DeprecationWarning`` naming both dotted keys.

    A key that is also a section's name (``backbone``, now ``backbone.name``) counts as old only when its value is
    not a mapping or a dataclass (the new form).

    Raises:
        ConfigError: an old key and its new place both given.
    """
    new = {}
    old = {}
    for key, value in values.items():
        target = moved.get(key)
        if target is None or (
            target.startswith(key + ".") and (isinstance(value, Mapping) or dataclasses.is_dataclass(value))
        ):
            new[key] = value
        else:
            old[key] = value
    for key, value in old.items():
        warnings.warn(
            f"config key '{prefix}{key}' has moved to '{prefix}{moved[key]}' (the old key is read for now)",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        if "." not in moved[key]:  # renamed in place
            if moved[key] in new:
                raise ConfigError(
                    f"config key '{prefix}{key}' has moved to '{prefix}{moved[key]}', which is given too: keep one"
                )
            new[moved[key]] = value
            continue
        section, field = moved[key].split(".", 1)
        place = new.setdefault(section, {})
        if not isinstance(place, Mapping) or field in place:
            raise ConfigError(
                f"config key '{prefix}{key}' has moved to '{prefix}{moved[key]}', which is given too: keep one"
            )
        new[section] = {**place, field: value}
    return new


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested mappings merged key by key (a preset and its changes, a config file
    and its ``--set`` overrides)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def dataclass_from_dict(
    cls: type[_T], values: Mapping[str, Any], prefix: str = "", moved_keys: Mapping[str, str] | None = None
) -> _T:
    """Build the (frozen) dataclass ``cls`` from a nested mapping, checking every key and value type.

    A ``preset`` key picks a starting point from ``cls.presets`` (a mapping of names to functions returning an
    instance), which the other keys change (nested sections key by key), e.g. ``MaskRCNNConfig``'s
    ``preset: torchvision``. Keys that moved inside ``cls`` (``cls.moved_fields``, old flat key -> dotted new
    place, e.g. ``MaskRCNNConfig``'s ``rpn_nms_threshold`` -> ``rpn.nms_threshold``) are read where they went, with
    a ``DeprecationWarning`` (:func:`move_flat_keys`).

    Args:
        cls: the dataclass; nested dataclass fields are built from nested mappings.
        values: the keys and values (YAML-parsed).
        prefix: the dotted path of ``values`` in the file, for error messages (e.g. ``"model."``).
        moved_keys: dotted keys that no longer exist -> where they went (named in the error).

    Raises:
        ConfigError: an unknown or moved key, a value of the wrong type, or one the dataclass refuses, named
            with its dotted path.
    """
    moved_keys = moved_keys or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(typing.cast(Any, cls))}  # cls is a dataclass (the contract)
    moved_fields: Mapping[str, str] | None = getattr(cls, "moved_fields", None)
    values = move_flat_keys(values, moved_fields, prefix, stacklevel=3) if moved_fields else dict(values)
    presets: Any = getattr(cls, "presets", None)
    preset = values.pop("preset", None) if presets else None
    if preset is not None:
        check_choice(f"{prefix}preset", preset, sorted(presets))
        values = merged(dataclasses.asdict(presets[preset]()), values)
    for key in values:
        if f"{prefix}{key}" in moved_keys:
            raise ConfigError(f"config key '{prefix}{key}' has moved: use {moved_keys[prefix + key]}")
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'; known keys here: {sorted(fields)}")
    kwargs = {name: _convert(values[name], hints[name], prefix + name, moved_keys) for name in values}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:  # a dataclass's own check (e.g. MaskRCNNConfig.__post_init__)
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}': {error}") from error


#: The largest values of the integer types counts become (tensor sizes and indices are int32, pixel counts int64).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def check_fraction(key: str, value: Any, high_open: bool = False) -> None:
    """ConfigError naming ``key`` unless ``value`` is a finite number in ``[0, 1]`` (``[0, 1)`` with ``high_open``):
    probabilities, IoU thresholds, fractions, dropout rates; ``None`` passes (optional keys)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ConfigError(f"config key '{key}' must be a number in [0, 1], got {value!r}")
    number = float(value)
    if not (0.0 <= number < 1.0 if high_open else 0.0 <= number <= 1.0):  # NaN fails both
        raise ConfigError(f"config key '{key}' must be in [0, {'1)' if high_open else '1]'}, got {value!r}")


def check_count(key: str, value: Any, low: int = 1, high: int = INT32_MAX) -> None:
    """ConfigError naming ``key`` unless ``value`` is an int in ``[low, high]`` (by default a positive count that
    fits int32, the type of the tensor sizes it becomes); ``None`` passes (optional keys)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ConfigError(f"config key '{key}' must be an int, got {value!r}")
    if not low <= int(value) <= high:
        bound = (
            f">= {low}"
            if int(value) < low
            else f"<= {high}" + (" (int32)" if high == INT32_MAX else " (int64)" if high == INT64_MAX else "")
        )
        raise ConfigError(f"config key '{key}' must be {bound}, got {value!r}")


def check_finite(key: str, value: Any, low: float | None = None, low_open: bool = False) -> None:
    """ConfigError naming ``key`` unless ``value`` is a finite number (``>= low``, or ``> low`` with ``low_open``);
    ``None`` passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    check_range(key, number, low, low_open=low_open)
