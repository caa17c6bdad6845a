"""The user-editable description of what to collect: attributes, their aspects, and for each aspect the wordings
and in-context examples that fill the instruction template (YAML or JSON, see `attributes.yaml`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ATTRIBUTES_FILE = Path(__file__).resolve().parent / "attributes.yaml"
SLOTS = ("manner", "character", "adjective")


@dataclass
class AspectDescription:
    """One aspect: several wordings of each template slot and in-context example exchanges."""

    attribute: str
    name: str
    index: int  # the aspect's `tag` in the attribute's aspect order
    manner: list[str]
    character: list[str]
    adjective: list[str]
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class CollectionSpec:
    """Attributes and aspects to collect, with the templates (None = the appendix-A defaults)."""

    aspects: dict[str, list[AspectDescription]]  # attribute -> aspects in tag order
    template: str | None = None
    test_template: str | None = None
    sources: list[str] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def attributes(self) -> dict[str, list[str]]:
        """attribute -> aspect names (the order `miracle train --attributes` and the model config use)."""
        return {attribute: [a.name for a in aspects] for attribute, aspects in self.aspects.items()}

    def aspect(self, attribute: str, name: str) -> AspectDescription:
        if attribute not in self.aspects:
            raise KeyError(f"Unknown attribute {attribute!r}; valid: {list(self.aspects)}.")
        for aspect in self.aspects[attribute]:
            if aspect.name == name:
                return aspect
        raise KeyError(f"Unknown aspect {name!r} of {attribute!r}; valid: {self.attributes[attribute]}.")

    def select(self, names: list[str] | None) -> CollectionSpec:
        """Only the named attributes (all when `names` is empty), in the order given."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.aspects]
        if unknown:
            raise ValueError(f"Unknown attribute(s) {unknown}; the attributes file has {list(self.aspects)}.")
        return CollectionSpec({n: self.aspects[n] for n in names}, self.template, self.test_template, self.sources,
                              self.fingerprint)


def _read_mapping(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("attributes"), dict) or not data["attributes"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty `attributes:` mapping (see {DEFAULT_ATTRIBUTES_FILE}).")
    return data


def _strings(value, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{where} must be a non-empty string or list of non-empty strings; got {value!r}.")
    return [v.strip() for v in values]


def _aspect(attribute: str, name: str, index: int, body, where: str) -> AspectDescription:
    if not isinstance(body, dict):
        raise ValueError(f"{where}: aspect {attribute}.{name} must be a mapping with {list(SLOTS)} and `examples`.")
    unknown = set(body) - set(SLOTS) - {"examples"}
    if unknown:
        raise ValueError(f"{where}: aspect {attribute}.{name} has unknown keys {sorted(unknown)}; valid: {[*SLOTS, 'examples']}.")
    missing = [s for s in SLOTS if s not in body]
    if missing:
        raise ValueError(f"{where}: aspect {attribute}.{name} misses {missing} (each a wording or a list of wordings).")
    examples = body.get("examples") or []
    for example in examples:
        if not isinstance(example, dict) or not {"post", "response"} <= set(example):
            raise ValueError(f"{where}: examples of {attribute}.{name} must be {{post: ..., response: ...}}; got {example!r}.")
    slots = {s: _strings(body[s], f"{where}: {attribute}.{name}.{s}") for s in SLOTS}
    return AspectDescription(attribute, name, index, examples=[{"post": e["post"], "response": e["response"]} for e in examples],
                             **slots)


def load_collection_spec(paths: str | Path | list[str | Path] | None = None) -> CollectionSpec:
    """Read one or several attribute files (YAML or JSON; later files add attributes or replace same-named ones).

    `None` or `"default"` is the packaged file with the project's three attributes (`attributes.yaml`).
    """
    paths = [paths] if paths is None or isinstance(paths, (str, Path)) else list(paths)
    paths = [DEFAULT_ATTRIBUTES_FILE if p in (None, "default") else Path(p) for p in paths] or [DEFAULT_ATTRIBUTES_FILE]
    aspects: dict[str, list[AspectDescription]] = {}
    template = test_template = None
    digest = hashlib.sha256()
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Attributes file {str(path)!r} does not exist.")
        data = _read_mapping(path)
        digest.update(path.read_bytes())
        for attribute, body in data["attributes"].items():
            if not isinstance(body, dict) or len(body) < 2:
                raise ValueError(f"{path}: attribute {attribute!r} needs at least two aspects; got {body!r}.")
            aspects[attribute] = [_aspect(attribute, name, i, spec, str(path)) for i, (name, spec) in enumerate(body.items())]
        template = data.get("template", template)
        test_template = data.get("test_template", test_template)
    return CollectionSpec(aspects, template, test_template, [str(p) for p in paths], digest.hexdigest()[:16])


def read_topics(path: str | Path | None = None) -> list[str]:
    """Seed topics, one persona-style sentence per line (default: the project's `corpus/topics.txt`)."""
    from ..corpus import CORPUS_DIR

    path = Path(path) if path is not None else CORPUS_DIR / "topics.txt"
    if not path.is_file():
        raise FileNotFoundError(f"Topics file {str(path)!r} does not exist.")
    topics = list(dict.fromkeys(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()))
    if not topics:
        raise ValueError(f"Topics file {str(path)!r} has no topics (one sentence per line).")
    return topics
