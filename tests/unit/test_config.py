"""targets.yaml and test-list CSVs: good files, and broken ones named by file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe import model
from probe.cli import build_parser
from probe.cli.common import overrides
from probe.config import (
    SPECS,
    ConfigError,
    Settings,
    canaries_of,
    load,
    load_csv,
    load_yaml,
    override,
    parse_shard,
    shard,
)
from probe.model import Target
from tests.formats import global_list

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_targets_file_starts_with_clubhouse_and_uses_the_system_resolver() -> None:
    config = load(REPO / "targets.yaml")
    clubhouse = [t.url for t in config.targets if t.service == "clubhouse"]
    assert config.targets[0].service == "clubhouse"
    assert sorted(clubhouse) == sorted(
        [
            "https://www.clubhouse.com/",
            "https://www.joinclubhouse.com/",
            "https://www.clubhouseapi.com/",
            "https://clubhouse.pubnub.com/",
        ]
    )
    assert config.settings.resolvers == ("system",)
    services = {t.service for t in config.targets}
    assert {"telegram", "signal", "twitter", "wikipedia", "meduza", "torproject"} <= services
    assert all(t.category for t in config.targets)


def test_settings_services_and_flat_targets() -> None:
    config = load_yaml(
        """
settings:
  vantage: vp-test
  country: ru
  resolvers: [system, "192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53", "https://dns.example/q"]
  public_ranges: [198.18.0.0/15]
  timeout: 3
services:
  - name: clubhouse
    category: GRP
    urls: [https://www.clubhouse.com/, www.joinclubhouse.com]
targets:
  - url: http://telegram.example/path?q=1
    service: telegram
  - url: https://bare.example
    clienthello: always
""",
        "t.yaml",
    )
    s = config.settings
    assert (s.vantage, s.country, s.timeout) == ("vp-test", "RU", 3.0)
    assert s.resolvers[1:3] == ("192.0.2.53", "192.0.2.53:5353")
    assert [(t.service, t.url, t.category) for t in config.targets] == [
        ("clubhouse", "https://www.clubhouse.com/", "GRP"),
        ("clubhouse", "https://www.joinclubhouse.com/", "GRP"),
        ("telegram", "http://telegram.example/path?q=1", ""),
        ("bare.example", "https://bare.example/", ""),
    ]
    assert [t.clienthello for t in config.targets] == ["", "", "", "always"]
    assert s.clienthello == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "services:\n  - name: x\n    urls: [https://a.example/]\n    catgory: GRP\n",
            "t.yaml:4: services[0].catgory: unknown key",
        ),
        (
            "settings:\n  timeout: -1\ntargets: [{url: https://a.example/}]\n",
            "t.yaml:2: settings.timeout: expected a positive number, got -1",
        ),
        (
            "settings:\n  resolvers: [system, 8.8.8]\ntargets: [{url: https://a.example/}]\n",
            "t.yaml:2: settings.resolvers[1]: '8.8.8' is not a resolver",
        ),
        (
            "settings:\n  colour: red\ntargets: [{url: https://a.example/}]\n",
            "t.yaml:2: settings.colour: unknown setting",
        ),
        (
            "targets:\n  - url: https://a.example/\n  - service: x\n",
            "t.yaml:3: targets[1]: missing 'url'",
        ),
        (
            "targets:\n  - url: ftp://a.example/\n",
            "t.yaml:2: targets[0].url: 'ftp://a.example/' is not an http(s) URL",
        ),
        (
            "services: [{name: x, urls: https://a.example/}]\n",
            "t.yaml:1: services[0].urls: expected a list",
        ),
        ("targets:\n  - url: https://a.example/\n   bad indent: [\n", "t.yaml:3: not valid YAML"),
        ("", "t.yaml:1: empty file"),
        ("settings: {country: DE}\n", "t.yaml: no targets"),
        ("target:\n  - url: https://a.example/\n", "t.yaml:1: target: unknown key"),
        (
            "settings:\n  country: DE\n  country: FR\ntargets: [{url: https://a.example/}]\n",
            "t.yaml:3: settings.country: duplicate key",
        ),
        (
            "settings:\n  public_ranges: [10.0.0.0/33]\ntargets: [{url: https://a.example/}]\n",
            "t.yaml:2: settings.public_ranges[0]: '10.0.0.0/33' is not a CIDR range",
        ),
        ("targets:\n  - url: https://a.example:99999/\n", "t.yaml:2: targets[0].url:"),
        (
            "targets:\n  - url: https://a.example/\n    clienthello: sometimes\n",
            "t.yaml:3: targets[0].clienthello: expected one of auto, always, never",
        ),
    ],
)
def test_broken_yaml_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(text, "t.yaml")
    assert str(exc.value).startswith(message)


def test_citizen_lab_csv_is_a_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "global.csv"
    path.write_text(global_list(1500))
    config = load(path)
    urls = {t.url: t for t in config.targets}
    assert len(config.targets) == 1504
    assert urls["https://www.clubhouse.com/"].category == "GRP"
    assert urls["https://www.clubhouse.com/"].service == "clubhouse.com"


def test_broken_csv_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^l.csv:3: url: 'ftp://x' is not an http\(s\) URL"):
        load_csv("url,category_code\nhttps://ok.example/,NEWS\nftp://x,NEWS\n", "l.csv")
    with pytest.raises(ConfigError, match=r"^l.csv:1: the header has no 'url' column"):
        load_csv("link,category\nhttps://ok.example/,NEWS\n", "l.csv")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read"):
        load(tmp_path / "nope.yaml")


def test_command_line_overrides_are_checked_like_the_file() -> None:
    s = override(Settings(), {"country": "de", "resolvers": ["system", "192.0.2.1"]})
    assert (s.country, s.resolvers) == ("DE", ("system", "192.0.2.1"))
    with pytest.raises(ConfigError, match=r"^--resolver: 'nonsense' is not a resolver"):
        override(Settings(), {"resolvers": ["nonsense"]})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_parsed_or_refused_with_a_config_error(text: str) -> None:
    """Random files never crash the parser: a config, or a ConfigError naming the file."""
    try:
        load_yaml(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
    try:
        load_csv(text, "fuzz.csv")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.csv")


def test_shards_split_a_list_without_overlap_and_stay_put(tmp_path: Path) -> None:
    """`--shard i/n`: every target in exactly one shard, the same one on every replica."""
    path = tmp_path / "global.csv"
    path.write_text(global_list(1500))
    targets = load(path).targets
    shards = [shard(targets, i, 3) for i in range(3)]
    assert sorted(t.url for s in shards for t in s) == sorted(t.url for t in targets)
    assert all(len(s) > len(targets) / 4 for s in shards)  # roughly even
    assert shard(targets, 1, 3) == shard(targets, 1, 3)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "a/2", "1", "-1/2"):
        with pytest.raises(ValueError, match="expected i/n"):
            parse_shard(bad)


def test_not_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    """`--targets /dev/zero` would read forever: only regular files (or - for stdin)."""
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        load("/dev/zero")
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")


def test_an_alias_bomb_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A few KB of YAML whose aliases would list millions of targets."""
    urls = ", ".join(f"https://x{i}.example/" for i in range(100))
    services = "".join(f"  - {{name: s{i}, urls: *u}}\n" for i in range(200))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"services:\n  - name: first\n    urls: &u [{urls}]\n{services}")
    with pytest.raises(ConfigError, match=r"bomb.yaml:3: services\[\d+\]\.urls.*: aliases expand"):
        load(bomb)


