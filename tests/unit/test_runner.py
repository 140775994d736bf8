"""The runner's pieces that need no model: run names, SIGTERM as an interrupt, the code version."""
import os
import signal
import subprocess
import time

import pytest

from pipeline.config.validate import to_pipeline_conf
from pipeline.runner import (Terminated, git_commit, interrupt_exit_code, interrupt_reason, run_name,
                             sigterm_as_interrupt)
from tests.conftest import compose_config


@pytest.fixture
def default_conf(tmp_path):
    return to_pipeline_conf(compose_config([], tmp_path))


@pytest.mark.parametrize("overrides,name", [
    (["kernel_params.lm_head.relative_noise=0.1", "kernel.lm_head=perturbed"],
     "lm_head.relative_noise=0.1 lm_head=perturbed"),
    (["kernel_params.lm_head.seed=3", "model.seed=1"], "lm_head.seed=3 model.seed=1"),
    (["parallel.tp_degree=2", "+experiment=contest", "tracking.uri=sqlite:///x.db", "hydra.run.dir=/tmp/x"],
     "parallel.tp_degree=2 experiment=contest"),
    (["workload.prompts=[" + "a" * 100 + "]"], "workload.prompts=[" + "a" * 36 + "..."),
    ([], "default"),
])
def test_run_names_are_readable_and_unambiguous(default_conf, overrides, name):
    assert run_name(default_conf, overrides) == name


def test_an_explicit_run_name_wins(tmp_path):
    conf = to_pipeline_conf(compose_config(["tracking.run_name=mine"], tmp_path))
    assert run_name(conf, ["kernel.norm=nki_rmsnorm"]) == "mine"


def test_sigterm_raises_terminated_inside_and_restores_the_handler_after():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as raised:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises as soon as the signal arrives
    assert isinstance(raised.value, KeyboardInterrupt)  # takes Ctrl-C's path in the runner
    assert interrupt_reason(raised.value) == "terminated (SIGTERM)" and interrupt_exit_code(raised.value) == 143
    assert interrupt_reason(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    assert interrupt_exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_code_version_changes_with_code_edits_only(tmp_path):
    """De-duplication keys on it: an uncommitted edit of src/ or conf/ is a new version, one of the README is not."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("a\n")
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "init", "--allow-empty")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "files")
    clean = git_commit(str(tmp_path))
    assert len(clean) == 40 and "dirty" not in clean
    (tmp_path / "README.md").write_text("b\n")
    docs = git_commit(str(tmp_path))
    (tmp_path / "README.md").write_text("c\n")
    assert docs.startswith(clean + "-dirty.") and git_commit(str(tmp_path)) == docs
    (tmp_path / "src" / "m.py").write_text("x = 2\n")
    code = git_commit(str(tmp_path))
    (tmp_path / "src" / "m.py").write_text("x = 3\n")
    assert code != docs and git_commit(str(tmp_path)) not in (code, docs)
