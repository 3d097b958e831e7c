"""The test suite's own rules, read from its source with ast:

- no module under tests/ imports a test module (tests/test_*.py) or conftest.py: helpers
  live in tests/support/, fixtures in conftest.py (pytest provides them by name);
- every tests/test_*.py holds tests (a module of helpers belongs in tests/support/);
- no fixed sleep before an assertion: a `sleep(...)` statement outside a loop, followed in
  the same block by a statement that asserts, bets on timing. Wait on an event, or poll
  with a deadline (tests/support/waiting.py), instead.

Each check is itself tested on small snippets, so that it can be seen to fail.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import ROOT

TESTS = ROOT / "tests"
LOOPS = (ast.For, ast.AsyncFor, ast.While)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.Module)


def sources() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _forbidden(name: str) -> bool:
    """A test module (tests.test_x, or a name inside one) or conftest."""
    parts = name.split(".")
    if parts[0] == "conftest":
        return True
    return len(parts) >= 2 and parts[0] == "tests" and parts[1].startswith(("test_", "conftest"))


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def bad_imports(tree: ast.Module, importer: str, is_package: bool = False) -> list[str]:
    """`line: module` for every import (anywhere in the file) of a test module or conftest."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, is_package)
            # `from tests import test_x` imports the module test_x.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if _forbidden(name)][:1]
    return found


def _is_sleep(statement: ast.stmt) -> bool:
    """`sleep(...)`, `time.sleep(...)`, `await asyncio.sleep(...)`, ... as a statement."""
    if not isinstance(statement, ast.Expr):
        return False
    call = statement.value.value if isinstance(statement.value, ast.Await) else statement.value
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    return (isinstance(func, ast.Name) and func.id == "sleep") or (
        isinstance(func, ast.Attribute) and func.attr == "sleep"
    )


def _asserts(statement: ast.stmt) -> bool:
    """The statement is, or holds (outside nested functions), an `assert`."""
    if isinstance(statement, SCOPES):
        return False  # a function defined here asserts when it is called, not now
    pending: list[ast.AST] = [statement]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Assert):
            return True
        if node is not statement and isinstance(node, SCOPES):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return False


def _blocks(node: ast.AST, in_loop: bool = False) -> Iterator[tuple[list[ast.stmt], bool]]:
    """Every statement list under `node`, with whether it runs inside a loop of its scope."""
    for name in ("body", "orelse", "finalbody", "handlers", "cases"):
        block = getattr(node, name, None)
        if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
            yield block, in_loop
    for child in ast.iter_child_nodes(node):
        if isinstance(child, SCOPES):
            yield from _blocks(child, False)  # a new function: its own loops count
        else:
            yield from _blocks(child, in_loop or isinstance(child, LOOPS))


def sleeps_before_asserts(tree: ast.Module) -> list[int]:
    """Lines of sleep statements outside a loop that the rest of their block asserts after."""
    lines = []
    for block, in_loop in _blocks(tree):
        if in_loop:
            continue
        for index, statement in enumerate(block):
            if _is_sleep(statement) and any(_asserts(later) for later in block[index + 1 :]):
                lines.append(statement.lineno)
    return sorted(set(lines))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


# --------------------------------------------------------------------------- the suite


def test_no_module_imports_a_test_module_or_conftest() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{hit}"
        for path in sources()
        for hit in bad_imports(parse(path), module_name(path), path.name == "__init__.py")
    ]
    assert problems == [], "import these from tests/support/ instead: " + ", ".join(problems)


def test_every_test_module_holds_tests() -> None:
    def has_tests(tree: ast.Module) -> bool:
        return any(
            (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test"))
            or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))
            for n in tree.body
        )

    helpers = [p.name for p in sorted(TESTS.glob("test_*.py")) if not has_tests(parse(p))]
    assert helpers == [], f"no tests in {helpers}: move them to tests/support/"


