"""The contest's NKI FLOP ratio on real HloModuleProto bytes (XLA's schema, see tests/hlo_schema.py)."""
import base64
import json

import pytest

from pipeline.platforms.neuron.hlo import MacCount, count_macs, find_hlos, nki_flop_ratio, parse_hlo
from tests.hlo_schema import hlo_module_class

HloModuleProto = hlo_module_class()
pytestmark = pytest.mark.skipif(HloModuleProto is None, reason="no HLO schema: run `make hlo-schema` once")


def add(computation, id_, opcode, dims=(), operands=(), **fields):
    instruction = computation.instructions.add(id=id_, opcode=opcode, operand_ids=list(operands), **fields)
    instruction.shape.dimensions.extend(dims)
    return instruction


def backend(macs) -> bytes:
    return base64.b64encode(json.dumps({"mac_count": macs}).encode())


def module_bytes() -> bytes:
    module = HloModuleProto(name="m")
    main = module.computations.add(name="main")
    add(main, 1, "parameter", (4, 16, 64))          # batched lhs [b=4, m=16, k=64]
    add(main, 2, "parameter", (4, 64, 32))          # rhs [b=4, k=64, n=32]
    dot = add(main, 3, "dot", (4, 16, 32), (1, 2))
    dot.dot_dimension_numbers.lhs_batch_dimensions.append(0)
    dot.dot_dimension_numbers.rhs_batch_dimensions.append(0)
    dot.dot_dimension_numbers.lhs_contracting_dimensions.append(2)
    dot.dot_dimension_numbers.rhs_contracting_dimensions.append(1)
    add(main, 4, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", backend_config=backend(1000))
    add(main, 5, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", backend_config=b"not base64 json")
    add(main, 6, "custom-call", custom_call_target="AwsNeuronRmsNorm", backend_config=backend(777))  # not NKI
    other = module.computations.add(name="fused")
    add(other, 1, "parameter", (8, 128))
    add(other, 2, "parameter", (256, 128))
    dot = add(other, 3, "dot", (8, 256), (1, 2))   # x @ w.T: contracting dim 1 of both
    dot.dot_dimension_numbers.lhs_contracting_dimensions.append(1)
    dot.dot_dimension_numbers.rhs_contracting_dimensions.append(1)
    add(other, 4, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", backend_config=backend(24))
    return module.SerializeToString()


def test_dots_and_nki_custom_calls_are_counted_as_the_contest_counts(tmp_path):
    path = tmp_path / "model.MODULE_1+2.hlo_module.pb"
    path.write_bytes(module_bytes())
    counts = count_macs(parse_hlo(path, HloModuleProto))
    dots = 4 * 16 * 64 * 32 + 8 * 128 * 256
    assert counts == MacCount(total=dots + 1000 + 24, nki=1024)  # unreadable config: 0; other targets: ignored


def test_ratio_over_both_submodels_and_the_empty_case():
    assert nki_flop_ratio([MacCount(100, 10), MacCount(300, 90)]) == 0.25
    assert nki_flop_ratio([MacCount(0, 0), MacCount(0, 0)]) == 0.0


def test_find_hlos_reads_rank0_bucket0_of_each_submodel(tmp_path):
    for tag in ("context_encoding_model", "token_generation_model"):
        for bucket in ("_tp0_bk0", "_tp0_bk1", "_tp1_bk0"):
            (tmp_path / tag / bucket).mkdir(parents=True)
            (tmp_path / tag / bucket / "model.MODULE_9+1.hlo_module.pb").write_bytes(b"")
            (tmp_path / tag / bucket / "model.neff").write_bytes(b"")
    ctx, tkg = find_hlos(tmp_path)
    assert ctx.parent == tmp_path / "context_encoding_model" / "_tp0_bk0"
    assert tkg.parent == tmp_path / "token_generation_model" / "_tp0_bk0"
    (tmp_path / "token_generation_model" / "_tp0_bk0" / "model.MODULE_9+1.hlo_module.pb").unlink()
    with pytest.raises(FileNotFoundError, match="found 0"):
        find_hlos(tmp_path)


def test_kernel_times_attribute_profile_events_to_the_slots_nki_calls():
    from pipeline.platforms.neuron.kernel_times import kernel_time_metrics, nki_calls

    module = HloModuleProto(name="m")
    main = module.computations.add(name="main")
    add(main, 1, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", name="custom-call.1",
        backend_config=base64.b64encode(b'{"mac_count": 5, "kernel_name": "rmsnorm"}'))
    add(main, 2, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", name="custom-call.2",
        backend_config=base64.b64encode(b'{"mac_count": 5, "kernel_name": "rmsnorm_v2"}'))
    add(main, 3, "custom-call", custom_call_target="AwsNeuronRmsNorm", name="custom-call.3")
    calls = nki_calls(module, {"norm": "nki_rmsnorm", "router": "baseline"})
    assert calls == {"custom-call.1": "norm", "custom-call.2": "nki_other"}
    events = [
        {"timestamp": 100, "duration": 50, "hlo_name": "%custom-call.1 = custom-call(%x)"},
        {"timestamp": 1000, "duration": 4000, "hlo_name": "%custom-call.1 = custom-call(%x)"},  # span 100..5000 ns
        {"timestamp": 0, "duration": 9999, "hlo_name": "%custom-call.3 = custom-call(%x)"},      # not NKI
        {"timestamp": 0, "duration": 7, "hlo_name": "%dot.4 = dot(%a, %custom-call.1)"},        # uses, not runs it
        {"timestamp": 10, "duration": 20},
    ]
    assert kernel_time_metrics(events, calls, "token") == {
        "norm.token.time_us": 4.9, "norm.token.calls": 1, "norm.token.total_us": 4.9}


def test_kernel_times_attribute_every_function_of_a_slot_to_its_layer():
    """A slot may run several kernels (nki_add_rmsnorm: rmsnorm for the input and final norms, add_rmsnorm after
    attention); each is the slot's layer, and a name containing another's (add_rmsnorm vs rmsnorm) is not confused."""
    from pipeline.platforms.neuron.kernel_times import nki_calls

    module = HloModuleProto(name="m")
    main = module.computations.add(name="main")
    for i, kernel in enumerate(["rmsnorm", "add_rmsnorm", "router_topk", "grouped_v2"], start=1):
        add(main, i, "custom-call", custom_call_target="AwsNeuronCustomNativeKernel", name=f"custom-call.{i}",
            backend_config=base64.b64encode(f'{{"kernel_name": "{kernel}"}}'.encode()))
    calls = nki_calls(module, {"norm": "nki_add_rmsnorm", "router": "nki_topk", "experts": "grouped_v2"})
    assert calls == {"custom-call.1": "norm", "custom-call.2": "norm", "custom-call.3": "router",
                     "custom-call.4": "experts"}
    assert nki_calls(module, {"norm": "nki_rmsnorm"})["custom-call.2"] == "nki_other"
