"""An argparse parser over dataclass fields that reads them the way `transformers.HfArgumentParser` does, without
importing transformers (seconds): `miracle train --help`, `miracle collect --help` and mistakes in MIRACLE's own
flags come at once.

Each field is a flag `--field_name` (and `--field-name`); `bool` takes an optional value (`--flag`, `--flag false`)
and a `True` default adds `--no_field_name`; `list[X]` takes one or more values; `Literal[...]` is a choice;
`X | None` reads as X. The dataclasses' `_argument_group_name` (also honoured by HfArgumentParser) titles a group
per dataclass in the help, with the class docstring beneath it. `tests/test_dataclass_parser.py` checks
that HfArgumentParser builds the same flags from MIRACLE's dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

TRUE_WORDS, FALSE_WORDS = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def string_to_bool(text) -> bool:
    """`yes/no`, `true/false`, `t/f`, `y/n`, `1/0` (any case) -> bool."""
    if isinstance(text, bool):
        return text
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected one of yes/no, true/false, t/f, y/n, 1/0; got {text!r}")


def _without_none(annotation):
    """`X | None` -> (X, True); anything else -> (annotation, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"Only `X | None` unions can be flags; got {annotation}.")
        return members[0], True
    return annotation, False


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_field(group, field: dataclasses.Field, annotation) -> None:
    """Add the flag(s) of one dataclass field to `group` (a parser or an argument group)."""
    options = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
    kwargs = dict(field.metadata)
    aliases = kwargs.pop("aliases", [])
    options += [aliases] if isinstance(aliases, str) else list(aliases)
    kind, _ = _without_none(annotation)
    default = _default(field)
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if kind is bool:
        kwargs.update(type=string_to_bool)
        if default is not None:
            kwargs.setdefault("nargs", "?")
            kwargs.setdefault("const", True)
            if default is dataclasses.MISSING:
                kwargs.pop("required")
                kwargs["default"] = False
    elif typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        by_text = {str(choice): choice for choice in choices}
        kwargs.update(choices=choices, type=lambda text: by_text.get(text, text))
    elif typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        kwargs.update(type=item, nargs="+")
    else:
        kwargs["type"] = kind
    group.add_argument(*options, **kwargs)
    if kind is bool and default is True:
        negated = {k: v for k, v in field.metadata.items() if k not in ("aliases", "nargs", "const")}
        group.add_argument(f"--no_{field.name}", f"--no-{field.name.replace('_', '-')}", action="store_false",
                           dest=field.name, **{**negated, "default": False})


class DataclassArgumentParser(argparse.ArgumentParser):
    """Flags from dataclasses (see the module docstring), parsed into instances of them.

    Abbreviated flags are not accepted (`--from` for `--from_model`): a command that passes the flags it does not
    know on to another parser (`miracle train` hands the Trainer's to `HfArgumentParser`) must not take theirs.
    """

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)
        self.dataclass_types = list(dataclass_types)
        for dtype in self.dataclass_types:
            title = getattr(dtype, "_argument_group_name", None)
            group = self.add_argument_group(title, _docstring(dtype)) if title else self
            hints = typing.get_type_hints(dtype)
            for field in dataclasses.fields(dtype):
                if field.init:
                    add_field(group, field, hints[field.name])

    def _instances(self, values: dict) -> tuple:
        out = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            out.append(dtype(**{k: v for k, v in values.items() if k in names}))
        return tuple(out)

    def parse_known_into_dataclasses(self, argv: list[str]) -> tuple[tuple, list[str]]:
        """(an instance per dataclass, the arguments that are none of their flags)."""
        namespace, rest = self.parse_known_args(argv)
        return self._instances(vars(namespace)), rest

    def parse_args_into_dataclasses(self, argv: list[str]) -> tuple:
        """An instance per dataclass; an unknown flag is an argparse error (status 2)."""
        return self._instances(vars(self.parse_args(argv)))

    def parse_dict(self, settings: dict, allow_extra_keys: bool = False) -> tuple[tuple, dict]:
        """(an instance per dataclass from a mapping of field names to values, the other keys); other keys are
        refused (naming them and the valid ones) unless `allow_extra_keys`."""
        names = {f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init}
        extra = {k: v for k, v in settings.items() if k not in names}
        if extra and not allow_extra_keys:
            raise ValueError(f"Unknown settings {sorted(extra)}; valid: {sorted(names)}.")
        return self._instances({k: v for k, v in settings.items() if k in names}), extra


def _docstring(dtype) -> str | None:
    doc = dtype.__doc__ or ""
    return None if doc.startswith(f"{dtype.__name__}(") else " ".join(doc.split()) or None


def read_settings_file(path: str, command: str) -> dict:
    """A command's flags from a JSON or YAML file: a mapping of field names to values."""
    import json
    from pathlib import Path

    from .model_path import UsageError

    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        settings = json.loads(text)
    else:
        import yaml

        settings = yaml.safe_load(text)
    if not isinstance(settings, dict):
        raise UsageError(f"{path} must hold a mapping of `{command}` flags to values.")
    return settings