def test_no_fixed_sleep_before_an_assertion() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sources()
        for line in sleeps_before_asserts(parse(path))
    ]
    assert problems == [], f"sleep then assert (wait on an event or poll): {problems}"


def test_the_checks_read_every_part_of_the_suite() -> None:
    names = {module_name(p) for p in sources()}
    assert {"tests.conftest", "tests.support.waiting", "tests.test_test_hygiene"} <= names
    assert len([n for n in names if n.startswith("tests.test_")]) >= 40


# --------------------------------------------------------------------------- the checks


def tree_of(code: str) -> ast.Module:
    return ast.parse(textwrap.dedent(code))


@pytest.mark.parametrize(
    ("code", "importer", "expected"),
    [
        ("from tests.test_predict import jpeg", "tests.test_dicom", ["1: tests.test_predict"]),
        ("import tests.test_registry", "tests.test_x", ["1: tests.test_registry"]),
        ("from tests import test_predict", "tests.test_x", ["1: tests.test_predict"]),
        ("from .test_predict import doctor", "tests.test_x", ["1: tests.test_predict"]),
        ("from . import test_predict", "tests.test_x", ["1: tests.test_predict"]),
        ("from .. import test_predict", "tests.support.x", ["1: tests.test_predict"]),
        ("from tests.conftest import Mailbox", "tests.test_x", ["1: tests.conftest"]),
        ("import conftest", "tests.test_x", ["1: conftest"]),
        ("def f():\n    from tests.test_a import b", "tests.support.x", ["2: tests.test_a"]),
        ("from tests.support.images import jpeg", "tests.test_x", []),
        ("from tests import support", "tests.test_x", []),
        ("from . import images", "tests.support.predict", []),
        ("from app.services import test_mode", "tests.test_x", []),
    ],
)
def test_bad_imports_are_found(code: str, importer: str, expected: list[str]) -> None:
    assert bad_imports(tree_of(code), importer) == expected


def test_a_package_resolves_its_own_relative_imports() -> None:
    tree = tree_of("from .test_a import b\nfrom . import harness")
    assert bad_imports(tree, "tests", is_package=True) == ["1: tests.test_a"]
    assert bad_imports(tree, "tests.support", is_package=True) == []


SLEEPY = {
    "asyncio sleep then assert": (
        """
        async def test_x():
            await asyncio.sleep(0.3)
            assert done
        """,
        [3],
    ),
    "time.sleep, then work, then an assert": (
        """
        def test_x():
            start()
            time.sleep(0.5)
            stop()
            assert seen
        """,
        [4],
    ),
    "bare sleep before a with block that asserts": (
        """
        async def test_x():
            sleep(1)
            async with engine.connect() as conn:
                assert await conn.scalar(q) == 0
        """,
        [3],
    ),
    "in an if, after a loop": (
        """
        async def test_x():
            for _ in range(3):
                pass
            if flag:
                await asyncio.sleep(0.05)
                assert not task.done()
        """,
        [6],
    ),
    "in a function nested in a loop": (
        """
        def test_x():
            for case in cases:
                def check():
                    time.sleep(1)
                    assert case
        """,
        [5],
    ),
    "a poll loop with a deadline": (
        """
        async def test_x():
            while not done():
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
            assert result
        """,
        [],
    ),
    "a sleep with no assert after it": (
        """
        async def test_x():
            assert ready
            await asyncio.sleep(0)
            task.cancel()
        """,
        [],
    ),
    "an assert only in a nested function defined after": (
        """
        def helper():
            time.sleep(0.1)
            def later():
                assert x
            return later
        """,
        [],
    ),
    "an event wait": (
        """
        async def test_x():
            await asyncio.wait_for(event.wait(), 10)
            assert state
        """,
        [],
    ),
}


@pytest.mark.parametrize("case", list(SLEEPY))
def test_sleeps_before_asserts_are_found(case: str) -> None:
    code, lines = SLEEPY[case]
    assert sleeps_before_asserts(tree_of(code)) == lines
