"""NxD's choice between selective loading and all-experts compute (ExpertMLPsV2.forward), as a pure function:
the torch baseline, the NKI tiling checks and the device slots all branch on it, and the device slots are
bundled into the single-file submission, so this module imports nothing of the project."""
from __future__ import annotations

SELECTIVE_LOADING_THRESHOLD = 1.0  # NxD model_utils.DEFAULT_SELECTIVE_LOADING_THRESHOLD


def uses_selective_loading(tokens: int, top_k: int, experts: int) -> bool:
    return tokens * top_k / experts < SELECTIVE_LOADING_THRESHOLD
