"""The package as installed: names, public surface, kernel purity, types."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import corral.kernel

ROOT = pathlib.Path(__file__).resolve().parent.parent

# What corral.kernel may import: pure standard-library modules and its two dependencies.
KERNEL_IMPORTS = {"__future__", "attrs", "bisect", "collections", "enum", "heapq", "itertools",
                  "math", "queue", "sortedcontainers", "typing"}


def test_installed_under_the_corral_namespace(tmp_path: pathlib.Path) -> None:
    """corral.kernel, .transports and .adapters import as installed; no top-level
    kernel, transports or adapters module does (checked away from the checkout)."""
    probe = (
        "import importlib.util as u\n"
        "print([u.find_spec(n) is not None for n in "
        "('corral.kernel', 'corral.transports', 'corral.adapters', "
        "'kernel', 'transports', 'adapters')])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    assert "[True, True, True, False, False, False]" == out.strip()


def test_kernel_public_surface() -> None:
    """corral.kernel exports exactly what the docs list."""
    assert {
        "AlreadyExists", "Cancelled", "Closed", "ContainerMetrics", "ContainerStatistics",
        "CorralError", "GIVEN_BACK", "Distribution", "SessionInfo", "WaiterInfo",
        "Delivered", "Effect", "Empty", "Event", "InvalidArgument", "Job", "JobState",
        "JobFailed", "JobInfo", "JobStatistics", "Kernel", "Kind",
        "LeaseLost", "LimitExceeded", "NotFound", "Notified", "Popped", "Record",
        "TERMINAL_STATES", "Unsubscribed",
        "Waiting", "WrongKind",
    } == set(corral.kernel.__all__)
    for name in corral.kernel.__all__:
        assert getattr(corral.kernel, name) is not None
        obj = getattr(corral.kernel, name)
        if isinstance(obj, type) and name != "Popped":  # Popped is a tuple alias
            assert obj.__module__.startswith("corral.kernel")


def test_kernel_imports_nothing_impure() -> None:
    """Every import in corral.kernel is the standard library's pure modules, attrs or
    sortedcontainers: no I/O, threads, trio, clocks or randomness."""
    found = set()
    for path in (ROOT / "kernel").glob("_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(str(node.module).split(".")[0])
    assert found <= KERNEL_IMPORTS, found - KERNEL_IMPORTS


def test_kernel_type_checks_strictly(tmp_path: pathlib.Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """mypy --strict passes on the kernel, the transports and the adapters."""
    import mypy.api as api  # in the test extra: the check runs, never skips
    monkeypatch.setenv("MYPYPATH", str(tmp_path))
    # mypy cannot follow setuptools' editable-install hook: show it the corral namespace
    # as the installed layout has it.
    (tmp_path / "corral").mkdir()
    for name in ("kernel", "transports", "adapters"):
        (tmp_path / "corral" / name).symlink_to(ROOT / name)
    out, err, status = api.run([
        "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
        "--config-file", str(ROOT / "pyproject.toml"), "-p", "corral.kernel",
        "-p", "corral.adapters", "-p", "corral.transports",
    ])
    assert (0, "") == (status, out), out + err


def test_py_typed_is_shipped() -> None:
    """Each package carries its py.typed marker."""
    for name in ("kernel", "transports", "adapters"):
        assert (ROOT / name / "py.typed").exists()
    assert sys.version_info >= (3, 11)
