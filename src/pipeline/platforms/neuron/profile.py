"""Device profile of the job's build: `neuron-profile capture` of the rank-0, bucket-0 NEFF of the
context-encoding and the token-generation sub-model (with TP > 1 across the TP workers, which writes
`profile_rank_<i>.ntff`), then `neuron-profile view --output-format summary-json` (its standard output) and
`--output-format json --output-file` (every event) of rank 0's capture (SDK tools/profiler/
neuron-profile-user-guide.rst). The NEFFs, NTFFs and both JSONs are artifacts; each summary's numeric
fields are metrics `<cte|tkg>.<field>`; measured time per NKI kernel call (kernel_times.py) is
`<layer>.<phase>.time_us`, beside the cost model's `est.<layer>.<phase>.time_us` of the same config
(the CPU profile stage's Trainium estimate, logged in the same run). The job's loaded models are dropped
first: the capture needs the NeuronCores; a later stage reloads what it needs."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from kernels.types import Phase
from pipeline.platforms.neuron.hlo import SUBMODELS, find_hlos, parse_hlo
from pipeline.platforms.neuron.kernel_times import kernel_time_metrics, nki_calls
from pipeline.platforms.neuron.session import CANDIDATE
from pipeline.stages.base import StageResult
from pipeline.stages.profile import trainium_profile

SHORT = {"context_encoding_model": "cte", "token_generation_model": "tkg"}
PHASES = {"context_encoding_model": Phase.CONTEXT.value, "token_generation_model": Phase.TOKEN.value}


def capture_command(tool: str, neff: Path, out: Path, tp_degree: int) -> list[str]:
    workers = ["--collectives-workers-per-node", str(tp_degree)] if tp_degree > 1 else []
    return [tool, "capture", "-n", str(neff), *workers, "-s", str(out / "profile.ntff")]


def rank0_ntff(out: Path) -> Path:
    for name in ("profile_rank_0.ntff", "profile.ntff"):
        if (out / name).exists():
            return out / name
    raise FileNotFoundError(f"neuron-profile capture wrote no NTFF in {out}")


def numeric_fields(summary, prefix: str) -> dict[str, float]:
    """Every number in a summary, by its dotted path (a list counts by its first entry: the first core)."""
    if isinstance(summary, list):
        return numeric_fields(summary[0], prefix) if summary else {}
    if isinstance(summary, bool) or not isinstance(summary, (int, float, dict)):
        return {}
    if not isinstance(summary, dict):
        return {prefix: float(summary)}
    found = {}
    for key, value in summary.items():
        found |= numeric_fields(value, f"{prefix}.{key}")
    return found


def profile_neff(tool: str, neff: Path, out: Path, tp_degree: int) -> dict:
    """Capture and summarise one NEFF into `out`; the parsed summary."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(neff, out / neff.name)
    with (out / "neuron-profile.log").open("a") as log:
        subprocess.run(capture_command(tool, neff, out, tp_degree), check=True, stdout=log, stderr=subprocess.STDOUT)
        view = [tool, "view", "-n", str(neff), "-s", str(rank0_ntff(out))]
        with (out / "summary.json").open("w") as summary:
            subprocess.run([*view, "--output-format", "summary-json"], check=True, stdout=summary, stderr=log)
        subprocess.run([*view, "--output-format", "json", "--output-file", str(out / "profile.json")], check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    return json.loads((out / "summary.json").read_text())


def run(job) -> StageResult:
    tool = job.conf.platform.neuron.profile_tool
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} not found (aws-neuronx-tools installs it to /opt/aws/neuron/bin)")
    session = job.platform.session(job)
    build = session.build(CANDIDATE)
    session.unload()  # the capture runs the NEFF in its own process, on the cores our models hold
    out = job.stage_dir("profile")
    metrics, measured = {}, {}
    for tag, hlo in zip(SUBMODELS, find_hlos(build.dirs.work)):
        neffs = sorted(hlo.parent.glob("*.neff"))
        if not neffs:
            raise FileNotFoundError(f"no NEFF in {hlo.parent}")
        summary = profile_neff(tool, neffs[0], out / SHORT[tag], job.conf.parallel.tp_degree)
        metrics |= numeric_fields(summary, SHORT[tag])
        events = json.loads((out / SHORT[tag] / "profile.json").read_text()).get("instruction", [])
        measured |= kernel_time_metrics(events, nki_calls(parse_hlo(hlo), build.choices), PHASES[tag])
    est_metrics, est_summary = trainium_profile(job, out)
    times = ", ".join(f"{k.removesuffix('.time_us')} {v:.1f} us" for k, v in measured.items() if k.endswith(".time_us"))
    return StageResult(
        metrics={**metrics, **measured, **est_metrics},
        headline={k: v for k, v in {**measured, **est_metrics}.items() if k.endswith(".time_us")},
        summary=f"{job.conf.platform.name}: neuron-profile of the CTE and TKG NEFFs (rank 0, bucket 0): "
                f"{times or 'no NKI kernel call'} | {est_summary}",
    )