def test_an_alias_used_a_few_times_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "services:\n  - name: a\n    urls: &u [https://a.example/, https://b.example/]\n"
        "  - name: b\n    urls: *u\n"
    )
    config = load(path)
    assert [t.url for t in config.targets] == ["https://a.example/", "https://b.example/"]
    assert "listed more than once, measured once" in config.notes[0]  # b's are a's


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0", "-3", "true", "ten"])
def test_numbers_must_be_finite_and_positive(value: str) -> None:
    with pytest.raises(
        ConfigError, match=r"t.yaml:2: settings.timeout: expected a positive number"
    ):
        load_yaml(f"settings:\n  timeout: {value}\ntargets: [{{url: a.example}}]\n", "t.yaml")


@pytest.mark.parametrize("flag", ["timeout", "retry_pause", "interval", "stall_after"])
def test_number_flags_refuse_nan_and_inf(flag: str) -> None:
    for value in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=f"--{flag.replace('_', '-')}: expected a"):
            override(Settings(), {flag: value})


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://" + "a" * 10_000 + ".example/", "longer than 2048"),
        ("https://x.example:0/", "port 0"),
        ("https://bad_host!.example/", "not a valid host name"),
        ("https://-x.example/", "not a valid host name"),
        ("https://x..example/", "not a valid host name"),
    ],
)
def test_hosts_and_ports_are_checked(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_yaml(f"targets:\n  - url: {url}\n", "t.yaml")


def test_a_url_listed_five_times_is_measured_once_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n" + "  - url: https://a.example/\n" * 5)
    config = load(path)
    assert [t.url for t in config.targets] == ["https://a.example/"]
    assert config.notes == (
        f"{path}: listed more than once, measured once: https://a.example/ (5x)",
    )


@settings(max_examples=500, deadline=None)
@given(
    url=st.from_regex(
        r"\Ahttps?://[a-z0-9._-]{0,20}(:[0-9]{0,6})?/[a-z0-9/?#=&%._-]{0,20}\Z", fullmatch=True
    )
)
def test_the_fast_reading_of_a_plain_url_is_the_general_ones(url: str) -> None:
    """A million targets are read by a fast path for the common URL shape: it accepts, refuses
    and names exactly what the general reading (urlsplit) does."""

    def read() -> tuple[str, str, str] | str:
        try:
            t = Target.parse(url)
        except ValueError as exc:
            return str(exc)
        return t.url, t.service, t.host

    fast = read()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(model, "_PLAIN_URL", re.compile(r"(?!)"))  # matches nothing: the general way
        assert read() == fast


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"timeout": -1}, "timeout: expected a positive number, got -1"),
        ({"concurrency": 2.5}, "concurrency: expected a whole number"),
        ({"country": "Russia"}, "country: expected a two-letter country code"),
        ({"resolvers": ("system", "nonsense")}, "resolvers: 'nonsense' is not a resolver"),
        ({"quic": "sometimes"}, "quic: expected one of auto, always, never"),
        ({"clienthello": "yes"}, "clienthello: expected one of auto, always, never"),
        ({"remote_verify_answers": "no"}, "remote_verify_answers: expected true or false"),
    ],
)
def test_settings_made_in_code_refuse_what_the_file_and_the_flag_refuse(
    values: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        Settings(**values)  # type: ignore[arg-type]


def test_every_flag_comes_from_the_settings_declaration() -> None:
    """Each setting declares its flag once: `check` and `serve` offer the measuring ones, `serve`
    its interval, `control` the network ones; a flag's value is checked as the file's is."""
    parser = build_parser()
    offered = {
        "check": vars(parser.parse_args(["check"])),
        "serve": vars(parser.parse_args(["serve", "--targets", "t.yaml"])),
        "control": vars(parser.parse_args(["control"])),
    }
    for name, spec in SPECS.items():
        if name == "remote":
            continue  # `--remote CC` and its destinations' flags pick among settings.remote
        where = {
            "network": {"check", "serve", "control"},
            "measure": {"check", "serve"},
            "serve": {"serve"},
            "": set(),
        }[spec.group]
        assert {cmd for cmd, names in offered.items() if name in names} == where, name
    args = parser.parse_args(
        ["check", "--timeout", "3", "--resolver", "192.0.2.1", "--quic", "never"]
    )
    assert overrides(args) == {"timeout": 3.0, "resolvers": ["192.0.2.1"], "quic": "never"}
    with pytest.raises(ConfigError, match=r"^--timeout: expected a positive number"):
        override(Settings(), overrides(parser.parse_args(["check", "--timeout", "-2"])))


def test_an_idna_name_reads_the_same_whatever_its_first_letters_case() -> None:
    """OONI's idnaWithoutCensorship cases: `Яндекс.рф` and `яндекс.рф` are one name."""
    lower, upper = Target.parse("http://яндекс.рф/"), Target.parse("http://Яндекс.рф/")
    assert lower.url == upper.url == "http://xn--d1acpjx3f.xn--p1ai/"
    assert lower.host == upper.host == "xn--d1acpjx3f.xn--p1ai"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("https://www.site1.example/news/1.html", "www.site1.example", 443),
        ("http://www.site1.example:8080/", "www.site1.example", 8080),
        ("HTTP://WWW.Site1.Example/a", "www.site1.example", 80),
        ("https://user@site1.example:8443/a?b=c", "site1.example", 8443),
        ("http://192.0.2.1/", "192.0.2.1", 80),
        ("http://[2001:db8::1]:8080/", "2001:db8::1", 8080),
        ("site1.example.", "site1.example.", 443),
    ],
)
def test_a_targets_host_and_port_whatever_the_shape_of_its_url(
    text: str, host: str, port: int
) -> None:
    """The host is derived from the URL (not kept: a million targets); read off the common
    shape at once, or parsed, it is the same."""
    target = Target.parse(text)
    assert (target.host, target.port) == (host, port)


