"""`nki.isa` as interpreted on the CPU: every instruction executes eagerly on NumPy."""

from __future__ import annotations

from ..errors import NkiUnsupportedError
from . import constants
from .activation import activation, activation_reduce
from .control import (VirtualRegister, core_barrier, get_nc_version, register_alloc, register_load, register_move,
                      register_store, sendrecv)
from .dma import dma_compute, dma_copy, dma_transpose
from .elementwise import (exponential, memset, reciprocal, scalar_tensor_tensor, tensor_copy,
                          tensor_copy_predicated, tensor_scalar, tensor_tensor)
from .gather import local_gather, nc_n_gather
from .enums import (dge_mode, dma_engine, engine, gpsimd_engine, matmul_perf_mode, nc_version, oob_mode, reduce_cmd,
                    scalar_engine, tensor_engine, unknown_engine, vector_engine)
from .reduce import (bn_aggr, bn_stats, tensor_partition_reduce, tensor_reduce, tensor_scalar_cumulative,
                     tensor_scalar_reduce, tensor_tensor_scan)
from .search import max8, nc_find_index8, nc_match_replace8, nc_stream_shuffle
from .select import affine_select, iota, range_select, select_reduce
from .tensor_engine import nc_matmul, nc_matmul_mx, nc_transpose

# Instructions that exist in NKI 0.2/0.3 but are not interpreted; calling one raises NotImplementedError.
UNSUPPORTED = {
    "quantize_mx": "MX quantisation is not interpreted",
    "nonzero_with_count": "GpSimd index compaction is not interpreted",
    "sequence_bounds": "not interpreted",
    "dropout": "random number generation is not interpreted",
    "rng": "random number generation is not interpreted",
    "rand2": "random number generation is not interpreted",
    "set_rng_seed": "random number generation is not interpreted",
    "rand_set_state": "random number generation is not interpreted",
    "rand_get_state": "random number generation is not interpreted",
    "tensor_copy_dynamic_src": "removed after NKI 0.2",
    "tensor_copy_dynamic_dst": "removed after NKI 0.2",
    "activate2": "NKI 0.4+ (trn3) instruction",
    "topk": "NKI 0.6 instruction",
}


def _unsupported(api: str, detail: str):
    def instruction(*args, **kwargs):
        raise NkiUnsupportedError(f"nisa.{api}", detail)
    instruction.__name__ = api
    return instruction


globals().update({api: _unsupported(api, detail) for api, detail in UNSUPPORTED.items()})
