"""Regenerate the Python gRPC stubs (with typed .pyi) from proto/, or check they are current.

    python scripts/gen_proto.py          # rewrite proto/rnnlm/v1/*_pb2*.py{,i}
    python scripts/gen_proto.py --check  # exit 1 if the committed stubs are stale

The stubs are committed next to the .proto files (package ``rnnlm.v1``) so that a client
install needs no code generator; the pinned grpcio-tools of the ``dev`` extra makes the
output reproducible, and the test suite runs ``--check``. The ``.pyi`` files come from
mypy-protobuf (pinned in ``dev`` too), for the messages *and* the service module, so that a
type checker and an editor know every field, stub method and servicer signature.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    """mypy-protobuf's protoc plugins, installed next to this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found next to {sys.executable}: install rnnlm[dev]")
    return f"--plugin={name}={path}"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto under proto/ into out_dir; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc  # dev extra only

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        _plugin("protoc-gen-mypy"),
        _plugin("protoc-gen-mypy_grpc"),
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        fresh = {p.relative_to(tmp_dir): p.read_bytes() for p in generate(tmp_dir)}
    committed = {
        p.relative_to(PROTO_ROOT): p.read_bytes()
        for p in PROTO_ROOT.rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }
    if args.check:
        names = fresh.keys() | committed.keys()
        stale = sorted(str(p) for p in names if fresh.get(p) != committed.get(p))
        if stale:
            print("stale generated stubs (run: python scripts/gen_proto.py):", *stale, sep="\n  ")
            return 1
        print(f"{len(fresh)} generated files are current")
        return 0
    for rel in committed.keys() - fresh.keys():
        (PROTO_ROOT / rel).unlink()
    for rel, data in fresh.items():
        (PROTO_ROOT / rel).write_bytes(data)
        print(f"wrote proto/{rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
