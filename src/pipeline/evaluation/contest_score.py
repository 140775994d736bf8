"""The contest's score formula (aws-neuron/nki-moe `main.py` `calculate_score`, hardware-and-model.md §9.2), in
one place for the measured score stage and the Trainium estimate."""
from __future__ import annotations


def contest_score(accuracy: float, base_latency: float, latency: float, throughput: float, base_throughput: float,
                  nki_ratio: float) -> float:
    """accuracy x (base latency / latency) x (throughput / base throughput) x (1 + NKI MAC ratio)."""
    return accuracy * (base_latency / latency) * (throughput / base_throughput) * (1.0 + nki_ratio)
