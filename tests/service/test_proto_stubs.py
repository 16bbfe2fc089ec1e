"""The committed gRPC stubs are what scripts/gen_proto.py generates from proto/ (never hand-edited)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_stubs_import_without_shadowing_the_library() -> None:
    """The proto package is emvnet.v1, yet the stubs import from service._generated, not `emvnet`."""
    from service._generated import enhance_pb2, enhance_pb2_grpc

    assert enhance_pb2.DESCRIPTOR.name == "emvnet/v1/enhance.proto"
    assert hasattr(enhance_pb2_grpc, "EnhancerStub")
