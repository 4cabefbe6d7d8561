"""Batch manifests: valid ones normalise; malformed ones are refused naming line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.batch.manifest import ManifestError, load_manifest, manifest_from_dict, parse_manifest

EP = "openai+http://127.0.0.1:9/v1?model=m&access=logprobs"


def test_yaml_manifest_with_defaults_shorthand_and_relative_paths(tmp_path: Path):
    (tmp_path / "models" / "a").mkdir(parents=True)
    f = tmp_path / "nightly.yaml"
    f.write_text(f"""alpha: 0.05
defaults:
  access: text
  max_queries: 64
suspects:
  - models/a
  - name: vendor
    model: {EP}
    api_key_env: VENDOR_KEY
""")
    m = load_manifest(f)
    a, v = m.suspects
    assert (a.name, a.model, a.access, a.max_queries) == \
        ("a", str((tmp_path / "models" / "a").resolve()), "text", 64)
    # an endpoint's access comes from its URI, not from the defaults
    assert (v.name, v.access, v.api_key_env, v.max_queries) == \
        ("vendor", "logprobs", "VENDOR_KEY", 64)
    assert m.alpha == 0.05
    assert m.digest == load_manifest(f).digest and len(m.digest) == 64


def test_endpoint_access_comes_from_the_uri_and_must_agree():
    m = parse_manifest(f"suspects:\n  - model: {EP}\n", check_paths=False)
    assert m.suspects[0].access == "logprobs" and m.suspects[0].name == "m"
    with pytest.raises(ManifestError) as e:
        parse_manifest(f"suspects:\n  - model: {EP}\n    access: text\n", source="x.yaml")
    assert e.value.line == 3 and e.value.field == "suspects[0].access"


@pytest.mark.parametrize("text,line,field", [
    ("suspects:\n  - model: /tmp\n    acess: text\n", 3, "suspects[0].acess"),
    ("suspects:\n  - model: /tmp\n  - model: /tmp\n    max_queries: -5\n", 4,
     "suspects[1].max_queries"),
    ("suspects:\n  - model: /tmp\n    access: everything\n", 3, "suspects[0].access"),
    ("suspects:\n  - access: text\n", 2, "suspects[0].model"),
    ("suspects:\n  - model: /no/such/dir/xyz\n", 2, "suspects[0].model"),
    ("suspects:\n  - model: ftp://host/m\n", 2, "suspects[0].model"),
    ("suspects:\n  - model: hf:not-a-repo\n", 2, "suspects[0].model"),
    ("suspects:\n  - model: openai+http://h/v1?model=x\n", 2, "suspects[0].model"),
    (f"suspects:\n  - model: {EP}\n    api_key: sk-live-123\n", 3, "suspects[0].api_key"),
    (f"suspects:\n  - model: {EP}\n    api_key_env: sk-live-123\n", 3,
     "suspects[0].api_key_env"),
    ("defaults:\n  token: abc\nsuspects: [/tmp]\n", 2, "defaults.token"),
    ("suspects:\n  - name: a\n    model: /tmp\n  - name: a\n    model: /tmp\n", 4,
     "suspects[1].name"),
    ("alpha: 2\nsuspects: [/tmp]\n", 1, "alpha"),
    ("suspect:\n  - /tmp\n", 1, "suspect"),
    ("suspects: []\n", 1, "suspects"),
    ("suspects:\n  - model: /tmp\n    model: /tmp\n", 3, "model"),
])
def test_yaml_errors_name_line_and_field(text, line, field):
    with pytest.raises(ManifestError) as e:
        parse_manifest(text, source="nightly.yaml")
    assert (e.value.line, e.value.field) == (line, field)
    assert f"nightly.yaml:{line}:" in str(e.value) and repr(field) in str(e.value)
    assert "sk-live-123" not in str(e.value) or field.endswith("api_key_env")


def test_yaml_and_json_syntax_errors_have_lines():
    with pytest.raises(ManifestError) as e:
        parse_manifest("suspects:\n  - [a, b\n", source="m.yaml")
    assert e.value.line == 3 and "invalid YAML" in str(e.value)
    with pytest.raises(ManifestError) as e:
        parse_manifest('{"suspects": [\n  {"model": "/tmp"}\n  {"model": "/tmp"}\n]}',
                       source="m.json")
    assert e.value.line == 3 and "invalid JSON" in str(e.value)


def test_json_manifest_field_errors_have_lines(tmp_path: Path):
    f = tmp_path / "m.json"
    f.write_text('{\n  "suspects": [\n    {"model": "/tmp"},\n    {"model": "/tmp",\n'
                 '     "max_queries": "lots"}\n  ]\n}\n')
    with pytest.raises(ManifestError) as e:
        load_manifest(f)
    assert (e.value.line, e.value.field) == (5, "suspects[1].max_queries")


def test_manifest_from_request_data_names_the_field():
    m = manifest_from_dict({"suspects": [{"model": "/tmp", "access": "text"}]})
    assert m.suspects[0].access == "text"
    with pytest.raises(ManifestError) as e:
        manifest_from_dict({"suspects": [{"model": "/tmp"}, {"model": ""}]})
    assert e.value.field == "suspects[1].model" and e.value.line is None
