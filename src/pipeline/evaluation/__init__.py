"""Accuracy and score computations of the contest harness, reimplemented."""
