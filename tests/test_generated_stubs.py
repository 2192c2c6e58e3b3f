"""The committed gRPC stubs must be what ``scripts/gen_proto.py`` makes of proto/ now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_are_current():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) generates the stubs")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_notices_a_stale_stub(tmp_path, monkeypatch):
    pytest.importorskip("grpc_tools")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    proto_root = tmp_path / "proto"
    (proto_root / "rnnlm" / "v1").mkdir(parents=True)
    source = ROOT / "proto" / "rnnlm" / "v1"
    for path in source.iterdir():
        if path.is_file():
            (proto_root / "rnnlm" / "v1" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(gen_proto, "PROTO_ROOT", proto_root)
    monkeypatch.setattr(sys, "argv", ["gen_proto.py", "--check"])
    assert gen_proto.main() == 0
    proto = proto_root / "rnnlm" / "v1" / "rnnlm.proto"
    proto.write_text(proto.read_text().replace("bool omit_tokens = 4;", "bool omit_tokenz = 4;"))
    assert gen_proto.main() == 1


def test_every_rpc_and_field_is_documented():
    """Each rpc, message field and enum value has a comment line right above it."""
    proto = (ROOT / "proto" / "rnnlm" / "v1" / "rnnlm.proto").read_text().splitlines()
    declaration = re.compile(
        r"^\s*(rpc \w+|(optional |repeated )?[\w.]+ \w+ = \d+;|[A-Z_]+ = \d+;)"
    )
    undocumented = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(proto, start=1)
        if declaration.match(line) and not proto[n - 2].strip().startswith("//")
    ]
    assert undocumented == []
