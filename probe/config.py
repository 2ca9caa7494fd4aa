"""targets.yaml and Citizen Lab test-list CSVs -> frozen dataclasses.

Every error names the file, the line and the key (`targets.yaml:12: services[0].urls[2]: ...`):
unknown keys are errors too, because a typo that passes silently measures the wrong thing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import math
import os
import socket
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from probe.model import QUIC_MODES, Target, parse_resolver_address
from probe.policy import is_ip_literal

# libyaml's parser where PyYAML was built with it (its wheels are): ~20x faster on long lists
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STR_TAG = "tag:yaml.org,2002:str"


MAX_FILE_BYTES = 64 << 20
MAX_TARGETS = 1_000_000


class ConfigError(Exception):
    """A targets file or a setting is wrong; the message says where and what."""


class CannotListen(Exception):
    """The address a server was told to listen on cannot be bound; the message says why."""


# the servers' (`serve`, the control helper) connection limits, see probe.httpd
MAX_CONNECTIONS = 256
CLIENT_TIMEOUT = 10.0  # seconds a connection may stay open without a request under way


DESTINATIONS = ("silent", "resolvers", "servers")


def check_destination(kind: str, text: str) -> str:
    """An IP address (a resolver's with an optional port); raises ValueError otherwise."""
    if kind == "resolvers":
        parse_resolver_address(text)
    elif not is_ip_literal(text):
        raise ValueError(f"{text!r} is not an IP address")
    return text


@dataclass(frozen=True, slots=True)
class RemoteCountry:
    """A country measured from abroad, and the destinations in it that the user chose (never
    end users: infrastructure, as Censored Planet's): addresses that run no resolver, open
    resolvers, web servers."""

    country: str
    silent: tuple[str, ...] = ()  # IP addresses
    resolvers: tuple[str, ...] = ()  # IP[:port]
    servers: tuple[str, ...] = ()  # IP addresses (443 for the SNI, 80 for the Host header)

    def __post_init__(self) -> None:
        _country(self.country)
        for kind in DESTINATIONS:
            for text in getattr(self, kind):
                check_destination(kind, text)
        if not (self.silent or self.resolvers or self.servers):
            raise ValueError(f"{self.country}: no destination (silent, resolvers or servers)")


@dataclass(frozen=True, slots=True)
class Settings:
    """How to measure. Every field can be set in `settings:` and overridden on the command line."""

    vantage: str = field(default_factory=socket.gethostname)
    country: str = "ZZ"
    control: str | None = None
    resolvers: tuple[str, ...] = ("system",)
    interval: float = 300.0
    public_ranges: tuple[str, ...] = ()
    timeout: float = 10.0  # seconds, for each step
    concurrency: int = 16
    ca_file: str | None = None
    dns_window: float = 0.5  # keep listening this long after the first UDP answer
    max_addresses: int = 4  # addresses tested per target, both families where present
    body_cap: int = 1 << 20
    throughput_window: float = 5.0
    max_redirects: int = 10
    # the harmless SNI that tells SNI filtering from IP blocking
    sni_check_name: str = "example.com"
    control_token: str | None = None
    fingerprints: tuple[str, ...] = ()  # OONI-format CSV files or URLs, added to the built-in set
    retries: int = 1  # re-measurements of a target found blocked before the verdict stands
    # the pause before a re-measurement; the GFW's residual blocking lasts ~90 s: raise it there
    retry_pause: float = 10.0
    # once a response began, this long without a byte before its end is a stall (default: half
    # the timeout)
    stall_after: float | None = None
    # HTTP/3: "auto" where the site advertises it (Alt-Svc h3, to the probe or the control),
    # "always", or "never"; a target's own `quic:` wins
    quic: str = "auto"
    # remote measurement: the countries measured from here toward the destinations listed
    remote: tuple[RemoteCountry, ...] = ()
    remote_only: bool = False  # measure the remote countries only, not from here
    remote_rate: float = 10.0  # exchanges per second toward one destination, at most

    def __post_init__(self) -> None:
        for spec in self.resolvers:
            check_resolver(spec)
        for cidr in self.public_ranges:
            check_cidr(cidr)

    def remote_country(self, country: str) -> RemoteCountry:
        return next(r for r in self.remote if r.country == country)

    @property
    def stall(self) -> float:
        return self.stall_after if self.stall_after is not None else self.timeout / 2

    @property
    def deadline(self) -> float:
        """The most one measurement of a target may take: DEADLINE_FORMULA."""
        return 4 * self.timeout + self.throughput_window + self.stall

    @property
    def target_bound(self) -> float:
        """The most one target may take, re-measurements and the control's answer included:
        TARGET_BOUND_FORMULA."""
        grace = CONTROL_GRACE if self.control else 0.0
        quic = self.quic_deadline if self.quic != "never" else 0.0
        return self.deadline + grace + self.retries * (self.retry_pause + self.deadline) + quic

    @property
    def quic_deadline(self) -> float:
        """The most the QUIC path of a target may take: QUIC_DEADLINE_FORMULA (a handshake and
        the checks where it fails, the first byte, the body)."""
        return 3 * self.timeout + self.stall


CONTROL_GRACE = 5.0  # how much longer than the probe's deadline the control's answer may take
# what a user reads in --help and the README; `Settings.deadline` and `.target_bound` compute them
DEADLINE_FORMULA = "4 x timeout + throughput_window + stall_after"
QUIC_DEADLINE_FORMULA = "3 x timeout + stall_after"
TARGET_BOUND_FORMULA = (
    f"deadline + {CONTROL_GRACE:g} s (with a control, for its answer) "
    f"+ retries x (retry_pause + deadline) + {QUIC_DEADLINE_FORMULA} (unless quic: never)"
)


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings
    targets: tuple[Target, ...]
    notes: tuple[str, ...] = ()  # what a user should know about the file (duplicates)

    def deduplicated(self, name: str) -> Config:
        """Each URL once (the first entry's service wins), with a note for the repeated ones."""
        counts = Counter(t.url for t in self.targets)
        repeated = [url for url, n in counts.items() if n > 1]
        if not repeated:
            return self
        seen: set[str] = set()
        unique = []
        for t in self.targets:
            if t.url not in seen:
                seen.add(t.url)
                unique.append(t)
        shown = ", ".join(f"{url} ({counts[url]}x)" for url in repeated[:3])
        more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
        note = f"{name}: listed more than once, measured once: {shown}{more}"
        return replace(self, targets=tuple(unique), notes=(*self.notes, note))


def choose_remote(
    s: Settings,
    countries: list[str],
    silent: list[str] | None = None,
    resolvers: list[str] | None = None,
    servers: list[str] | None = None,
) -> Settings:
    """`--remote CC ...`: measure only toward these countries, with the settings' destinations
    for them plus those given as flags; errors name the flag."""
    given = {"silent": silent or [], "resolvers": resolvers or [], "servers": servers or []}
    if not countries:
        if any(given.values()):
            flag = next(k for k, v in given.items() if v).removesuffix("s")
            raise ConfigError(f"--remote-{flag}: give the country it is in with --remote CC")
        return s
    chosen = []
    for text in countries:
        try:
            cc = _country(text)
            known = {r.country: r for r in s.remote}.get(cc)
            entry = RemoteCountry(
                cc,
                **{
                    k: tuple(dict.fromkeys((*(getattr(known, k) if known else ()), *v)))
                    for k, v in given.items()
                },
            )
        except ValueError as exc:
            raise ConfigError(f"--remote {text}: {exc}") from None
        chosen.append(entry)
    return replace(s, remote=tuple(chosen), remote_only=True)


def measured(targets: tuple[Target, ...], s: Settings) -> tuple[Target, ...]:
    """What a run measures: each target from here (unless `remote_only`), then each toward every
    remote country."""
    if s.remote_only and not s.remote:
        raise ConfigError("remote_only: no country to measure is listed in settings.remote")
    local = () if s.remote_only else targets
    return (*local, *(replace(t, remote=r.country) for r in s.remote for t in targets))


def check_resolver(spec: str) -> str:
    """`system`, an address with an optional port, or a DoH URL; raises ValueError otherwise."""
    if spec == "system":
        return spec
    if spec.startswith("https://"):
        if not urlsplit(spec).hostname:
            raise ValueError(f"{spec!r} is not a DNS-over-HTTPS URL")
        return spec
    parse_resolver_address(spec)
    return spec


def check_cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR range") from None
    return text


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n`: this replica measures shard i (0-based) of n; raises ValueError otherwise."""
    left, _, right = text.partition("/")
    if not (left.isdigit() and right.isdigit()) or not 0 <= int(left) < int(right):
        raise ValueError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/3")
    return int(left), int(right)


def shard(targets: tuple[Target, ...], index: int, count: int) -> tuple[Target, ...]:
    """The targets of shard `index` of `count`, by a stable hash of the URL: every replica of a
    vantage agrees on the split without talking to the others, and a target keeps its shard."""

    def bucket(t: Target) -> int:
        return int.from_bytes(hashlib.sha256(t.url.encode()).digest()[:8], "big") % count

    return tuple(t for t in targets if bucket(t) == index)


def load(path: str | Path) -> Config:
    """Read a targets.yaml or a Citizen Lab CSV (by extension, or by a `url,` header); `-` is
    standard input. Only regular files, of at most MAX_FILE_BYTES."""
    text, name = _read(str(path))
    if name.lower().endswith(".csv") or text.lstrip("\ufeff").startswith("url,"):
        config = Config(Settings(), load_csv(text, name))
    else:
        config = load_yaml(text, name)
    if len(config.targets) > MAX_TARGETS:
        raise ConfigError(f"{name}: {len(config.targets)} targets, more than {MAX_TARGETS}")
    return config.deduplicated(name)


def _read(path: str) -> tuple[str, str]:
    """The text of a targets file, and the name to give in errors."""
    try:
        if path == "-":
            name, data = "<stdin>", sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            name = path
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise ConfigError(f"{path}: not a regular file (give a file, or - for stdin)")
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_csv(text: str, name: str) -> tuple[Target, ...]:
    """A Citizen Lab test list: `url,category_code,...`; the service is named after the host."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError(
            f"{name}:1: empty file, expected a 'url,category_code,...' header"
        ) from None
    except csv.Error as exc:
        raise ConfigError(f"{name}:1: {exc}") from None
    if "url" not in header:
        raise ConfigError(f"{name}:1: the header has no 'url' column (found: {','.join(header)})")
    col_url = header.index("url")
    col_cat = header.index("category_code") if "category_code" in header else None
    targets: list[Target] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) <= col_url:
                raise ConfigError(f"{name}:{line}: url: missing (the row has {len(row)} columns)")
            category = row[col_cat].strip() if col_cat is not None and len(row) > col_cat else ""
            try:
                targets.append(Target.parse(row[col_url], category=category))
            except ValueError as exc:
                raise ConfigError(f"{name}:{line}: url: {exc}") from None
    except csv.Error as exc:
        raise ConfigError(f"{name}:{reader.line_num}: {exc}") from None
    if not targets:
        raise ConfigError(f"{name}: no targets")
    return tuple(targets)


# --- YAML, walked node by node so that every value keeps its line --------------------------


class _Walker:
    def __init__(self, name: str, budget: int) -> None:
        self.name = name
        self._constructor = yaml.constructor.SafeConstructor()
        # nodes it may visit: a file cannot hold more nodes than characters, so more means
        # aliases expanding (a "billion laughs" file of 40 KB would list millions of targets)
        self.budget = budget

    def spend(self, node: yaml.Node, key: str, count: int) -> None:
        self.budget -= count
        if self.budget < 0:
            raise self.fail(
                node, key, "aliases expand to more entries than the file holds (an alias bomb?)"
            )

    def fail(self, node: yaml.Node, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name}:{node.start_mark.line + 1}: {key}: {message}")

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value, not a list or mapping")
        self.spend(node, key, 1)
        return self._constructor.construct_object(node)

    def string(self, node: yaml.Node, key: str) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
            self.spend(node, key, 1)  # a string already: no constructor needed (long lists)
            value: Any = node.value
        else:
            value = self.scalar(node, key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, key, f"expected a non-empty string, got {value!r}")
        return value.strip()

    def mapping(self, node: yaml.Node, key: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "expected a mapping (key: value)")
        self.spend(node, key, len(node.value))
        out = []
        seen: set[str] = set()
        for k, v in node.value:
            name = self.scalar(k, key)
            if not isinstance(name, str):
                raise self.fail(k, key, f"keys must be strings, got {name!r}")
            if name in seen:
                raise self.fail(k, f"{key}.{name}" if key else name, "duplicate key")
            seen.add(name)
            out.append((name, k, v))
        return out

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list")
        self.spend(node, key, len(node.value))
        return list(node.value)


def load_yaml(text: str, name: str) -> Config:
    """Parse targets.yaml; see DESIGN.md for the schema."""
    try:
        root = yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{name}:{line}: not valid YAML: {problem}") from None
    if root is None:
        raise ConfigError(f"{name}:1: empty file, expected 'services:' and/or 'targets:'")
    w = _Walker(name, len(text))
    settings = Settings()
    targets: list[Target] = []
    for key, knode, vnode in w.mapping(root, ""):
        if key == "settings":
            settings = _settings(w, vnode)
        elif key == "services":
            targets.extend(_services(w, vnode))
        elif key == "targets":
            targets.extend(_targets(w, vnode))
        else:
            raise w.fail(knode, key, "unknown key (expected settings, services, targets)")
    if not targets:
        raise ConfigError(f"{name}: no targets: add 'services:' or 'targets:'")
    return Config(settings, tuple(targets))


def _positive(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"expected a positive number, got {value!r}")
        if kind is int and not float(value).is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return kind(value)

    return convert


def _non_negative(kind: type) -> Callable[[Any], Any]:
    positive = _positive(kind)

    def convert(value: Any) -> Any:
        return kind(0) if value == 0 and not isinstance(value, bool) else positive(value)

    return convert


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _country(value: Any) -> str:
    text = _text(value)
    if len(text) != 2 or not text.isalpha():
        raise ValueError(f"expected a two-letter country code, got {value!r}")
    return text.upper()


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _quic_mode(value: Any) -> str:
    text = _text(value)
    if text not in QUIC_MODES:
        raise ValueError(f"expected one of {', '.join(QUIC_MODES)}, got {text!r}")
    return text


def _url(value: Any) -> str:
    text = _text(value)
    if urlsplit(text).scheme not in ("http", "https") or not urlsplit(text).hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


_SETTING_TYPES: dict[str, Callable[[Any], Any]] = {
    "vantage": _text,
    "country": _country,
    "control": _url,
    "interval": _positive(float),
    "timeout": _positive(float),
    "concurrency": _positive(int),
    "ca_file": _text,
    "dns_window": _positive(float),
    "max_addresses": _positive(int),
    "body_cap": _positive(int),
    "throughput_window": _positive(float),
    "max_redirects": _positive(int),
    "sni_check_name": _text,
    "control_token": _text,
    "retries": _non_negative(int),
    "retry_pause": _non_negative(float),
    "stall_after": _positive(float),
    "quic": _quic_mode,
    "remote_rate": _positive(float),
    "remote_only": _bool,
}
_SETTING_LISTS: dict[str, Callable[[str], str]] = {
    "resolvers": check_resolver,
    "public_ranges": check_cidr,
    "fingerprints": _text,
}


def override(settings: Settings, values: dict[str, Any]) -> Settings:
    """Settings with command-line values, checked as the file's are; errors name the flag."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if key in _SETTING_LISTS:
                checked[key] = tuple(_SETTING_LISTS[key](v) for v in value)
            else:
                checked[key] = _SETTING_TYPES[key](value)
        except ValueError as exc:
            flag = {"resolvers": "resolver", "public_ranges": "public-range"}.get(key, key)
            raise ConfigError(f"--{flag.replace('_', '-')}: {exc}") from None
    return replace(settings, **checked)


def _settings(w: _Walker, node: yaml.Node) -> Settings:
    values: dict[str, Any] = {}
    for key, knode, vnode in w.mapping(node, "settings"):
        where = f"settings.{key}"
        if key in _SETTING_LISTS:
            items = []
            for i, item in enumerate(w.sequence(vnode, where)):
                text = str(w.scalar(item, f"{where}[{i}]"))
                try:
                    items.append(_SETTING_LISTS[key](text))
                except ValueError as exc:
                    raise w.fail(item, f"{where}[{i}]", str(exc)) from None
            values[key] = tuple(items)
        elif key == "remote":
            values[key] = _remote(w, vnode)
        elif key in _SETTING_TYPES:
            try:
                values[key] = _SETTING_TYPES[key](w.scalar(vnode, where))
            except ValueError as exc:
                raise w.fail(vnode, where, str(exc)) from None
        else:
            known = ", ".join(f.name for f in fields(Settings))
            raise w.fail(knode, where, f"unknown setting (known: {known})")
    return replace(Settings(), **values)


def _remote(w: _Walker, node: yaml.Node) -> tuple[RemoteCountry, ...]:
    out: dict[str, RemoteCountry] = {}
    for where, e in _entries(w, node, "settings.remote", ("country",), DESTINATIONS):
        lists = {}
        for key in DESTINATIONS:
            items = w.sequence(e[key], f"{where}.{key}") if key in e else []
            checked = []
            for i, item in enumerate(items):
                try:
                    checked.append(check_destination(key, str(w.scalar(item, where))))
                except ValueError as exc:
                    raise w.fail(item, f"{where}.{key}[{i}]", str(exc)) from None
            lists[key] = tuple(checked)
        try:
            country = _country(w.scalar(e["country"], f"{where}.country"))
            entry = RemoteCountry(country, **lists)
        except ValueError as exc:
            raise w.fail(e["country"], where, str(exc)) from None
        if country in out:
            raise w.fail(e["country"], f"{where}.country", f"{country} is listed twice")
        out[country] = entry
    return tuple(out.values())


def _urls(w: _Walker, node: yaml.Node, where: str, service: str, category: str) -> list[Target]:
    out = []
    for j, unode in enumerate(w.sequence(node, where)):
        try:
            out.append(Target.parse(w.string(unode, f"{where}[{j}]"), service, category))
        except ValueError as exc:
            raise w.fail(unode, f"{where}[{j}]", str(exc)) from None
    return out


def _entries(
    w: _Walker, node: yaml.Node, section: str, required: Iterable[str], optional: Iterable[str]
) -> Iterable[tuple[str, dict[str, yaml.Node]]]:
    allowed = set(required) | set(optional)
    for i, item in enumerate(w.sequence(node, section)):
        where = f"{section}[{i}]"
        entry: dict[str, yaml.Node] = {}
        for key, knode, vnode in w.mapping(item, where):
            if key not in allowed:
                raise w.fail(
                    knode, f"{where}.{key}", f"unknown key (expected {', '.join(sorted(allowed))})"
                )
            entry[key] = vnode
        for key in required:
            if key not in entry:
                raise w.fail(item, where, f"missing '{key}'")
        yield where, entry


def _services(w: _Walker, node: yaml.Node) -> list[Target]:
    out: list[Target] = []
    for where, e in _entries(w, node, "services", ("name", "urls"), ("category", "quic")):
        name = w.string(e["name"], f"{where}.name")
        category = w.string(e["category"], f"{where}.category") if "category" in e else ""
        quic = _quic_of(w, e, where)
        urls = _urls(w, e["urls"], f"{where}.urls", name, category)
        out.extend(replace(t, quic=quic) for t in urls)
    return out


def _quic_of(w: _Walker, e: dict[str, yaml.Node], where: str) -> str:
    """A target's own QUIC mode ("" where it has none: the settings' applies)."""
    if "quic" not in e:
        return ""
    try:
        return _quic_mode(w.scalar(e["quic"], f"{where}.quic"))
    except ValueError as exc:
        raise w.fail(e["quic"], f"{where}.quic", str(exc)) from None


def _targets(w: _Walker, node: yaml.Node) -> list[Target]:
    out: list[Target] = []
    for where, e in _entries(w, node, "targets", ("url",), ("service", "category", "quic")):
        service = w.string(e["service"], f"{where}.service") if "service" in e else ""
        category = w.string(e["category"], f"{where}.category") if "category" in e else ""
        try:
            target = Target.parse(w.string(e["url"], f"{where}.url"), service, category)
        except ValueError as exc:
            raise w.fail(e["url"], f"{where}.url", str(exc)) from None
        out.append(replace(target, quic=_quic_of(w, e, where)))
    return out
