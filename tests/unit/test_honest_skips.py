"""Where the machine lacks what a test needs, the test is skipped with the reason — but with any
truthy CI variable it fails instead, so a CI run can never pass by skipping."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

import tests.conftest as common
from tests.lab import conftest as lab

PATHS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "a tool (promtool, kubectl, chromium, docker…)": lambda mp: (
        mp.setattr(shutil, "which", lambda name: None),
        common.require_tool("promtool"),
    ),
    "root": lambda mp: (mp.setattr(os, "geteuid", lambda: 1000), common.require_root("build")),
    "network namespaces": lambda mp: (
        mp.setattr(lab, "_namespace_problem", lambda: "cannot create a network namespace"),
        lab.netns_ok.__wrapped__(),  # type: ignore[attr-defined]
    ),
    "a Docker engine": lambda mp: common.lacking("needs a running Docker engine"),
}


@pytest.mark.parametrize("ci", ["1", "true", "True", "yes"])
@pytest.mark.parametrize("path", list(PATHS))
def test_every_environment_skip_is_a_failure_in_ci(
    monkeypatch: pytest.MonkeyPatch, path: str, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception):
        PATHS[path](monkeypatch)


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
@pytest.mark.parametrize("path", list(PATHS))
def test_outside_ci_it_is_a_skip_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, path: str, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception) as skipped:
        PATHS[path](monkeypatch)
    assert str(skipped.value).startswith("needs") or "namespace" in str(skipped.value)
