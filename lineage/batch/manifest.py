"""Batch manifests: the YAML or JSON file that lists the suspects of a batch scan.

    version: 1                 # optional; only 1 exists
    alpha: 0.01                # optional family-wise level per scan
    defaults:                  # optional; any suspect field except model/name
      access: text
      max_queries: 64
    suspects:
      - model: /models/candidate-a                  # local Hugging Face directory
      - name: vendor-b                              # optional; default: derived from model
        model: openai+https://api.vendor.example/v1?model=b-large&access=logprobs
        access: logprobs                            # full | logprobs | text
        max_queries: 200                            # the query budget of this suspect
        api_key_env: VENDOR_B_KEY                   # credentials by env-var NAME only
      - model: hf:org/name@main

A malformed manifest is refused, before any work starts, with a `ManifestError` that names the
file, the line and the field. YAML is composed into nodes (which carry their line numbers) and
converted by hand, so every value keeps the line it came from; a JSON file is checked by `json`
first (so syntax errors get JSON's line number) and then read the same way (JSON is YAML).
Relative local paths are resolved against the manifest's directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lineage.errors import InvalidArgumentError

__all__ = ["Manifest", "ManifestError", "SuspectSpec", "load_manifest", "manifest_from_dict",
           "parse_manifest"]

ACCESS = ("full", "logprobs", "text")
SUSPECT_FIELDS = {"name", "model", "access", "max_queries", "api_key_env"}
TOP_FIELDS = {"version", "alpha", "defaults", "suspects"}
#: keys that look like inline credentials; refused with a pointer to api_key_env
SECRET_KEYS = {"api_key", "apikey", "key", "token", "password", "secret", "authorization",
               "bearer", "credentials"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_SUSPECTS = 10_000


class ManifestError(InvalidArgumentError):
    """A malformed manifest; `line` (1-based, or None) and `field` say where."""

    reason = "INVALID_MANIFEST"

    def __init__(self, message: str, *, source: str = "manifest", line: int | None = None,
                 field: str | None = None) -> None:
        where = f"{source}:{line}" if line else source  # line 0: data without lines
        what = f" field {field!r}" if field else ""
        super().__init__(f"{where}:{what} {message}", field=field)
        self.line = line or None
        self.source = source


@dataclass(frozen=True)
class SuspectSpec:
    """One suspect of a batch: what to scan and how."""

    name: str
    model: str  # a local directory (absolute), hf:ORG/NAME[@REV] or openai+http(s)://...
    access: str = "full"
    max_queries: int | None = None
    api_key_env: str | None = None  # the NAME of the env var holding the endpoint's key

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Manifest:
    suspects: tuple[SuspectSpec, ...]
    alpha: float = 0.01
    source: str = field(default="manifest", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "alpha": self.alpha,
                "suspects": [s.to_json() for s in self.suspects]}

    @property
    def digest(self) -> str:
        """sha256 of the normalised manifest: the same suspects give the same digest."""
        raw = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        return cls(tuple(SuspectSpec(**s) for s in d["suspects"]), alpha=float(d["alpha"]))


# -- reading -------------------------------------------------------------------------------

@dataclass
class _Val:
    """A scalar, list or mapping with the line (1-based) it starts on."""

    value: Any
    line: int


def _convert(node: yaml.Node, src: str) -> _Val:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, tuple[_Val, int]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise ManifestError("keys must be plain strings", source=src,
                                    line=k.start_mark.line + 1)
            key = str(k.value)
            if key in out:
                raise ManifestError("appears twice", source=src, line=k.start_mark.line + 1,
                                    field=key)
            out[key] = (_convert(v, src), k.start_mark.line + 1)
        return _Val(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Val([_convert(v, src) for v in node.value], line)
    # a scalar: let PyYAML's resolver type it (int, float, bool, null, str)
    return _Val(yaml.safe_load(yaml.serialize(node)), line)


def parse_manifest(text: str, *, source: str = "manifest", base_dir: Path | None = None,
                   check_paths: bool = True) -> Manifest:
    """Parse and validate manifest text (YAML or JSON)."""
    if source.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"invalid JSON: {e.msg}", source=source, line=e.lineno) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ManifestError(f"invalid YAML: {e.problem}", source=source, line=line) from None
    except yaml.YAMLError as e:
        raise ManifestError(f"invalid YAML: {e}", source=source) from None
    if root is None:
        raise ManifestError("is empty", source=source, line=1)
    doc = _convert(root, source)
    return _validate(doc, source, base_dir, check_paths)


def load_manifest(path: str | Path, *, check_paths: bool = True) -> Manifest:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"cannot read manifest {p}: {e}", field="manifest") from None
    return parse_manifest(text, source=str(p), base_dir=p.resolve().parent,
                          check_paths=check_paths)


def _wrap(x: Any) -> _Val:
    """A plain value as a `_Val` tree without line numbers (requests that are not files)."""
    if isinstance(x, dict):
        return _Val({str(k): (_wrap(v), 0) for k, v in x.items()}, 0)
    if isinstance(x, list):
        return _Val([_wrap(v) for v in x], 0)
    return _Val(x, 0)


def manifest_from_dict(d: dict[str, Any], *, source: str = "request") -> Manifest:
    """Validate a manifest given as data (e.g. the gRPC request); errors name the field."""
    return _validate(_wrap(d), source, None, True)


def _validate(doc: _Val, src: str, base_dir: Path | None, check_paths: bool) -> Manifest:
    def err(msg: str, line: int, fld: str | None = None) -> ManifestError:
        return ManifestError(msg, source=src, line=line, field=fld)

    if not isinstance(doc.value, dict):
        raise err("the manifest must be a mapping with a 'suspects' list", doc.line)
    top: dict[str, tuple[_Val, int]] = doc.value
    for k, (_, kl) in top.items():
        if k not in TOP_FIELDS:
            raise err(f"unknown field; allowed: {sorted(TOP_FIELDS)}", kl, k)
    if "version" in top and top["version"][0].value != 1:
        raise err("only version 1 exists", top["version"][0].line, "version")
    alpha = 0.01
    if "alpha" in top:
        a = top["alpha"][0]
        if isinstance(a.value, bool) or not isinstance(a.value, (int, float)) \
                or not 0.0 < float(a.value) < 1.0:
            raise err("must be a number in (0, 1)", a.line, "alpha")
        alpha = float(a.value)
    defaults: dict[str, tuple[_Val, int]] = {}
    if "defaults" in top:
        dv = top["defaults"][0]
        if not isinstance(dv.value, dict):
            raise err("must be a mapping", dv.line, "defaults")
        defaults = dv.value
        for k, (_, kl) in defaults.items():
            if k in ("model", "name"):
                raise err("cannot have a default", kl, f"defaults.{k}")
            _check_key(k, kl, "defaults", err)
    if "suspects" not in top:
        raise err("is required", doc.line, "suspects")
    sv = top["suspects"][0]
    if not isinstance(sv.value, list) or not sv.value:
        raise err("must be a non-empty list", sv.line, "suspects")
    if len(sv.value) > MAX_SUSPECTS:
        raise err(f"has more than {MAX_SUSPECTS} entries", sv.line, "suspects")
    specs: list[SuspectSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(sv.value):
        path = f"suspects[{i}]"
        if isinstance(item.value, str):  # shorthand: a bare model URI
            item = _Val({"model": (item, item.line)}, item.line)
        if not isinstance(item.value, dict):
            raise err("must be a mapping (or a model URI string)", item.line, path)
        fields = {**defaults, **item.value}
        mv = item.value.get("model", (None, 0))[0]
        if "access" not in item.value and mv is not None and isinstance(mv.value, str) \
                and mv.value.startswith("openai+"):
            fields.pop("access", None)  # an endpoint URI states its own access
        for k, (_, kl) in item.value.items():
            _check_key(k, kl, path, err)
        spec = _suspect(fields, item.line, path, err, base_dir, check_paths)
        if spec.name in seen:
            raise err(f"duplicate suspect name {spec.name!r} (first on line {seen[spec.name]})",
                      item.line, f"{path}.name")
        seen[spec.name] = item.line
        specs.append(spec)
    return Manifest(tuple(specs), alpha=alpha, source=src)


def _check_key(k: str, line: int, where: str, err: Any) -> None:
    if k.lower().replace("-", "_") in SECRET_KEYS:
        raise err("credentials are never written in a manifest; name the environment "
                  "variable that holds them with 'api_key_env'", line, f"{where}.{k}")
    if k not in SUSPECT_FIELDS:
        raise err(f"unknown field; allowed: {sorted(SUSPECT_FIELDS)}", line, f"{where}.{k}")


def _suspect(f: dict[str, tuple[_Val, int]], line: int, path: str, err: Any,
             base_dir: Path | None, check_paths: bool) -> SuspectSpec:
    from lineage.backends.openai_http import parse_uri

    def get(k: str) -> _Val | None:
        return f[k][0] if k in f else None

    m = get("model")
    if m is None:
        raise err("is required", line, f"{path}.model")
    if not isinstance(m.value, str) or not m.value.strip():
        raise err("must be a model URI string", m.line, f"{path}.model")
    model = m.value.strip()
    a = get("access")
    access = "full"
    if a is not None:
        if a.value not in ACCESS:
            raise err(f"must be one of {list(ACCESS)}, got {a.value!r}", a.line,
                      f"{path}.access")
        access = a.value
    q = get("max_queries")
    max_queries = None
    if q is not None and q.value is not None:
        if isinstance(q.value, bool) or not isinstance(q.value, int) or q.value < 1:
            raise err("must be a positive integer", q.line, f"{path}.max_queries")
        max_queries = int(q.value)
    e = get("api_key_env")
    key_env = None
    if e is not None and e.value is not None:
        if not isinstance(e.value, str) or not ENV_NAME.match(e.value):
            raise err("must be an environment variable NAME (letters, digits, '_'), "
                      "not the key itself", e.line, f"{path}.api_key_env")
        key_env = e.value
    if model.startswith(("openai+http://", "openai+https://")):
        try:
            _, name_in_uri, uri_access, _ = parse_uri(model)
        except InvalidArgumentError as x:
            raise err(x.message, m.line, f"{path}.model") from None
        if a is None:
            access = uri_access.value
        elif access != uri_access.value:
            raise err(f"is {access!r} but the endpoint URI says access={uri_access.value}",
                      a.line, f"{path}.access")
        default_name = name_in_uri
    elif model.startswith("hf:"):
        if key_env:
            raise err("only endpoint URIs take credentials", e.line,  # type: ignore[union-attr]
                      f"{path}.api_key_env")
        repo = model[3:].split("@", 1)[0]
        if not re.match(r"^[\w.-]+/[\w.-]+$", repo):
            raise err("a hub id is hf:ORG/NAME[@REVISION]", m.line, f"{path}.model")
        default_name = repo.replace("/", "-")
    elif "://" in model:
        raise err("unsupported URI scheme; use a local path, hf:ORG/NAME[@REV] or "
                  "openai+http(s)://HOST/v1?model=NAME&access=logprobs|text", m.line,
                  f"{path}.model")
    else:
        if key_env:
            raise err("only endpoint URIs take credentials", e.line,  # type: ignore[union-attr]
                      f"{path}.api_key_env")
        p = Path(model).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if check_paths and not p.is_dir():
            raise err(f"no model directory at {p}", m.line, f"{path}.model")
        model = str(p.resolve()) if check_paths else str(p)
        default_name = p.name
    n = get("name")
    if n is not None:
        if not isinstance(n.value, str) or not NAME.match(n.value):
            raise err("must be 1-128 letters, digits, '.', '_' or '-'", n.line,
                      f"{path}.name")
        name = n.value
    else:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", default_name)[:128] or "suspect"
    return SuspectSpec(name=name, model=model, access=access, max_queries=max_queries,
                       api_key_env=key_env)
