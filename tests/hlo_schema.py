"""XLA's HloModuleProto schema for tests that need real HLO protobuf bytes. On Trainium it comes with
torch-neuronx (torch_neuronx.pyhlo.hlo_pb2, which the contest's count_nki_flop_ratio reads); off the device
the only PyPI package found that ships it is TensorFlow (tensorflow-cpu 2.21.0 wheel:
tensorflow/compiler/xla/service/hlo_pb2.py and the two modules it imports). Installing TensorFlow into the
project's venv would pull its own numpy/protobuf pins, so `make hlo-schema` (python -m tests.hlo_schema)
downloads the wheel once without dependencies and extracts only those generated modules into
.cache/xla_hlo_schema; they need nothing but the protobuf runtime the venv already has."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tests.conftest import CACHE

SCHEMA_DIR = CACHE / "xla_hlo_schema"
WHEEL = "tensorflow-cpu==2.21.0"
MEMBERS = ("tensorflow/compiler/xla/service/hlo_pb2.py", "tensorflow/compiler/xla/service/metrics_pb2.py",
           "tensorflow/compiler/xla/xla_data_pb2.py")


def hlo_module_class():
    """HloModuleProto, or None when the schema has not been extracted."""
    if not all((SCHEMA_DIR / m).exists() for m in MEMBERS):
        return None
    if str(SCHEMA_DIR) not in sys.path:
        sys.path.append(str(SCHEMA_DIR))
    from tensorflow.compiler.xla.service.hlo_pb2 import HloModuleProto

    return HloModuleProto


def extract(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in MEMBERS:
            target = SCHEMA_DIR / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp], check=True)
        extract(next(Path(tmp).glob("*.whl")))
    print(f"HloModuleProto schema in {SCHEMA_DIR}")


if __name__ == "__main__":
    main()
