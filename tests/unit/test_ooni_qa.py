"""docs/ooni-qa.md and the lab's scenario file say the same: every case of OONI's QA suite in
the table is mapped to the scenario that names it (`ooni:`), with the verdict that scenario
expects, or left out with a reason; and every scenario's case is in the table."""

from __future__ import annotations

from pathlib import Path

from probe.lab import scenarios as lab

TABLE = Path(__file__).resolve().parents[2] / "docs" / "ooni-qa.md"
CASES = 50  # AllTestCases at the commit the page names


def rows() -> dict[str, tuple[str, str, str]]:
    """case -> (our scenario, ours, why)"""
    out = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("OONI case", "---"):
            continue
        case, _, scenario, ours, why = cells
        assert case not in out, f"{case} is in the table twice"
        out[case] = (scenario, ours, why)
    return out


def test_every_case_is_mapped_to_its_scenario_or_left_out_with_a_reason() -> None:
    table = rows()
    assert len(table) == CASES
    scenarios = {s.name: s for s in lab.scenarios()}
    for case, (name, ours, why) in table.items():
        if name == "left out":
            assert why, case
            continue
        s = scenarios[name]
        assert case in s.ooni, (case, name)
        assert ours == str(s.expect), (case, ours, str(s.expect))


def test_every_scenarios_case_is_in_the_table() -> None:
    table = rows()
    for s in lab.scenarios():
        for case in s.ooni:
            assert table[case][0] == s.name, (case, s.name)
