"""Type checks driven by a config's declared fields, and clean-ups of backbone configs.

The checks read the dataclass annotations of a config class (`latent_size: int`, `sampler_step_size: float | None`,
...), so a field added to the class is checked without further code. numpy scalars and 0-d tensors are accepted where
a number is meant and become plain Python numbers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from functools import lru_cache

from transformers import PreTrainedConfig


def as_python_scalar(value):
    """numpy scalars, 0-d numpy arrays and 0-d tensors -> the Python number (or bool) they hold; anything else as is."""
    if not isinstance(value, (bool, int, float, str)) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def describe_type(hint) -> str:
    """Words for a type annotation, for error messages ("an integer or None", "true or false", ...)."""
    if hint is type(None) or hint is None:
        return "None"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        return "a list" if item is typing.Any else f"a list of ({describe_type(item)})"
    names = {bool: "true or false (a bool)", int: "an integer", float: "a number", str: "a string", dict: "a dict",
             list: "a list"}
    if hint in names:
        return names[hint]
    return f"a {getattr(hint, '__name__', str(hint))}"


class _Mismatch(Exception):
    pass


def _match(value, hint):
    """`value` converted to fit `hint` (numpy / 0-d tensor numbers become Python numbers); `_Mismatch` if it cannot."""
    if hint is typing.Any:
        return value
    if hint is type(None) or hint is None:
        if value is None:
            return value
        raise _Mismatch
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _match(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if as_python_scalar(value) in typing.get_args(hint):
            return as_python_scalar(value)
        raise _Mismatch
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        (item,) = typing.get_args(hint) or (typing.Any,)
        return [_match(v, item) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    value = as_python_scalar(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # an annotation these checks do not understand: leave the value alone


def check_value(name: str, value, hint):
    """`value` if it fits the annotation `hint` (numpy / 0-d tensor numbers converted), else a ValueError naming
    what `name` accepts."""
    try:
        return _match(value, hint)
    except _Mismatch:
        raise ValueError(
            f"`{name}` must be {describe_type(hint)}; got {value!r} ({type(value).__name__})."
        ) from None


def check_finite(name: str, value, lowest: float | None = None) -> float:
    """A finite number (optionally >= `lowest`) as a Python float; numpy / 0-d tensor numbers accepted."""
    number = check_value(name, value, float)
    if not math.isfinite(number) or (lowest is not None and number < lowest):
        bound = f" >= {lowest}" if lowest is not None else ""
        raise ValueError(f"`{name}` must be a finite number{bound}; got {value!r}.")
    return float(number)


@lru_cache(maxsize=None)
def declared_field_types(config_class: type) -> dict[str, object]:
    """Resolved annotations of the dataclass fields declared by `config_class` and its bases below `PreTrainedConfig`
    (the config's own settings, not the generic ones every transformers config has)."""
    field_names = {f.name for f in dataclasses.fields(config_class)}
    hints: dict[str, object] = {}
    for klass in reversed(config_class.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, PreTrainedConfig)) or klass is PreTrainedConfig:
            continue
        namespace = vars(sys.modules[klass.__module__])
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name not in field_names:
                continue
            # One field at a time (`get_type_hints` of the class would also resolve the base class' annotations,
            # some of which name types imported only for type checkers).
            try:
                hints[name] = typing.get_type_hints(_Annotated({name: annotation}), globalns=namespace)[name]
            except Exception:  # an annotation that does not resolve at run time: that field goes unchecked
                continue
    return hints


class _Annotated:
    """An object carrying only the given annotations, for `typing.get_type_hints`."""

    def __init__(self, annotations: dict):
        self.__annotations__ = annotations


def check_declared_fields(config) -> None:
    """Check every declared field of `config` against its annotation; numpy / 0-d tensor numbers are replaced by
    Python numbers in place. A field left at its default is always accepted."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name, hint in declared_field_types(type(config)).items():
        value = getattr(config, name)
        if value is defaults.get(name, dataclasses.MISSING):
            continue
        checked = check_value(name, value, hint)
        if checked is not value:
            setattr(config, name, checked)


def check_config_kwargs(config_class: type, kwargs: dict, reserved: dict[str, str] | None = None) -> dict:
    """`kwargs` for `config_class`, checked: keys must be fields (an unknown key names the closest field and the valid
    ones), keys in `reserved` (key -> how to set it instead) are refused, and declared fields must fit their
    annotation. Returns the kwargs with numpy / 0-d tensor numbers made Python numbers."""
    reserved = reserved or {}
    hints = declared_field_types(config_class)
    own = [name for name in hints if name not in reserved]
    every = {f.name for f in dataclasses.fields(config_class)}
    checked = {}
    for key, value in kwargs.items():
        if key in reserved:
            raise ValueError(f"`{key}` cannot be set here; {reserved[key]}.")
        if key not in every:
            close = difflib.get_close_matches(key, own + sorted(every - set(own)), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown {config_class.__name__} option {key!r}.{hint} Valid options: {own}.")
        checked[key] = check_value(key, value, hints[key]) if key in hints else value
    return checked


def drop_gguf_quantization(sub_config) -> None:
    """Remove a GGUF `quantization_config` from a backbone config.

    Loading a GGUF file de-quantises it to plain float weights, but the config keeps `quant_method: gguf`; a model
    saved from it would reload as "quantized" and refuse training. The weights are plain floats, so the entry goes.
    """
    if sub_config is None or isinstance(sub_config, dict):
        return
    quantization = getattr(sub_config, "quantization_config", None)
    method = quantization.get("quant_method") if isinstance(quantization, dict) else getattr(quantization, "quant_method", None)
    if str(getattr(method, "value", method)).lower() == "gguf":
        del sub_config.quantization_config


__all__ = [
    "as_python_scalar",
    "check_config_kwargs",
    "check_declared_fields",
    "check_finite",
    "check_value",
    "declared_field_types",
    "describe_type",
    "drop_gguf_quantization",
]
