"""Generate the Python protobuf/gRPC code for `protos/lineage/v1/lineage.proto`.

The generated code is committed under `lineage/_proto/lineage/v1/` so a fresh clone works without
a build step; `tests/test_server_proto.py` regenerates it into a temporary directory and fails
on any difference (the CI drift check). Regenerate after editing the proto with:

    python -m server.codegen

protoc writes imports as `from lineage.v1 import ...`, which would resolve to this project's own
`lineage` package; we rewrite them to `lineage._proto.lineage.v1`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO = "lineage/v1/lineage.proto"
OUT_PACKAGE = "lineage._proto"
OUT_DIR = ROOT / "lineage" / "_proto"
GENERATED = ("lineage_pb2.py", "lineage_pb2.pyi", "lineage_pb2_grpc.py")

__all__ = ["generate", "include_paths", "main"]


def include_paths(shim: Path) -> list[Path]:
    """protoc include dirs: ours, protobuf's well-known types, googleapis-common-protos.

    googleapis-common-protos ships `google/longrunning/operations.proto` as
    `operations_proto.proto` (its descriptor is still registered under the canonical name), so
    `shim` receives a copy under the canonical path.
    """
    import google.longrunning
    import grpc_tools

    lro = Path(google.longrunning.__path__[0])
    (shim / "google" / "longrunning").mkdir(parents=True, exist_ok=True)
    shutil.copy(lro / "operations_proto.proto", shim / "google/longrunning/operations.proto")
    return [PROTO_ROOT, shim, Path(grpc_tools.__path__[0]) / "_proto", lro.parent.parent]


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Run protoc into `out_dir` (a package dir) and fix imports; returns the written files."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "out"
        raw.mkdir()
        args = ["protoc", *(f"-I{p}" for p in include_paths(Path(tmp) / "shim")),
                f"--python_out={raw}", f"--pyi_out={raw}", f"--grpc_python_out={raw}", PROTO]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        dst = out_dir / "lineage" / "v1"
        dst.mkdir(parents=True, exist_ok=True)
        for d in (out_dir, out_dir / "lineage", dst):
            init = d / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf code; see server/codegen.py."""\n')
        written = []
        for name in GENERATED:
            text = (raw / "lineage" / "v1" / name).read_text()
            text = text.replace("from lineage.v1 import", f"from {OUT_PACKAGE}.lineage.v1 import")
            (dst / name).write_text(text)
            written.append(dst / name)
    return written


def main() -> int:
    for p in generate():
        print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
