"""ScalarE activation instructions: out = op(data * scale + bias), with an optional free-axis sum.

The ScalarE accumulator registers (one fp32 per lane) persist across instructions; reduce_cmd
selects reset / reduce behaviour and `reduce_res` reads the registers back (nki-api.md §10.4).
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site
from ..context import current
from ..tensor import NkiTensor
from .common import (accumulate, attrs_of, check_buffers, check_op, check_same_elements, lanes_of, record,
                     resolve, scalar_operand, tile_f32, write)
from .enums import reduce_cmd as ReduceCmd


def activation(dst, op, data, bias=None, scale=1.0, reduce_op=None, reduce_res=None,
               reduce_cmd=ReduceCmd.idle, name=None):
    _activation("activation", dst, op, data, bias, scale, reduce_op, reduce_res, reduce_cmd, name)


def activation_reduce(dst, op, data, reduce_op, reduce_res, bias=None, scale=1.0, name=None):
    _activation("activation_reduce", dst, op, data, bias, scale, reduce_op, reduce_res, ReduceCmd.reset_reduce, name)


def _activation(instr, dst, op, data, bias, scale, reduce_op, reduce_res, reduce_cmd, name):
    launch, site = current(), kernel_site()
    function = check_op(instr, site, op, "op", activation=True)
    dst, data = resolve(dst), resolve(data)
    check_buffers(instr, "scalar", site, {"dst": dst, "data": data})
    check_same_elements(instr, site, "dst", dst, {"data": data})
    parts = data.shape[0]
    reads = {"data": data}
    factor = scalar_operand(instr, site, scale, parts, "scale", reads, require_fp32=False)
    unscaled = not isinstance(scale, NkiTensor) and np.float32(scale) == 1.0
    shift = None
    if bias is not None:
        if not hasattr(bias, "shape") and launch.target.nc_version < 3:
            fail(instr, "a scalar bias needs NeuronCore-v3 or later", f"bias={bias!r} on {launch.target.name}", site)
        shift = scalar_operand(instr, site, bias, parts, "bias", reads, require_fp32=False)
    writes = {"dst": dst}
    if reduce_op is not None and getattr(reduce_op, "name", None) != "add":
        fail(instr, "the activation reduce_op must be nl.add", f"reduce_op={reduce_op!r}", site)
    reducing = bool(int(reduce_cmd)) or reduce_res is not None
    if reduce_res is not None:
        writes["reduce_res"] = resolve(reduce_res)
        check_buffers(instr, "scalar", site, {"reduce_res": writes["reduce_res"]})
    registers, lanes, result = launch.scalar_accumulator, lanes_of(data), writes.get("reduce_res")

    def compute():
        values = tile_f32(data)
        if not unscaled:
            values = values * factor()
        if shift is not None:
            values = values + shift()
        out = function.activation(values.astype(np.float32, copy=False))
        write(dst, out)
        if reducing:
            summed = out.sum(axis=1, dtype=np.float32)
            regs = accumulate(registers, lanes, reduce_cmd, summed, np.add, 0.0)
            if result is not None:
                write(result, regs)
    launch.execute(compute)
    record(launch, instr, "scalar", site, writes, reads,
           attrs_of(name, None, act=function.name, reduce_cmd=ReduceCmd(reduce_cmd).name))
