"""The contest's NKI FLOP ratio, counted as aws-neuron/nki-moe main.py counts it (`find_hlos`,
`count_nki_flop_ratio`): the rank-0, bucket-0 HLOs of the context-encoding and token-generation sub-models;
in each, `custom-call` instructions with target AwsNeuronCustomNativeKernel contribute the `mac_count` of
their base64 JSON backend config (0 when it cannot be read) to both NKI and total MACs, and `dot`
instructions contribute batch x lhs non-contracting x contracting x rhs non-contracting MACs to the total.
ratio = NKI MACs / total MACs over both HLOs (0 when both are empty).

The counters read any object with HloModuleProto's fields (torch_neuronx.pyhlo.hlo_pb2 on the device; the
tests build real HloModuleProto bytes from the XLA schema TensorFlow ships)."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

NKI_TARGET = "AwsNeuronCustomNativeKernel"
SUBMODELS = ("context_encoding_model", "token_generation_model")  # NxDI model_wrapper tags


@dataclass(frozen=True)
class MacCount:
    total: int  # dot MACs + NKI MACs
    nki: int


def find_hlos(work_dir: Path) -> tuple[Path, Path]:
    """The HLO of rank 0, bucket 0 of each sub-model in an NxDI work dir (BASE_COMPILE_WORK_DIR)."""
    found = []
    for tag in SUBMODELS:
        directory = Path(work_dir) / tag / "_tp0_bk0"
        hlos = [p for p in directory.iterdir() if "hlo_module" in p.name.lower()] if directory.is_dir() else []
        if len(hlos) != 1:
            raise FileNotFoundError(f"expected one HLO module in {directory}, found {len(hlos)}")
        found.append(hlos[0])
    return found[0], found[1]


def hlo_module_class():
    from torch_neuronx.pyhlo.hlo_pb2 import HloModuleProto

    return HloModuleProto


def parse_hlo(path: Path, module_class=None):
    module = (module_class or hlo_module_class())()
    module.ParseFromString(Path(path).read_bytes())
    return module


def nki_macs(instruction) -> int:
    try:
        return int(json.loads(base64.b64decode(instruction.backend_config))["mac_count"])
    except Exception:  # the contest counts an unreadable backend config as 0
        return 0


def dot_macs(instruction, by_id: dict) -> int:
    dnums = instruction.dot_dimension_numbers
    lhs = by_id[instruction.operand_ids[0]].shape.dimensions
    rhs = by_id[instruction.operand_ids[1]].shape.dimensions
    batch = contracting = lhs_free = rhs_free = 1
    for i, size in enumerate(lhs):
        if i in dnums.lhs_contracting_dimensions:
            contracting *= size
        elif i in dnums.lhs_batch_dimensions:
            batch *= size
        else:
            lhs_free *= size
    for i, size in enumerate(rhs):
        if i not in dnums.rhs_contracting_dimensions and i not in dnums.rhs_batch_dimensions:
            rhs_free *= size
    return batch * lhs_free * contracting * rhs_free


def count_macs(module) -> MacCount:
    total = nki = 0
    for computation in module.computations:
        by_id = {instruction.id: instruction for instruction in computation.instructions}
        for instruction in computation.instructions:
            if instruction.opcode == "custom-call" and instruction.custom_call_target == NKI_TARGET:
                macs = nki_macs(instruction)
                nki += macs
                total += macs
            elif instruction.opcode == "dot":
                total += dot_macs(instruction, by_id)
    return MacCount(total, nki)


def nki_flop_ratio(counts: list[MacCount]) -> float:
    total, nki = sum(c.total for c in counts), sum(c.nki for c in counts)
    return nki / total if total else 0.0
