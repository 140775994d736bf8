"""OneAhead: the accuracy stage's reference for the next prompt on a second thread."""
import threading

import pytest
import torch

from kernels.slots import KernelSet
from model.generation import generate
from model.qwen3_moe import Qwen3Moe
from pipeline.evaluation.ahead import OneAhead
from tests.models import checkpoint


def test_results_come_in_order_and_the_work_runs_at_most_one_item_ahead():
    started, taken = [], []
    gate = threading.Event()

    def work(item: int) -> int:
        started.append(item)
        if item == 1:
            gate.set()
        return item * item

    with OneAhead(work, range(5)) as results:
        for item, result in zip(range(5), results):
            if item == 0:
                assert gate.wait(5)          # item 1 is worked on while the caller holds item 0
            assert result == item * item
            assert max(started) <= item + 1
            taken.append(result)
    assert taken == [0, 1, 4, 9, 16]


def test_an_error_in_the_work_is_raised_where_its_result_is_taken():
    def work(item: int) -> int:
        if item == 2:
            raise ValueError("reference failed on prompt 2")
        return item

    taken = []
    with pytest.raises(ValueError, match="prompt 2"):
        with OneAhead(work, range(4)) as results:
            for result in results:
                taken.append(result)
    assert taken == [0, 1]


def test_leaving_early_stops_the_thread_and_restores_torch_threads():
    threads = torch.get_num_threads()
    started = []

    def work(item: int) -> int:
        started.append(item)
        return item

    ahead = OneAhead(work, range(10))
    with pytest.raises(KeyboardInterrupt):
        with ahead as results:
            next(results)
            raise KeyboardInterrupt
    ahead._thread.join(5)
    assert not ahead._thread.is_alive() and max(started) <= 2
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_the_reference_generation_does_not_depend_on_torch_threads():
    """The premise of halving torch's threads: the slice's baseline generation (context bucket 128 and decode) is
    bit for bit the same on one thread as on two."""
    model = Qwen3Moe.from_checkpoint(checkpoint("qwen3_30b_a3b_slice"), KernelSet.from_choices({}), 4, torch.bfloat16)
    prompt = list(range(1000, 1100))
    before = torch.get_num_threads()
    logits = []
    try:
        for count in (2, 1):
            torch.set_num_threads(count)
            logits.append(generate(model, [prompt], 3, [128, 256], keep_logits=True).logits)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(logits[0], logits[1])
