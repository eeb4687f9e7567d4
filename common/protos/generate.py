"""Regenerates the gRPC stubs of every .proto in common/protos (`make protos`).

Generated files are committed and never edited; a test checks that they regenerate identically.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROTOS = ROOT / "common" / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTOS.glob("*.proto"))


def generate(out_dir: Path = ROOT) -> None:
    from grpc_tools import protoc

    for proto in proto_files():
        rel = proto.relative_to(ROOT)
        args = [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {rel}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
