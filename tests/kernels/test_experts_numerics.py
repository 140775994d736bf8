"""grouped_v2's rounding knobs (fp32_swiglu, fp32_affinity): the kernel through the interpreter matches its
reference with the compiler's MPA roundings (kernels.numerics), which differ from the eager baseline's."""
import pytest
import torch

import kernels
from kernels.experts.baseline import experts_reference
from tests.kernels.test_experts_nki import MEDIUM, distinct_index, make_tokens, make_weights, run


@pytest.mark.parametrize("knobs", [{"fp32_swiglu": True}, {"fp32_affinity": True},
                                   {"fp32_swiglu": True, "fp32_affinity": True, "cores": 1}])
def test_grouped_v2_rounding_knobs_match_their_schedule(knobs):
    variant = kernels.get("experts", "grouped_v2")
    x, affinities = make_tokens(MEDIUM, 2)
    index, weights = distinct_index(MEDIUM, 2), make_weights(MEDIUM)
    out, _ = run("grouped_v2", x, affinities, index, weights, **knobs)
    expected = variant.reference(x, affinities, index, weights, params=variant.make_params(knobs))
    assert (out.float() - expected.float()).abs().max() <= variant.rtol * expected.float().abs().max()
    eager = experts_reference(x, affinities, index, weights)
    assert not torch.equal(expected, eager)  # the schedule changes roundings the eager baseline keeps
