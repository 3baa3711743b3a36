"""The rule for a missing component: a failure under CI, a skip elsewhere."""

from __future__ import annotations

import pytest

from .requirements import require


def test_a_present_component_lets_the_test_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "never said")


def test_a_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install x"):
        require(False, "x is missing (apt-get install x)")


@pytest.mark.parametrize("ci", ["", "false", None])
def test_a_missing_component_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="apt-get install x"):
        require(False, "x is missing (apt-get install x)")
