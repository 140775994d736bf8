"""Loading casts weights as NxDI does."""
import torch

from tests.unit.test_parallel import full_layer


def test_router_of_an_fp32_checkpoint_is_rounded_to_the_model_dtype_and_held_in_fp32():
    """NxDI application_base.checkpoint_loader_fn casts every checkpoint tensor, the router's too, to the
    model dtype; the router's Linear stays fp32 (router_config.dtype), so its values are bf16-rounded."""
    full = full_layer()  # fp32 values, almost none representable in bf16
    bf16 = full.cast(torch.bfloat16)
    assert bf16.router.dtype == torch.float32
    assert torch.equal(bf16.router, full.router.to(torch.bfloat16).float())
    assert not torch.equal(bf16.router, full.router)
    assert bf16.q_proj.dtype == torch.bfloat16
    assert torch.equal(full.cast(torch.float32).router, full.router)  # an fp32 model keeps it exact
