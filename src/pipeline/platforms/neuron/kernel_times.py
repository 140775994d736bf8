"""Measured time per NKI kernel call from a device profile, under the cost model's metric names.

The profile's event JSON (`neuron-profile view --output-format json`: `instruction` entries with `timestamp`,
`duration` and `hlo_name`, e.g. "%add.1 = add(%dot, %custom-call.44)"; SDK neuron-profile-user-guide.rst)
names the HLO instruction each device instruction belongs to. The sub-model's HLO says which instructions are
NKI custom calls (target AwsNeuronCustomNativeKernel) and, through the kernel name in their backend config,
which device slot's `@nki.jit` functions each one runs (model.neuron.slots.DEVICE_KERNELS). A call's time is
the span of its instructions (first start to last end); `<layer>.<phase>.time_us` is the mean over the
graph's calls of that kernel, beside the cost model's `est.<layer>.<phase>.time_us` (one call, all launches).

[UNCONFIRMED until read on a device] timestamps and durations in nanoseconds, and the kernel's function name
appearing in the custom call's backend config; calls that match no slot are counted as `nki_other`."""
from __future__ import annotations

import base64
import re
import statistics
from collections import defaultdict

from model.neuron.slots import DEVICE_KERNELS
from pipeline.platforms.neuron.hlo import NKI_TARGET

HLO_NAME = re.compile(r"^%?([\w.\-]+)")


def nki_calls(module, choices: dict[str, str]) -> dict[str, str]:
    """HLO instruction name -> layer (or "nki_other") of every NKI custom call in the module."""
    functions = {function: layer for layer, name in choices.items() if (layer, name) in DEVICE_KERNELS
                 for function in DEVICE_KERNELS[(layer, name)][1]}
    calls = {}
    for computation in module.computations:
        for instruction in computation.instructions:
            if instruction.opcode == "custom-call" and instruction.custom_call_target == NKI_TARGET:
                try:
                    config = base64.b64decode(instruction.backend_config).decode(errors="replace")
                except ValueError:
                    config = ""
                found = [layer for function, layer in functions.items() if re.search(rf"\b{function}\b", config)]
                calls[instruction.name] = found[0] if len(found) == 1 else "nki_other"
    return calls


def call_spans_us(events: list[dict], calls: dict[str, str]) -> dict[str, float]:
    """HLO instruction name -> span in microseconds, for the NKI calls that ran."""
    bounds: dict[str, list[float]] = {}
    for event in events:
        match = HLO_NAME.match(event.get("hlo_name") or "")
        if not match or match.group(1) not in calls:
            continue
        start, end = float(event["timestamp"]), float(event["timestamp"]) + float(event.get("duration", 0))
        first, last = bounds.get(match.group(1), (start, end))
        bounds[match.group(1)] = [min(first, start), max(last, end)]
    return {name: (end - start) / 1000 for name, (start, end) in bounds.items()}


def kernel_time_metrics(events: list[dict], calls: dict[str, str], phase: str) -> dict[str, float]:
    spans = call_spans_us(events, calls)
    by_layer: dict[str, list[float]] = defaultdict(list)
    for name, span in spans.items():
        by_layer[calls[name]].append(span)
    metrics = {}
    for layer, values in by_layer.items():
        metrics |= {f"{layer}.{phase}.time_us": statistics.fmean(values), f"{layer}.{phase}.calls": len(values),
                    f"{layer}.{phase}.total_us": sum(values)}
    return metrics
