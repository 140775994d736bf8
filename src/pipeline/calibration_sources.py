"""Published NKI kernels run unmodified from a user's checkouts and compared with their own torch references.

`make calibrate SOURCES=<dir>` reads `calibration/originals.yaml`: each check names a repository, the kernel
and its torch reference inside it (`path::function`), an input builder, the target and grid, and the
tolerance with where it comes from. The kernel is imported from `<dir>/<repository name>` as it is (a
working tree is used in place; a bare git mirror is exported at the check's `rev` first), run through the
interpreter on inputs built the way the repository's tests build them, and compared with the reference in
the repository's own comparison mode. The repository's code is never copied into this one.
A check that is absent or fails is reported with its reason; it never stops the calibration.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import subprocess
import sys
import tarfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml


@dataclass(frozen=True)
class Check:
    """One published kernel and the configurations it is run at."""

    name: str
    repo: str                      # owner/name; looked up as <sources>/<name>
    rev: str                       # used when the checkout is a bare mirror
    kernel: str                    # "<path in repo>::<function>"
    reference: str                 # "<path in repo>::<function>", the repository's torch reference
    inputs: str                    # a key of BUILDERS
    target: str
    grid: int                      # the LNC the repository's tests launch with
    rtol: float
    atol: float
    mode: str                      # a key of COMPARATORS
    tolerance_source: str
    configs: tuple[dict, ...]


# --- inputs, built as the repositories' tests build them --------------------------------------------------


def _storage(dtype) -> np.dtype:
    from nki_cpu.dtypes import as_dtype

    return as_dtype(dtype).storage


def nkilib_rope(d_head: int, B: int, n_heads: int, S: int, contiguous_layout: bool,
                relayout_in_sbuf: bool) -> dict[str, Any]:
    """nki-library test/integration/nkilib/core/embeddings/test_rope.py `generate_kernel_inputs`: bf16 inputs
    from one `gaussian_tensor_generator()` (tensor_generators.py: `np.random.default_rng(0)`, N(0, 1))."""
    rng = np.random.default_rng(0)
    bf16 = _storage("bfloat16")
    half = d_head // 2
    return {
        "x_in": rng.normal(size=(d_head, B, n_heads, S)).astype(bf16),
        "cos": rng.normal(size=(half, B, S)).astype(bf16),
        "sin": rng.normal(size=(half, B, S)).astype(bf16),
        "lnc_shard": True, "contiguous_layout": contiguous_layout, "relayout_in_sbuf": relayout_in_sbuf,
    }


def nkilib_moe_tkg(tokens: int, hidden: int, intermediate: int, expert: int, top_k: int | None, act_fn: Any,
                   scale_mode: Any, all_expert: bool, dtype: Any, clamp: bool, bias: bool) -> dict[str, Any]:
    """nki-library test/integration/nkilib/core/moe/moe_tkg/test_moe_tkg_utils.py `build_moe_tkg`, non-MX path:
    expert indices from `np.random.seed(0)`, affinities normalised over the chosen experts (bf16 for
    all-expert, fp32 for selective: `get_expert_affinity_dtype`), every Gaussian tensor from a fresh
    `default_rng(0)`, clamp limits 7 / 8 / -6."""
    legacy = np.random.RandomState(0)          # the stream np.random.seed(0) gives the builder
    k = top_k if top_k is not None else expert
    if all_expert:
        index = np.stack([legacy.choice(expert, size=k, replace=False) for _ in range(tokens)]).astype(np.int32)
    else:
        index = legacy.randint(0, expert, size=(tokens, k)).astype(np.int32)
    chosen = legacy.rand(tokens, k)
    chosen = chosen / chosen.sum(axis=1, keepdims=True)
    affinities = np.zeros((tokens, expert))
    for t in range(tokens):
        affinities[t, index[t]] = chosen[t]
    storage = _storage(dtype)

    def gaussian(shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng(0).normal(size=shape).astype(storage)

    return {
        "hidden_input": gaussian((tokens, hidden)),
        "expert_gate_up_weights": gaussian((expert, hidden, 2, intermediate)),
        "expert_down_weights": gaussian((expert, intermediate, hidden)),
        "expert_affinities": affinities.astype(_storage("bfloat16") if all_expert else np.float32),
        "expert_index": index,
        "is_all_expert": all_expert,
        "rank_id": np.array([[0]], np.uint32) if all_expert and scale_mode.name != "NO_SCALE" else None,
        "expert_gate_up_bias": gaussian((expert, 2, intermediate)) if bias else None,
        "expert_down_bias": gaussian((expert, hidden)) if bias else None,
        "expert_affinities_scaling_mode": scale_mode,
        "activation_fn": act_fn,
        "output_dtype": dtype,
        "gate_clamp_upper_limit": 7.0 if clamp else None,
        "up_clamp_upper_limit": 8.0 if clamp else None,
        "up_clamp_lower_limit": -6.0 if clamp else None,
    }


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "nkilib_rope": nkilib_rope,
    "nkilib_moe_tkg": nkilib_moe_tkg,
}


# --- comparison, in the repositories' own modes ------------------------------------------------------------


def max_mode_excess(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[float, float]:
    """(largest |a - b|, the tolerance atol + rtol * max|b|): nki-library
    test/integration/nkilib/utils/comparators.py `maxAllClose(mode="max")`, which its output validator uses."""
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max()) if finite.size else 0.0
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    both_inf = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) == np.sign(expected))
    diff = np.where(both_inf, 0.0, diff)
    worst = float(np.nanmax(diff)) if not np.isnan(diff).any() else float("inf")
    return worst, atol + rtol * scale


def elementwise_excess(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[float, float]:
    """(largest |a - b| - rtol * |b|, atol): numpy/torch `allclose` per element."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) - rtol * np.abs(expected)
    return float(np.nan_to_num(diff, nan=np.inf).max()), atol


