"""Fixtures shared by every test layer: a test CA and its certificates."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import trustme

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def require_tool(name: str) -> str:
    """The path of a tool a test needs: skipped where missing, but a failure in CI (CI=true),
    where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI: .ci/run must install it")
        pytest.skip(f"needs {name}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
