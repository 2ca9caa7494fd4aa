"""Remote measurement around the verdict: the settings and flags that list a country's
destinations, the targets a run measures, and the keys that keep a remote result beside the local
one (the exporter's map, its series, `report`)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import replace

import pytest

from probe.config import ConfigError, Settings, choose_remote, load_yaml, measured
from probe.engine.runtime import Pacer
from probe.model import Diagnosis, Measurement, Result, Target
from probe.serve.metrics import ResultsCollector, render
from probe.serve.report import summarise
from probe.vocabulary import Verdict

FILE = """\
settings:
  country: DE
  remote:
    - country: cn
      silent: [198.51.100.7]
      resolvers: ["198.51.100.53", "198.51.100.54:5353"]
      servers: [198.51.100.80]
  remote_rate: 5
targets:
  - url: https://www.clubhouse.com/
"""


def test_the_targets_file_lists_each_countrys_destinations() -> None:
    config = load_yaml(FILE, "t.yaml")
    s = config.settings
    (cn,) = s.remote
    assert cn.country == "CN"
    assert cn.silent == ("198.51.100.7",)
    assert cn.resolvers == ("198.51.100.53", "198.51.100.54:5353")
    assert cn.servers == ("198.51.100.80",)
    assert s.remote_rate == 5
    keys = [t.key for t in measured(config.targets, s)]
    assert keys == ["https://www.clubhouse.com/", "https://www.clubhouse.com/ (remote CN)"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "country: CN\n      silent: [not-an-ip]",
            "t.yaml:4: settings.remote[0].silent[0]: 'not-an-ip' is not an IP address",
        ),
        (
            "country: CN\n      resolvers: [1.2.3.4:99999]",
            "t.yaml:4: settings.remote[0].resolvers[0]",
        ),
        ("country: CN", "t.yaml:3: settings.remote[0]: CN: no destination (silent, resolvers"),
        ("country: CHN\n      servers: [1.2.3.4]", "expected a two-letter country code"),
        ("country: CN\n      server: [1.2.3.4]", "settings.remote[0].server: unknown key"),
        ("silent: [1.2.3.4]", "settings.remote[0]: missing 'country'"),
    ],
)
def test_a_wrong_destination_names_file_line_and_key(entry: str, message: str) -> None:
    text = f"settings:\n  remote:\n    - {entry}\ntargets: [{{url: a.example}}]\n"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_yaml(text, "t.yaml")


def test_a_country_listed_twice_is_refused() -> None:
    one = "    - {country: CN, servers: [1.2.3.4]}\n"
    with pytest.raises(ConfigError, match="CN is listed twice"):
        load_yaml(f"settings:\n  remote:\n{one}{one}targets: [{{url: a.example}}]\n", "t.yaml")


def test_remote_only_without_a_country_is_refused() -> None:
    config = load_yaml("settings:\n  remote_only: true\ntargets: [{url: a.example}]\n", "t.yaml")
    with pytest.raises(ConfigError, match="remote_only: no country to measure"):
        measured(config.targets, config.settings)


def test_remote_flags_choose_the_countries_and_add_destinations() -> None:
    s = load_yaml(FILE, "t.yaml").settings
    chosen = choose_remote(s, ["cn", "ir"], servers=["192.0.2.80"], silent=["198.51.100.7"])
    assert chosen.remote_only
    cn, ir = chosen.remote
    assert cn.silent == ("198.51.100.7",)  # the file's and the flag's, once
    assert cn.servers == ("198.51.100.80", "192.0.2.80")
    assert (ir.country, ir.servers, ir.resolvers) == ("IR", ("192.0.2.80",), ())
    targets = (Target.parse("https://a.example/"),)
    assert [t.remote for t in measured(targets, chosen)] == ["CN", "IR"]  # not from here


@pytest.mark.parametrize(
    ("countries", "servers", "message"),
    [
        (["RU"], None, "--remote RU: RU: no destination"),
        (["Russia"], None, "--remote Russia: expected a two-letter country code"),
        ([], ["192.0.2.80"], "--remote-server: give the country it is in with --remote CC"),
        (["RU"], ["example.org"], "--remote RU: 'example.org' is not an IP address"),
    ],
)
def test_wrong_remote_flags_are_one_line_errors(
    countries: list[str], servers: list[str] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        choose_remote(Settings(), countries, servers=servers)


def result(target: Target, verdict: Verdict, country: str = "DE") -> Result:
    d = Diagnosis(verdict, None, "why", "summary")
    return Result(Measurement(target, 0.0), d, None, time.time(), "fra-1", country)


def test_a_remote_result_sits_beside_the_local_one_in_metrics_and_report() -> None:
    local = Target("https://www.clubhouse.com/", "clubhouse")
    remote = replace(local, remote="CN")
    collector = ResultsCollector("fra-1", "DE")
    collector.record(result(local, Verdict.ACCESSIBLE))
    collector.record(result(remote, Verdict.BLOCKED, "CN"))
    assert set(collector.latest) == {local.url, f"{local.url} (remote CN)"}
    text = render(collector).decode()
    assert (
        'censorprobe_target_verdict{country="CN",perspective="remote",service_name='
        '"clubhouse",target="https://www.clubhouse.com/",vantage="fra-1",'
        'verdict="blocked"} 1.0'
    ) in text
    assert (
        'censorprobe_target_verdict{country="DE",service_name="clubhouse",'
        'target="https://www.clubhouse.com/",vantage="fra-1",verdict="accessible"} 1.0'
    ) in text
    collector.keep_only([local.key])
    assert list(collector.latest) == [local.url]
    records = [
        result(local, Verdict.ACCESSIBLE).to_json(),
        result(remote, Verdict.BLOCKED, "CN").to_json(),
        result(local, Verdict.ACCESSIBLE, "CN").to_json(),
    ]
    rows = {(r.country, r.perspective): r.last_verdict for r in summarise(records)}
    assert rows == {
        ("DE", "local"): "accessible",
        ("CN", "local"): "accessible",
        ("CN", "remote"): "blocked",
    }


async def test_the_pacer_spaces_exchanges_to_one_destination() -> None:
    pacer = Pacer(rate=20.0)
    times: dict[str, list[float]] = {"a": [], "b": []}

    async def turn(destination: str) -> None:
        await pacer.turn(destination)
        times[destination].append(time.monotonic())

    await asyncio.gather(*(turn("a") for _ in range(4)), turn("b"))
    a = sorted(times["a"])
    # each turn begins a whole gap after the one before began, however late a wake-up was
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(a))
    assert times["b"][0] < a[-1]  # another destination does not wait for this one's turns


async def test_the_pacer_forgets_addresses_whose_gap_is_over() -> None:
    """Answers name ever new addresses over a long run: the pacer's memory stays bounded."""
    pacer = Pacer(rate=1e6)
    for i in range(3 * Pacer.MAX_KEPT):
        await pacer.turn(f"2001:db8::{i:x}")
        assert len(pacer._next) <= Pacer.MAX_KEPT