COMPARATORS: dict[str, Callable[[np.ndarray, np.ndarray, float, float], tuple[float, float]]] = {
    "max": max_mode_excess,
    "elementwise": elementwise_excess,
}


def to_torch_reference_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The conversion nki-library test/utils/unit_test_framework.py `torch_ref_wrapper` applies before calling a
    torch reference: 16-bit floats to float32 tensors, uint32 to int32, everything else as it is."""
    import torch

    converted = {}
    for key, value in inputs.items():
        if isinstance(value, np.ndarray):
            if value.dtype == np.uint32:
                value = value.astype(np.int32)
            elif value.dtype.itemsize == 2 and value.dtype.kind in "fV":    # float16 and ml_dtypes.bfloat16
                value = value.astype(np.float32)
            converted[key] = torch.from_numpy(np.ascontiguousarray(value))
        else:
            converted[key] = value
    return converted


def _as_arrays(result: Any) -> list[np.ndarray]:
    if isinstance(result, dict):
        result = list(result.values())
    if not isinstance(result, (list, tuple)):
        result = [result]
    arrays = []
    for item in result:
        if hasattr(item, "detach"):
            item = item.detach().float().numpy()
        arrays.append(np.asarray(item, dtype=np.float32))
    return arrays


# --- finding the code --------------------------------------------------------------------------------------


def load_checks(path: Path) -> list[Check]:
    """The checks of a YAML file; an unknown builder or comparison mode fails here, not mid-run."""
    raw = yaml.safe_load(path.read_text())
    checks = []
    for entry in raw["checks"]:
        tolerance = entry.pop("tolerance")
        entry["configs"] = tuple(entry["configs"])
        check = Check(**entry, rtol=float(tolerance["rtol"]), atol=float(tolerance["atol"]),
                      mode=tolerance["mode"], tolerance_source=tolerance["source"])
        if check.inputs not in BUILDERS:
            raise ValueError(f"{path}: check {check.name}: unknown inputs {check.inputs!r}; choose one of "
                             f"{sorted(BUILDERS)}")
        if check.mode not in COMPARATORS:
            raise ValueError(f"{path}: check {check.name}: unknown comparison mode {check.mode!r}; choose one "
                             f"of {sorted(COMPARATORS)}")
        checks.append(check)
    return checks


def _git(folder: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=text)


def locate(check: Check, sources: Path, workdir: Path) -> tuple[Path, str] | str:
    """(folder holding the repository's files, where they came from), or why they are not at hand."""
    folder = sources.absolute() / check.repo.split("/")[-1]
    kernel_path = check.kernel.split("::")[0]
    if not folder.is_dir():
        return f"not found under SOURCES (no {folder})"
    if (folder / kernel_path).is_file():
        head = _git(folder, "rev-parse", "--short", "HEAD")
        return folder, f"working tree at {head.stdout.strip()}" if head.returncode == 0 else "working tree"
    commit = _git(folder, "rev-parse", "--short", f"{check.rev}^{{commit}}")
    if commit.returncode != 0:
        return f"not found under SOURCES ({folder} has neither {kernel_path} nor git revision {check.rev})"
    exported = workdir / f"{folder.name}@{commit.stdout.strip()}"
    if not exported.is_dir():
        archive = _git(folder, "archive", "--format=tar", commit.stdout.strip(), text=False)
        if archive.returncode != 0:
            return f"failed: git archive {check.rev} in {folder}: {archive.stderr.decode().strip()[:200]}"
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(exported, filter="data")
    if not (exported / kernel_path).is_file():
        return f"not found under SOURCES ({check.rev} of {folder} has no {kernel_path})"
    return exported, f"git {check.rev} = {commit.stdout.strip()}"


def _install_absent_neuron_dtypes() -> None:
    """nki-library's torch references import `neuron_dtypes` (an AWS package not on PyPI) at module level but
    call it only on their MX-quantised paths, which no check runs. If it is absent, a placeholder module
    lets the import succeed; any use of it raises, naming the missing package."""
    try:
        import neuron_dtypes  # noqa: F401
    except ImportError:
        placeholder = types.ModuleType("neuron_dtypes")

        def missing(name: str):
            raise AttributeError(f"neuron_dtypes.{name}: the neuron_dtypes package is not installed "
                                 "(only MX-quantised reference paths need it)")

        placeholder.__getattr__ = missing
        sys.modules["neuron_dtypes"] = placeholder


def _resolve(value: Any, namespace: dict[str, Any]) -> Any:
    """"Enum.Member" / "nl.float16" strings of a config, looked up among the kernel module's own globals."""
    if isinstance(value, str) and "." in value:
        head, _, attr = value.partition(".")
        if head in namespace:
            return getattr(namespace[head], attr)
    return value


# --- running -----------------------------------------------------------------------------------------------


def config_label(config: dict) -> str:
    return config.get("label") or "(" + ",".join(str(v) for v in config.values()) + ")"


def run_config(check: Check, config: dict, kernel: Any, reference: Callable) -> dict[str, Any]:
    """Run one configuration: the kernel through the interpreter, the reference on the same inputs."""
    import nki_cpu

    namespace = inspect.unwrap(getattr(kernel, "func", kernel)).__globals__
    arguments = {k: _resolve(v, namespace) for k, v in config.items() if k != "label"}
    inputs = BUILDERS[check.inputs](**arguments)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):    # the originals' own progress prints
        run = nki_cpu.run_kernel(kernel, grid=check.grid, target=check.target, **inputs)
    seconds = time.perf_counter() - started
    actual, expected = _as_arrays(run.outputs), _as_arrays(reference(**to_torch_reference_inputs(inputs)))
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        raise ValueError(f"outputs {[a.shape for a in actual]} but the reference returns "
                         f"{[e.shape for e in expected]}")
    pairs = [(*COMPARATORS[check.mode](a, e, check.rtol, check.atol), float(np.abs(e).max(initial=0.0)))
             for a, e in zip(actual, expected)]
    error, tolerance, reference_max = max(pairs, key=lambda p: p[0] - p[1])
    return {"matched": error <= tolerance, "max_error": error, "tolerance": tolerance,
            "reference_max": reference_max, "seconds": seconds, "trace": run.trace}


