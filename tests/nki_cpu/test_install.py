"""install() never shadows a genuine NKI package, and replaces PyPI's placeholder."""

import os
import subprocess
import sys
import textwrap

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))

PROBE = textwrap.dedent("""
    import sys
    import nki_cpu
    result = nki_cpu.install()
    import nki, nki.language as nl, nki.isa as nisa
    print(result.installed, result.provider, getattr(nki, "__nki_cpu__", False), getattr(nki, "FAKE", "-"))
    nki_cpu.uninstall()
    print("nki.language" in sys.modules)
""")


def _probe(tmp_path, package_files, probe):
    """Run `probe` in a fresh interpreter whose path has `package_files` (fake packages) before the sources."""
    site = tmp_path / "site"
    for relative, text in package_files.items():
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), SRC])}
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)


def _run(tmp_path, package_files):
    done = _probe(tmp_path, package_files, PROBE)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_genuine_nki_is_left_in_place(tmp_path):
    words = _run(tmp_path, {
        "nki/__init__.py": "FAKE = 'genuine'\ndef jit(f=None, **kw):\n    return f\n",
        "nki/language/__init__.py": "sbuf = 'sbuf'\n",
        "nki/isa/__init__.py": "def nc_matmul(*a, **k):\n    pass\n",
    })
    assert words == ["False", "genuine", "False", "genuine", "True"]    # uninstall leaves a genuine nki alone


def test_placeholder_nki_is_replaced(tmp_path):
    words = _run(tmp_path, {
        "nki/__init__.py": "raise ImportError('WRONG PACKAGE: install nki from the Neuron repository')\n",
    })
    assert words == ["True", "nki_cpu", "True", "-", "False"]


def test_no_nki_at_all_installs_the_interpreter(tmp_path):
    assert _run(tmp_path, {"unrelated.py": ""}) == ["True", "nki_cpu", "True", "-", "False"]


LEGACY_PROBE = textwrap.dedent("""
    import nki_cpu
    nki_cpu.install()
    import neuronxcc, neuronxcc.nki as nki, neuronxcc.nki.language as nl, neuronxcc.nki.isa as nisa
    import neuronxcc.nki.typing as nt
    print(getattr(neuronxcc, "__nki_cpu__", False), nl.load.__module__, nl.matmul.__module__, nt.mutable_tensor.__name__)
""")


def _run_legacy(tmp_path, package_files):
    return _probe(tmp_path, package_files, LEGACY_PROBE)


def test_neuronxcc_nki_resolves_to_the_interpreter(tmp_path):
    done = _run_legacy(tmp_path, {"unrelated.py": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "nki_cpu.language_ops", "nki_cpu.legacy", "NkiTensor"]


def test_a_real_neuronxcc_is_left_in_place(tmp_path):
    done = _run_legacy(tmp_path, {"neuronxcc/__init__.py": "REAL = True\n"})
    assert done.returncode != 0 and "neuronxcc.nki" in done.stderr     # the real package has no nki here
