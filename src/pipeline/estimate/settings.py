"""The estimate's settings: the config's `estimate` section and `platform.target`, checked, in ns."""
from __future__ import annotations

from dataclasses import dataclass
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
    torch_op_overhead_ns: float | None  # None: the cost model's default (roofline.OPS_DMA_ROUND_TRIPS)
    allreduce_hop_ns: float
    host_step_ns: float

    @classmethod
    def from_conf(cls, conf: PipelineConf, model_layers: int) -> EstimateSettings:
        """Settings of a validated config; `model_layers` counts when `estimate.layers` is unset."""
        e = conf.estimate
        overhead = None if e.torch_op_overhead_us is None else e.torch_op_overhead_us * 1e3
        return cls(conf.platform.target, e.lnc, e.layers or model_layers, e.torch_op_efficiency, overhead,
                   e.allreduce_hop_us * 1e3, e.host_step_ms * 1e6)

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
        (estimate.torch_op_overhead_us is None or estimate.torch_op_overhead_us >= 0,
         "estimate.torch_op_overhead_us must be null or >= 0"),
        (estimate.allreduce_hop_us >= 0 and estimate.host_step_ms >= 0,
         "estimate.allreduce_hop_us and estimate.host_step_ms must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


def _known(target: str) -> bool:
    try:
        hardware(target)
    except ValueError:
        return False
    return True
