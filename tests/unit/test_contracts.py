"""The committed stubs are what `make proto` generates from proto/ today."""

from __future__ import annotations

import filecmp
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "shiftboss" / "v1").glob("*.proto"))
    include = str(resources.files("grpc_tools").joinpath("_proto"))
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--descriptor_set_out={tmp_path / 'shiftboss/v1/descriptors.binpb'}",
            "--include_source_info",
            *[str(ROOT / "proto" / p) for p in protos],
        ]
    )
    assert code == 0
    fresh = tmp_path / "shiftboss" / "v1"
    committed = ROOT / "shiftboss" / "v1"
    generated = sorted(p.name for p in fresh.iterdir())
    assert generated, "protoc produced nothing"
    stale = [name for name in generated if not (committed / name).exists() or not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    assert not stale, f"run `make proto` and commit: stale stubs {stale}"
