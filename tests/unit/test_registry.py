import pytest

import kernels
from kernels.registry import NoParams, Variant, register
from kernels.slots import KernelSet
from kernels.types import Phase


def test_every_layer_has_a_baseline():
    for layer in kernels.LAYERS:
        assert "baseline" in kernels.names(layer)


def test_unknown_variant_names_the_registered_ones():
    with pytest.raises(kernels.UnknownVariantError) as error:
        kernels.get("experts", "no_such_variant")
    message = str(error.value)
    assert "kernel.experts=no_such_variant" in message
    assert all(name in message for name in kernels.names("experts"))
    assert "\n" not in message


def test_unknown_knob_lists_valid_knobs():
    with pytest.raises(ValueError, match=r"unknown knob\(s\) nope .*valid: relative_noise, seed"):
        kernels.get("lm_head", "perturbed").make_params({"nope": 1})


def test_params_override_is_applied():
    params = kernels.get("lm_head", "perturbed").make_params({"relative_noise": 0.5})
    assert params.relative_noise == 0.5 and params.seed == 0


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register(Variant("norm", "baseline", "dup", reference=lambda *a, **k: None))


def test_decode_only_variant_falls_back_to_baseline_in_prefill():
    decode_only = Variant("norm", "decode_only_probe", "probe", reference=lambda *a, params: "ran",
                          phases=frozenset({Phase.TOKEN}))
    try:
        register(decode_only)
        slots = KernelSet.from_choices({"norm": "decode_only_probe"})
        assert slots.norm.resolve(Phase.TOKEN)[0].name == "decode_only_probe"
        assert slots.norm.resolve(Phase.CONTEXT)[0].name == "baseline"
        assert slots.fallbacks() == {"norm": ["context"]}
    finally:
        kernels.registry._VARIANTS["norm"].pop("decode_only_probe")


def test_no_params_variant_rejects_knobs():
    assert kernels.get("norm", "baseline").params is NoParams
    with pytest.raises(ValueError, match="valid: none"):
        kernels.get("norm", "baseline").make_params({"tile": 128})
