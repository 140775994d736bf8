"""Launcher presets (conf/hydra/launcher): submitit's local executor runs a tiny sweep into one MLflow parent run;
the ParallelCluster Trainium preset asks SLURM for one exclusive Trainium node per job in the Neuron venv."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

from pipeline.config import CONF_DIR
from tests.integration.cli import children, job_runs, run_pipeline, runs


@pytest.mark.slow
def test_submitit_local_preset_runs_a_sweep_into_one_parent_run(tracking, tmp_path):
    args = ["-m", "hydra/launcher=cpu_local", "kernel.lm_head=baseline,perturbed", "stages=[compile]"]
    result = run_pipeline(args, tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    jobs = children(tracking, parent.info.run_id)
    assert parent.info.status == "FINISHED" and len(jobs) == 2 == len(job_runs(tracking))
    assert sorted(j.data.tags["kernel.lm_head"] for j in jobs) == ["baseline", "perturbed"]
    assert all(j.info.status == "FINISHED" for j in jobs)
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # one submitit job each, in its own process


def slurm_script(overrides: list[str], tmp_path: Path) -> str:
    """The sbatch script submitit would submit for the preset (no SLURM here: rendered, not submitted), with the
    plugin's parameter names mapped to sbatch's as submitit's SlurmExecutor maps them."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=["hydra/launcher=trainium_slurm", f"hydra.sweep.dir={tmp_path}", *overrides],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    names = SlurmExecutor._equivalence_dict()
    valid = SlurmExecutor._valid_parameters()
    params = {names.get(k, k): v for k, v in launcher.items() if v is not None and names.get(k, k) in valid}
    params["job_name"] = "pipeline"
    return _make_sbatch_string(command="python -m pipeline", folder=tmp_path / ".submitit" / "%j", **params)


def test_trainium_slurm_preset_asks_for_one_exclusive_node_per_job(tmp_path):
    script = slurm_script(["hydra.launcher.partition=trn2-queue"], tmp_path)
    for line in ("#SBATCH --exclusive", "#SBATCH --partition=trn2-queue", "#SBATCH --nodes=1",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --time=480",
                 "source /opt/aws_neuronx_venv_pytorch_2_9_nxd_inference/bin/activate"):
        assert line in script.splitlines(), line
    assert "--gpus" not in script and "--cpus-per-task" not in script  # exclusive: the node's every core