def test_canaries_from_the_file_or_the_country_or_none() -> None:
    listed = load_yaml(
        "settings:\n  canaries:\n    inside: [https://gov.example/]\n"
        "    abroad: [example.org]\ntargets: [{url: a.example}]\n",
        "t.yaml",
    ).settings
    assert canaries_of(listed) == [
        ("https://gov.example/", "inside"),
        ("https://example.org/", "abroad"),
    ]
    none = load_yaml("settings:\n  canaries: none\ntargets: [{url: a.example}]\n", "t.yaml")
    assert canaries_of(none.settings) == []
    ru = Settings(country="RU", control="https://control.example.org/")
    chosen = canaries_of(ru)
    assert ("https://www.gosuslugi.ru/", "inside") in chosen
    assert ("https://example.com/", "abroad") in chosen and (
        "http://example.com/",
        "abroad",
    ) in chosen
    assert chosen[-1] == ("https://control.example.org/healthz", "abroad")
    assert {side for _, side in canaries_of(Settings(country="ZZ"))} == {"abroad"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  canaries: some\n", "t.yaml:2: settings.canaries: expected a mapping"),
        ("  canaries:\n    outside: []\n", "t.yaml:3: settings.canaries.outside: unknown key"),
        ("  canaries:\n    inside: [ftp://x]\n", "t.yaml:3: settings.canaries.inside[0]:"),
    ],
)
def test_broken_canaries_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(f"settings:\n{text}targets: [{{url: a.example}}]\n", "t.yaml")
    assert str(exc.value).startswith(message), str(exc.value)
