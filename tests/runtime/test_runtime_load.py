"""Loading: the runtime never imports torch, refuses tampered or incomplete bundles, and says why."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnnedge.runtime as rt
from rnnedge.bundle import SIGNATURE_NAME, json_schema, read_key, sign_bundle
from rnnedge.errors import BackendUnavailableError, BundleError
from tests.edits import write_manifest_json


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_streaming_never_imports_torch(bundle, backend):
    code = (
        "import sys, numpy as np, rnnedge.runtime as rt\n"
        f"m = rt.load({str(bundle)!r}, backend={backend!r})\n"
        "s = m.stream(); s.step(np.zeros(m.channels)); s.feed(np.zeros((60, m.channels)))\n"
        "p = m.pool(4); p.add(0); p.step({0: np.zeros(m.channels)})\n"
        "heavy = sorted(n for n in ('torch', 'onnx', 'litert_torch', 'tensorflow', '_hashlib', 'tempfile')\n"
        "               if n in sys.modules)\n"
        "print(m.backend, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [backend, "[]"]


def test_tampered_file_is_refused(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    model_file = next(copy.glob("*.onnx"))
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        rt.load(copy, backend="onnxruntime")
    rt.load(copy, backend="litert")  # only the files a backend uses are read: the TFLite ones are intact


def test_window_models_do_not_stream(window_bundle):
    with pytest.raises(BundleError, match="cannot stream"):
        rt.load(window_bundle)


def test_missing_pieces_are_named(bundle, other_bundle, tmp_path):
    with pytest.raises(BundleError, match="no onnx/int8/stream file"):
        rt.load(bundle, backend="onnxruntime", precision="int8")
    with pytest.raises(BundleError, match="no fp32 TFLite stream file of time length 1"):
        rt.load(other_bundle, backend="litert")  # an ONNX-only bundle
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tensorrt'"):
        rt.load(bundle, backend="tensorrt")
    with pytest.raises(BundleError, match="not a bundle"):
        rt.load(tmp_path)


def test_model_describes_itself(bundle):
    model = rt.load(bundle)
    assert (model.channels, model.outputs) == (6, model.manifest.output.size)
    assert model.state_size == model.manifest.state.size
    assert model.sha256 == model.manifest.find("tflite", chunk_len=1).sha256  # auto: streams step on LiteRT
    assert "litert" in repr(model)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m["state"].update(size="256"), r"invalid manifest: Expected `int`, got `str` - at `\$.state.size`"),
    (lambda m: m.update(colour="red"), r"invalid manifest: Object contains unknown field `colour`"),
    (lambda m: m["state"].update(previous=2), r"state size \d+ is not parts .* \+ previous 2 \(0, or 2 x 6 channels\)"),
    (lambda m: m["input"].update(sample_rate_hz=0), r"Expected `float` > 0\.0 - at `\$.input.sample_rate_hz`"),
    (lambda m: m["files"][0].pop("sha256"), r"missing required field `sha256` - at `\$.files\[0\]`"),
    (lambda m: m.update(schema_version=99), r"schema_version 99 is not supported \(this rnnedge reads \d+\)"),
])
def test_invalid_manifests_are_refused_with_where(bundle, tmp_path, edit, message):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    write_manifest_json(copy, manifest)
    with pytest.raises(BundleError, match=message):
        rt.load(copy)


def test_unreadable_manifest_is_refused(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    (copy / "manifest.json").write_text('{"name": ')
    with pytest.raises(BundleError, match="unreadable manifest"):
        rt.load(copy)


# What a JSON Schema says a manifest may hold: field names, which are required, and each value's type, choices,
# bounds and defaults. Titles, descriptions (docstring whitespace), key order, how definitions are referenced and
# annotations a newer msgspec adds for what the types already enforced (propertyNames for dict[Literal, ...],
# seen between msgspec 0.19 and 0.23), and the order of alternatives (anyOf: 0.19 lists null last) are its rendering.
CONTRACT_KEYWORDS = {"type", "enum", "const", "items", "prefixItems", "properties", "required", "additionalProperties",
                     "anyOf", "oneOf", "allOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                     "minLength", "maxLength", "pattern", "minItems", "maxItems", "default", "format"}


def contract(schema: dict) -> object:
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def meaning(node: object, seen: frozenset = frozenset()) -> object:
        if isinstance(node, list):
            return [meaning(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return {"struct": name} if name in seen else meaning(definitions[name], seen | {name})
        out = {k: meaning(v, seen) for k, v in node.items() if k in CONTRACT_KEYWORDS}
        for key in ("required", "enum", "anyOf", "oneOf"):  # sets, whatever order they are listed in
            if key in out:
                out[key] = sorted(out[key], key=json.dumps)
        if "properties" in node:
            out["properties"] = {k: meaning(v, seen) for k, v in node["properties"].items()}
        return out

    return meaning(schema)


def test_the_documented_schema_means_what_the_code_s_does():
    documented = json.loads((Path(__file__).parents[2] / "docs" / "bundle-schema.json").read_text())
    assert contract(documented) == contract(json_schema()), (
        "docs/bundle-schema.json is stale: rnnedge schema > docs/bundle-schema.json")


def test_the_schema_check_sees_meaning_and_ignores_wording():
    schema = json_schema()
    reworded = json.loads(json.dumps(schema))
    for definition in reworded["$defs"].values():
        definition["description"] = " ".join(definition.get("description", "").split()) + " (reworded)"
        definition.pop("title", None)
        for prop in definition.get("properties", {}).values():
            prop["propertyNames"] = {"enum": ["x"]}
    reworded["definitions"] = reworded.pop("$defs")  # another library's way to refer to them
    reworded["$ref"] = "#/definitions/Manifest"
    assert contract(reworded) == contract(schema)
    for change in (lambda m: m["properties"].update(extra={"type": "string"}),
                   lambda m: m["required"].append("created") if "created" not in m["required"] else m["required"].pop(),
                   lambda m: m["properties"]["task"]["enum"].append("segment")):
        changed = json.loads(json.dumps(schema))
        change(changed["$defs"]["Manifest"])
        assert contract(changed) != contract(schema)


def test_signed_bundles_load_with_their_key_only(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    (tmp_path / "key").write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key = read_key(tmp_path / "key")
    assert sign_bundle(copy, key) == copy / SIGNATURE_NAME
    assert rt.load(copy, verify_key=key).backend == "litert"
    rt.load(copy)  # a deployment that asks for no signature does not check it
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["input"]["sample_rate_hz"] = 100.0
    write_manifest_json(copy, manifest)
    with pytest.raises(BundleError, match="signature mismatch"):
        rt.load(copy, verify_key=key)
    with pytest.raises(BundleError, match="cannot read the key"):
        read_key(tmp_path / "missing")
