"""nki_cpu."""
