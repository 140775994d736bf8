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


def _run(tmp_path, package_files):
    site = tmp_path / "site"
    for relative, text in package_files.items():
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), SRC])}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
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


def test_neuronxcc_typing_alias_is_opt_in(tmp_path):
    probe = textwrap.dedent("""
        import importlib.util, nki_cpu
        nki_cpu.install()
        print(importlib.util.find_spec("neuronxcc") is None)
        nki_cpu.install(alias_neuronxcc_typing=True)
        import neuronxcc.nki.typing as nt
        print(nt.mutable_tensor.__name__)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "NkiTensor"]