def _status(result: dict[str, Any], mode: str) -> str:
    verdict = "matches reference" if result["matched"] else "does NOT match reference"
    share = f" = {result['max_error'] / result['reference_max']:.2%} of max abs ref" if result["reference_max"] else ""
    return (f"ran unmodified, {verdict} (max abs err {result['max_error']:.3g}{share}; "
            f"tolerance {result['tolerance']:.3g}, {mode} mode)")


def _failure(error: BaseException, root: Path | None = None) -> str:
    """The error's first line, with the checkout's paths made relative to it."""
    line = (str(error).strip().splitlines() or [""])[0]
    if root is not None:
        line = line.replace(f"{root}/", "")
    return f"failed: {type(error).__name__}: {line[:400]}"


def run_checks(checks: list[Check], sources: Path, workdir: Path,
               estimate_ns: Callable[[Check, Any], float] | None = None,
               say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One record per (check, config) with its status; `estimate_ns(check, trace)`, when given, adds the cost
    model's estimate of the run. Nothing here raises for a missing or failing original."""
    _install_absent_neuron_dtypes()
    records = []
    for check in checks:
        base = {"check": check.name, "repo": check.repo, "kernel": check.kernel, "reference": check.reference,
                "target": check.target, "grid": check.grid, "tolerance_source": check.tolerance_source}
        found = locate(check, sources, workdir)
        loaded: tuple | str = found
        if not isinstance(found, str):
            root, origin = found
            base["origin"] = origin
            loaded = _load(root, check)
        for config in check.configs:
            record = {**base, "config": config_label(config), "arguments": config}
            if isinstance(loaded, str):
                record["status"] = loaded
            else:
                try:
                    result = run_config(check, config, *loaded)
                    record.update(status=_status(result, check.mode), matched=result["matched"],
                                  max_error=result["max_error"], tolerance=result["tolerance"],
                                  reference_max=result["reference_max"],
                                  interpreter_seconds=round(result["seconds"], 2),
                                  peak_sbuf_bytes=result["trace"].peak_sbuf_bytes)
                    if estimate_ns is not None:
                        record["estimated_ns"] = estimate_ns(check, result["trace"])
                except Exception as error:  # a published kernel the interpreter cannot run: reported, not fatal
                    record["status"] = _failure(error, root)
            say(f"  original {check.name} {record['config']}: {record['status']}")
            records.append(record)
    return records


def _load(root: Path, check: Check) -> tuple[Any, Callable] | str:
    import nki_cpu

    try:
        kernel = nki_cpu.load_kernel(root / check.kernel.split("::")[0], check.kernel.split("::")[1])
        reference = nki_cpu.load_kernel(root / check.reference.split("::")[0], check.reference.split("::")[1])
    except Exception as error:
        return _failure(error, root)
    return kernel, reference


def table(records: list[dict[str, Any]]) -> str:
    """The Markdown section of calibration.md."""
    lines = ["| published kernel | config | status | interpreter | its estimate |", "|---|---|---|---|---|"]
    for r in records:
        seconds = f"{r['interpreter_seconds']:.1f} s" if "interpreter_seconds" in r else "-"
        estimate = f"{r['estimated_ns'] / 1e3:.1f} us" if "estimated_ns" in r else "-"
        cells = [r["check"], r["config"], r["status"], seconds, estimate]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """Counts for MLflow: how many configurations ran, and how many matched their reference."""
    return {"originals.configs": len(records),
            "originals.ran": sum(r["status"].startswith("ran") for r in records),
            "originals.matched": sum(bool(r.get("matched")) for r in records)}
