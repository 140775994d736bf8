"""The single-file submission: `qwen_with_nki.py` as the contest's `main.py --enable-nki` imports it
(aws-neuron/nki-moe main.py: `importlib.import_module("qwen_with_nki")`, then `NeuronQwen3MoeForCausalLM`).

One file, no other files, flags or environment variables: the selected kernels' modules and their project
imports are embedded as source and served under a private package (bundle_loader), the model code
(qwen3_moe_nki) follows with its project imports pointed there, and the config's choices close the file as
module-level defaults."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from model.neuron.slots import DEVICE_KERNELS

BUNDLE_PACKAGE = "_qwen_nki_bundle"
PROJECT_ROOTS = ("kernels", "model")
MODEL_MODULE = "model.neuron.qwen3_moe_nki"
LOADER_MODULE = "model.neuron.bundle_loader"
_FROM_PROJECT = re.compile(rf"^(\s*)from ({'|'.join(PROJECT_ROOTS)})([.\s])", re.MULTILINE)


class BundleError(RuntimeError):
    """A module cannot be bundled (e.g. `import kernels.x`, which would bind the wrong name once moved)."""


def source_of(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise BundleError(f"module {module} not found")
    return Path(spec.origin).read_text()


def project_imports(module: str, source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in PROJECT_ROOTS:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise BundleError(f"{module}: relative imports cannot be bundled")
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in PROJECT_ROOTS for a in node.names):
            raise BundleError(f"{module}: write `from {node.names[0].name} import ...` to be bundled")
    return found


def closure(roots: list[str]) -> dict[str, str]:
    """Every project module the roots import, transitively: {module: source}, in discovery order."""
    sources: dict[str, str] = {}
    pending = list(roots)
    while pending:
        module = pending.pop(0)
        if module in sources:
            continue
        sources[module] = source_of(module)
        pending += project_imports(module, sources[module])
    return sources


def kernel_modules(choices: dict[str, str]) -> list[str]:
    return [f"kernels.{DEVICE_KERNELS[(layer, name)][0]}" for layer, name in choices.items() if name != "baseline"]


def rewrite(source: str) -> str:
    """Project imports pointed at the bundle package."""
    return _FROM_PROJECT.sub(rf"\1from {BUNDLE_PACKAGE}.\2\3", source)


def _literal(values: dict) -> str:
    """A Python literal of plain config values (checked: it must read back equal)."""
    text = repr({k: values[k] for k in sorted(values)})
    if ast.literal_eval(text) != values:
        raise BundleError(f"not a plain literal: {text}")
    return text


def render(choices: dict[str, str], params: dict[str, dict], compiler_settings: dict, provenance: dict) -> str:
    """The text of qwen_with_nki.py for this config."""
    model_source = source_of(MODEL_MODULE)
    embedded = closure(kernel_modules(choices) + project_imports(MODEL_MODULE, model_source))
    sources = {name: rewrite(text) for name, text in embedded.items()}
    header = (
        '"""Qwen3-30B-A3B with NKI kernels for NxDI, written by nki-moe-pipeline\'s export stage: one file for\n'
        "aws-neuron/nki-moe `main.py --enable-nki` (NeuronQwen3MoeForCausalLM). Do not edit; re-export instead.\n\n"
        + "".join(f"{k}: {v}\n" for k, v in provenance.items())
        + '"""\n'
    )
    parts = [
        header,
        f"# ---- {LOADER_MODULE} (serves the embedded modules below)\n" + source_of(LOADER_MODULE),
        f"_BUNDLE_PACKAGE = {BUNDLE_PACKAGE!r}\n_SOURCES = {{\n"
        + "".join(f"    {name!r}: {text!r},\n" for name, text in sources.items())
        + "}\ninstall_bundle(_BUNDLE_PACKAGE, _SOURCES)\n",
        f"# ---- {MODEL_MODULE}\n" + rewrite(model_source),
        "# ---- this export's choices (module-level defaults)\n"
        f"KERNEL_CHOICES = {_literal(choices)}\n"
        f"KERNEL_PARAMS = {_literal(params)}\n"
        f"COMPILER_SETTINGS = {_literal(compiler_settings)}\n"
        "NeuronQwen3MoeForCausalLM = model_class(KERNEL_CHOICES, COMPILER_SETTINGS, KERNEL_PARAMS, "
        "kernel_package=_BUNDLE_PACKAGE + '.kernels')\n"
        "apply_to_baseline(COMPILER_SETTINGS)\n",
    ]
    return "\n\n".join(parts)


def bundled_modules(text: str) -> list[str]:
    """The module names an exported file embeds (for reports and tests)."""
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_SOURCES":
            return [ast.literal_eval(k) for k in node.value.keys]
    return []
