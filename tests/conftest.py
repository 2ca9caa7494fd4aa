"""Fixtures shared by every test layer: a test CA and its certificates; and the one way a test
says that this machine lacks what it needs (a skip here, a failure in CI)."""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest
import trustme


def in_ci() -> bool:
    """Any truthy CI variable (1, true, True, yes…), as CI services set it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def lacking(reason: str) -> NoReturn:
    """The machine lacks what the test needs: skipped with the reason, but in CI, where
    `.ci/run` must provide everything, a failure."""
    if in_ci():
        pytest.fail(f"{reason} — in CI every test must run: .ci/run must provide it")
    pytest.skip(reason)


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        lacking(f"needs root to {why}")


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def require_tool(name: str) -> str:
    """The path of a tool a test needs (see `lacking`)."""
    path = shutil.which(name)
    if path is None:
        lacking(f"needs {name}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that bring a lab up and take it down themselves run before the session's lab
    (`lab_up`) exists; the order is otherwise kept."""
    items.sort(key=lambda item: "lab_up" in getattr(item, "fixturenames", ()))
