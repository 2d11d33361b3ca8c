"""The package as installed: names, public surface, kernel purity, types."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

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
        "TERMINAL_STATES", "Unsubscribed", "MAX_DEPTH", "check_value",
        "Waiting", "WrongKind",
    } == set(corral.kernel.__all__)
    for name in corral.kernel.__all__:
        assert getattr(corral.kernel, name) is not None
        obj = getattr(corral.kernel, name)
        if isinstance(obj, type) and name != "Popped":  # Popped is a tuple alias
            # the errors carry their public name, corral.Empty and so on
            assert obj.__module__.startswith("corral.kernel") or (
                issubclass(obj, corral.kernel.CorralError) and "corral" == obj.__module__)


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


def test_kernel_type_checks_strictly(tmp_path: pathlib.Path) -> None:
    """mypy --strict passes on the package: corral and its kernel, transports and
    adapters, found as installed."""
    import mypy.api as api  # in the test extra: the check runs, never skips

    out, err, status = api.run([
        "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
        "--config-file", str(ROOT / "pyproject.toml"), "-p", "corral",
    ])
    assert (0, "") == (status, out), out + err


# A user's script: the top-level names, a claimed job annotated with its public type,
# the trio facade, a client, a worker, an error caught by its public name.
USER_SCRIPT = """\
import trio

import corral
from corral.adapters.trio import open_corral


def work(job: corral.Job) -> None:
    job.finish(job.item * 2)


def main() -> None:
    print(corral.__version__)
    with corral.Corral() as c:
        jobs = c.jobs("work")
        jobs.put(21)
        job = jobs.claim(timeout=1)
        work(job)
        try:
            c.list("empty").pop_front()
        except corral.Empty as error:
            print(type(error).__name__)
    with corral.connect("corral://127.0.0.1:2605") as remote:
        remote.map("m").set("k", 1)
    worker = corral.Worker("work", lambda item: item, corral=c)
    assert isinstance(worker, corral.Worker)


async def trio_main() -> None:
    async with open_corral() as c:
        jobs = await c.jobs("work")
        await jobs.put(1)
        job = await jobs.claim()
        await job.finish(None)
    async with corral.open_client("corral://127.0.0.1:2605") as remote:
        await (await remote.list("l")).push_back(1)


main()
trio.run(trio_main)
"""


def _mypy_on_a_users_script(python: str, tmp_path: pathlib.Path) -> None:
    """``python -m mypy --strict`` on USER_SCRIPT and on copies of the examples, run as
    a user would: from a directory away from the checkout, with no MYPYPATH and no
    config."""
    script = tmp_path / "script.py"
    script.write_text(USER_SCRIPT)
    scripts = [script]
    for example in (ROOT / "examples").glob("*.py"):
        scripts.append(tmp_path / example.name)
        scripts[-1].write_text(example.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    done = subprocess.run([python, "-m", "mypy", "--strict", "--no-error-summary",
                           "--cache-dir", str(tmp_path / "cache"), *map(str, scripts)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (0, "") == (done.returncode, done.stdout), done.stdout + done.stderr


def test_a_users_script_type_checks_against_the_editable_install(
        tmp_path: pathlib.Path) -> None:
    """The README installs corral editable (``pip install -e .``): mypy finds it through
    the plain .pth line a src layout gets, where an import hook would hide it."""
    _mypy_on_a_users_script(sys.executable, tmp_path)


def test_a_users_script_type_checks_against_a_wheel_install(tmp_path: pathlib.Path) -> None:
    """``pip install .``: a wheel built from the checkout, installed into a fresh
    virtual environment; mypy, trio and the other dependencies come from this one's
    site-packages by a path line (whose own .pth files, the editable corral's among
    them, are not run)."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True)
    site_packages = pathlib.Path(site.stdout.strip())
    (site_packages / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel, = (tmp_path / "dist").glob("corral-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    found = subprocess.run([python, "-c", "import corral; print(corral.__file__)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True)
    assert found.stdout.startswith(str(site_packages))  # the wheel's, not the checkout's
    _mypy_on_a_users_script(python, tmp_path)


def test_top_level_names() -> None:
    """``import corral`` gives the version, the main names and the errors, and a
    traceback names an error by its public name."""
    import corral
    from corral.adapters import client, threads, trio, workers

    assert corral.__version__ and corral.__version__[0].isdigit()
    assert (corral.Corral, corral.Job, corral.open_corral, corral.connect,
            corral.open_client, corral.Worker) == (
        threads.Corral, threads.Job, trio.open_corral, client.connect, client.open_client,
        workers.Worker)
    for name in corral.__all__:
        assert getattr(corral, name) is not None
    assert "corral.Empty" == f"{corral.Empty.__module__}.{corral.Empty.__qualname__}"
    assert corral.Empty is corral.kernel.Empty
    import pickle
    assert isinstance(pickle.loads(pickle.dumps(corral.NotFound("x"))), corral.NotFound)


def test_py_typed_is_shipped() -> None:
    """Each package carries its py.typed marker."""
    for name in ("src/corral", "kernel", "transports", "adapters"):
        assert (ROOT / name / "py.typed").exists()
    assert sys.version_info >= (3, 11)
