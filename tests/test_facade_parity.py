"""The thread and trio facades are one surface, described once: in the spirit of trio's
``test_exports``, compare them name by name, and check that the trio handles are what
the generator makes of the thread ones."""

from __future__ import annotations

import inspect
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

from corral.adapters import _gen_trio, _handles, _trio_handles, threads
from corral.adapters import trio as corral_trio

REGENERATE = ".venv/bin/python -m corral.adapters._gen_trio"

# What only the thread facade has, and why.
THREADS_ONLY = {
    "Facade": {
        "interrupt",  # ends a thread's wait; a trio task is cancelled by its cancel scope
        "wait_connected",  # TrioClient has its own: async, bounded by trio's move_on_after
    },
}

# The trio calls that are sync, as their thread twins are. ``close`` ends at once;
# ``__len__`` and ``get_nowait`` are sync as trio's own ``_nowait`` calls are (embedded
# only: over a connection they raise TypeError).
SYNC_IN_TRIO = {
    "Facade": {"close"},
    "_Handle": {"__len__"},
    "QueueHandle": {"get_nowait"},
}

# Not methods: data (Job's fields), or a property (Facade.closed).
DATA = {"attempt", "id", "item", "closed"}


def _classes(module: Any) -> dict[str, type]:
    return {name: cls for name, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__}


HANDLES = sorted(_classes(_handles))
PAIRS = [(name, getattr(threads, name), getattr(corral_trio, name))
         for name in ("Facade", "Subscription")] + [
    (name, getattr(_handles, name), getattr(_trio_handles, name)) for name in HANDLES]


def _names(cls: type) -> set[str]:
    """Its public names, and ``__len__`` if it has one."""
    return {name for name in dir(cls) if not name.startswith("_") or name == "__len__"}


def _own_exceptions(table: dict[str, set[str]], cls: type) -> set[str]:
    """The exceptions ``table`` lists for ``cls`` or a class it inherits from."""
    return set().union(*(table.get(base.__name__, set()) for base in cls.__mro__))


def _signature(function: Any) -> tuple[Any, ...]:
    signature = inspect.signature(function)
    return tuple((p.name, p.kind, p.default, p.annotation)
                 for p in signature.parameters.values()) + (signature.return_annotation,)


def test_the_handle_modules_have_the_same_classes() -> None:
    """_trio_handles.py defines every class of _handles.py, and only those; both
    facade modules export the same names."""
    assert HANDLES == sorted(_classes(_trio_handles))
    assert _handles.__all__ == _trio_handles.__all__
    assert set(threads.__all__) | {"open_corral"} == set(corral_trio.__all__)
    for name in _handles.__all__:
        assert getattr(threads, name) is getattr(_handles, name)
        assert getattr(corral_trio, name) is getattr(_trio_handles, name)


@pytest.mark.parametrize(("name", "sync", "trio"), PAIRS, ids=[p[0] for p in PAIRS])
def test_same_names_signatures_and_docstrings(name: str, sync: type, trio: type) -> None:
    """The same public names, signatures (parameters, defaults, annotations) and
    docstrings, sync or async apart."""
    assert _names(sync) - THREADS_ONLY.get(name, set()) == _names(trio)
    for attr in sorted(_names(trio)):
        mine, theirs = inspect.getattr_static(sync, attr), inspect.getattr_static(trio, attr)
        if attr in DATA:
            assert type(mine) is type(theirs), attr
            assert getattr(mine, "__doc__", None) == getattr(theirs, "__doc__", None), attr
            continue
        assert _signature(getattr(sync, attr)) == _signature(getattr(trio, attr)), attr
        assert getattr(sync, attr).__doc__ == getattr(trio, attr).__doc__, attr
    if name not in ("Facade", "Subscription"):  # the facades' own classes say which
        assert sync.__doc__ == trio.__doc__


@pytest.mark.parametrize(("name", "sync", "trio"), PAIRS, ids=[p[0] for p in PAIRS])
def test_async_in_trio_and_sync_in_threads(name: str, sync: type, trio: type) -> None:
    """Every method is sync in threads; in trio, async but for the listed exceptions."""
    exceptions = _own_exceptions(SYNC_IN_TRIO, trio)
    for attr in sorted(_names(trio) - DATA):
        assert not inspect.iscoroutinefunction(getattr(sync, attr)), attr
        assert inspect.iscoroutinefunction(getattr(trio, attr)) == (
            attr not in exceptions), attr


def test_the_listed_exceptions_exist() -> None:
    """No stale entry: each listed name is on its class."""
    classes = dict((name, (sync, trio)) for name, sync, trio in PAIRS)
    for name, attrs in THREADS_ONLY.items():
        assert attrs <= _names(classes[name][0]) - _names(classes[name][1])
    for name, attrs in SYNC_IN_TRIO.items():
        assert attrs <= _names(classes[name][1])


def test_records_methods_only_where_the_kernel_has_them() -> None:
    """query, clear and delete are on lists and maps only: every other kind raises
    WrongKind for them, so their handles do not offer them."""
    from corral.kernel import Kernel, Kind, WrongKind

    kernel = Kernel()
    for kind, handle in [(Kind.FEED, "FeedHandle"), (Kind.SORTED_FEED, "SortedFeedHandle"),
                         (Kind.QUEUE, "QueueHandle"), (Kind.JOBS, "JobsHandle")]:
        kernel.create(kind.value, kind)
        for command, args in [("query", ()), ("clear", ()), ("delete", ("1",))]:
            with pytest.raises(WrongKind):
                getattr(kernel, command)(kind.value, *args)
            for module in (_handles, _trio_handles):
                assert not hasattr(getattr(module, handle), command), (handle, command)
    for handle in ("ListHandle", "MapHandle"):
        for command in ("query", "clear", "delete"):
            assert hasattr(getattr(_handles, handle), command)


def test_trio_handles_are_generated() -> None:
    """_trio_handles.py is what the generator makes of _handles.py."""
    committed = _gen_trio.TARGET.read_text(encoding="utf-8")
    assert _gen_trio.generate() == committed, (
        f"adapters/_trio_handles.py is stale: edit adapters/_handles.py, never the "
        f"generated file, and regenerate it with `{REGENERATE}`")
    assert 0 == _gen_trio.main(["--check"])


def test_the_generated_module_passes_ruff(tmp_path: pathlib.Path) -> None:
    """The generated text passes the project's ruff rules (where ruff is installed)."""
    ruff = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    root = pathlib.Path(_gen_trio.__file__).resolve().parent.parent
    done = subprocess.run([ruff, "check", "--no-cache", "--config",
                           str(root / "pyproject.toml"), "--stdin-filename",
                           "adapters/_trio_handles.py", "-"],
                          input=_gen_trio.generate(), capture_output=True, text=True,
                          cwd=root)
    assert 0 == done.returncode, done.stdout + done.stderr
