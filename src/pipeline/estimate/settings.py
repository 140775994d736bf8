"""The estimate's settings: the config's `estimate` section and `platform.target`, checked, in ns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nki_cpu.cost import HARDWARE, Hardware, hardware
from nki_cpu.cost.hardware import SUPPORTED_LNC

if TYPE_CHECKING:  # importing pipeline.config imports the stages, which import this package
    from pipeline.config.schema import EstimateConf, PipelineConf


@dataclass(frozen=True)
class EstimateSettings:
    target: str
    lnc: int
    layers: int  # decoder layers the estimate counts
    torch_op_efficiency: float
    graph_op_ns: float  # fixed cost per compiler-built (aten) op outside NKI, on this target
    block_ns: float  # fixed cost per block of NxD's blockwise context-encoding MoE
    custom_call_ns: float  # per NKI kernel launch inside the compiled graph
    call_ns: float  # per model call: runtime launch, inputs in, logits out
    allreduce_hop_ns: float
    host_step_ns: float  # per decode step (and the first token) outside the model call
    band: dict[str, float] = field(default_factory=dict)  # leave-one-out error band per quantity (calibration)
    calibration: str = "uncalibrated"  # how the constants were fitted, for the summary line

    @classmethod
    def from_conf(cls, conf: PipelineConf, model_layers: int) -> EstimateSettings:
        """Settings of a validated config; `model_layers` counts when `estimate.layers` is unset."""
        e, target = conf.estimate, hardware(conf.platform.target).name
        band = {k: float(v) for k, v in e.band.items()}
        return cls(target, e.lnc, e.layers or model_layers, e.torch_op_efficiency, e.graph_op_us[target] * 1e3,
                   e.block_us * 1e3, e.custom_call_us * 1e3, e.call_ms * 1e6, e.allreduce_hop_us * 1e3,
                   e.host_step_ms * 1e6, band, calibration_line(band, e.band_points))

    @property
    def hardware(self) -> Hardware:
        return hardware(self.target)

    @property
    def hbm_bytes_per_ns(self) -> float:
        """HBM bandwidth of one logical core (one TP rank)."""
        return self.hardware.hbm_bytes_per_ns(self.lnc)


def settings_problems(estimate: EstimateConf, target: str) -> list[str]:
    """Why a config's estimate cannot be computed (empty when it can), one readable line each."""
    checks = [
        (_known(target), f"platform.target={target}: the cost model knows {', '.join(sorted(HARDWARE))}"),
        (estimate.lnc in SUPPORTED_LNC, f"estimate.lnc={estimate.lnc}: choose one of {SUPPORTED_LNC}"),
        (estimate.layers is None or estimate.layers >= 1, f"estimate.layers={estimate.layers}: at least 1"),
        (0 < estimate.torch_op_efficiency <= 1,
         f"estimate.torch_op_efficiency={estimate.torch_op_efficiency}: must be in (0, 1]"),
        (not _known(target) or hardware(target).name in estimate.graph_op_us,
         f"estimate.graph_op_us has no value for {target}"),
        (all(v >= 0 for v in (*estimate.graph_op_us.values(), estimate.block_us, estimate.custom_call_us,
                              estimate.call_ms, estimate.allreduce_hop_us, estimate.host_step_ms)),
         "estimate.graph_op_us, block_us, custom_call_us, call_ms, allreduce_hop_us and host_step_ms must be >= 0"),
        (all(v >= 0 for v in estimate.band.values()), "estimate.band values must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


def calibration_line(band: dict[str, float], points: int) -> str:
    """How the estimate was calibrated, for the summary line: the leave-one-out band of each quantity."""
    if not band:
        return "uncalibrated"
    spread = ", ".join(f"{name} \u00b1{value:.0%}" for name, value in band.items())
    return f"calibrated on {points} device points: {spread} (leave-one-out)"


def _known(target: str) -> bool:
    try:
        hardware(target)
    except ValueError:
        return False
    return True
