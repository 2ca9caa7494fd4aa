"""targets.yaml and Citizen Lab test-list CSVs -> frozen dataclasses.

Every error names the file, the line and the key (`targets.yaml:12: services[0].urls[2]: ...`):
unknown keys are errors too, because a typo that passes silently measures the wrong thing.
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import io
import ipaddress
import math
import os
import socket
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml

from probe.model import QUIC_MODES, Target, parse_resolver_address
from probe.policy import is_ip_literal

# libyaml's parser where PyYAML was built with it (its wheels are): ~20x faster on long lists
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STR_TAG = "tag:yaml.org,2002:str"


MAX_FILE_BYTES = 256 << 20  # a million targets of real lists, with room
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
class Canaries:
    """The destinations that tell a vantage's network regime (see `probe.verdict.regime`):
    `inside` the country (what an allowlist keeps open) and `abroad` (neutral: no censor targets
    them). `off` measures none (`canaries: none`)."""

    inside: tuple[str, ...] = ()
    abroad: tuple[str, ...] = ()
    off: bool = False

    def __post_init__(self) -> None:
        for url in (*self.inside, *self.abroad):
            Target.parse(url)  # ValueError for what is not a URL


# Built-in canaries. Inside, by country: what the allowlists of 2025-26 keep open (the state's
# services, a big bank, a big domestic platform). Abroad: neutral sites no censor targets, on two
# ports (a port-wide reset is then told from a name's block); the control helper is one too.
INSIDE_CANARIES = {
    "RU": ("https://www.gosuslugi.ru/", "https://www.sberbank.ru/", "https://ya.ru/"),
    "CN": ("https://www.gov.cn/", "https://www.baidu.com/", "https://www.qq.com/"),
    "IR": ("https://www.digikala.com/", "https://www.aparat.com/", "https://www.shaparak.ir/"),
}
ABROAD_CANARIES = ("https://example.com/", "http://example.com/")


@dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is checked and offered, declared beside its field in `Settings`: the file,
    the flag and code (`Settings(timeout=-1)`) all pass through `check`."""

    check: Callable[[Any], Any]  # a value (or one item of a list) -> the value kept; ValueError
    help: str = ""
    flag: str = ""  # the flag's name without "--"; "" where the setting is the file's only
    group: str = ""  # which subcommands offer the flag: "network" (check, serve, control),
    # "measure" (check, serve) or "serve"
    arg: Callable[[str], Any] = str  # the flag's text -> a value for `check`
    metavar: str = "S"
    many: bool = False  # a list: the flag is repeatable and `check` takes each item
    choices: tuple[str, ...] | None = None


def setting(default: Any, spec: Spec, factory: Callable[[], Any] | None = None) -> Any:
    """A field of `Settings` with its declaration (type from the annotation)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


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


def _mode(value: Any) -> str:
    """auto, always or never (`quic:`, `clienthello:`)."""
    text = _text(value)
    if text not in QUIC_MODES:
        raise ValueError(f"expected one of {', '.join(QUIC_MODES)}, got {text!r}")
    return text


def _url(value: Any) -> str:
    text = _text(value)
    if urlsplit(text).scheme not in ("http", "https") or not urlsplit(text).hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


def _remote_country(value: Any) -> RemoteCountry:
    if not isinstance(value, RemoteCountry):
        raise ValueError(f"expected a country and its destinations, got {value!r}")
    return value


def _canaries(value: Any) -> Canaries:
    if not isinstance(value, Canaries):
        raise ValueError(f"expected inside/abroad lists of URLs, or none, got {value!r}")
    return value


def _canaries_flag(text: str) -> Canaries:
    """`--canaries none` (argparse shows this error's own words)."""
    if text.strip().lower() != "none":
        raise argparse.ArgumentTypeError(
            f"{text!r}: only 'none' (lists of canaries go in settings.canaries)"
        )
    return Canaries(off=True)


POSITIVE, WHOLE = _positive(float), _positive(int)
# what a user reads in --help and the README; `Settings.deadline` computes it
DEADLINE_FORMULA = "4 x timeout + throughput_window + stall_after"


@dataclass(frozen=True, slots=True)
class Settings:
    """How to measure. Each field is declared once, with its check, flag and help (`Spec`): the
    targets file's `settings:`, the command line and code are checked the same way."""

    vantage: str = setting(
        None,
        Spec(_text, "name of this vantage point", "vantage", "measure", metavar="NAME"),
        factory=socket.gethostname,
    )
    country: str = setting(
        "ZZ",
        Spec(_country, "country code of this vantage point", "country", "measure", metavar="CC"),
    )
    control: str | None = setting(
        None,
        Spec(
            _url,
            "the control helper (censorprobe control) on an unfiltered network; without it only "
            "what this vantage alone proves is called blocked",
            "control",
            "measure",
            metavar="URL",
        ),
    )
    resolvers: tuple[str, ...] = setting(
        ("system",),
        Spec(
            lambda v: check_resolver(_text(v)),
            "'system', an IP[:port] (UDP, listens for injected answers) or an https:// DoH URL; "
            "repeatable; replaces settings.resolvers",
            "resolver",
            "network",
            metavar="ADDR|DoH-URL",
            many=True,
        ),
    )
    interval: float = setting(
        300.0,
        Spec(
            POSITIVE,
            "seconds between rounds (default 300, ±10%% jitter)",
            "interval",
            "serve",
            float,
        ),
    )
    public_ranges: tuple[str, ...] = setting(
        (),
        Spec(
            lambda v: check_cidr(_text(v)),
            "special-purpose range to treat as public (labs); repeatable",
            "public-range",
            "network",
            metavar="CIDR",
            many=True,
        ),
    )
    timeout: float = setting(
        10.0,
        Spec(
            POSITIVE,
            "one network wait: a connect, a handshake, the first byte of an answer (default 10); "
            f"a target's deadline is {DEADLINE_FORMULA}",
            "timeout",
            "network",
            float,
        ),
    )
    concurrency: int = setting(
        16,
        Spec(WHOLE, "targets measured at once (default 16)", "concurrency", "measure", int, "N"),
    )
    ca_file: str | None = setting(
        None,
        Spec(
            _text,
            "extra trust anchors (SSL_CERT_FILE is honoured too)",
            "ca-file",
            "network",
            metavar="PEM",
        ),
    )
    # keep listening this long after the first UDP answer
    dns_window: float = setting(0.5, Spec(POSITIVE))
    # addresses tested per target, both families where present
    max_addresses: int = setting(4, Spec(WHOLE))
    body_cap: int = setting(1 << 20, Spec(WHOLE))
    throughput_window: float = setting(5.0, Spec(POSITIVE))
    max_redirects: int = setting(10, Spec(WHOLE))
    # the harmless SNI that tells SNI filtering from IP blocking
    sni_check_name: str = setting("example.com", Spec(_text))
    control_token: str | None = setting(
        None,
        Spec(
            _text,
            "bearer token for the control (or CENSORPROBE_CONTROL_TOKEN)",
            "control-token",
            "measure",
            metavar="T",
        ),
    )
    # OONI-format CSV files or URLs, added to the built-in set
    fingerprints: tuple[str, ...] = setting((), Spec(_text, many=True))
    retries: int = setting(
        1,
        Spec(
            _non_negative(int),
            "re-measure a target that looks blocked N times before the verdict stands (default 1)",
            "retries",
            "measure",
            int,
            "N",
        ),
    )
    retry_pause: float = setting(
        10.0,
        Spec(
            _non_negative(float),
            "pause before a re-measurement (default 10; the GFW's residual blocking lasts ~90 s)",
            "retry-pause",
            "measure",
            float,
        ),
    )
    stall_after: float | None = setting(
        None,
        Spec(
            POSITIVE,
            "once a response began, this long without a byte before its end is a stall "
            "(default: half the timeout)",
            "stall-after",
            "measure",
            float,
        ),
    )
    quic: str = setting(
        "auto",
        Spec(
            _mode,
            "measure HTTP/3 too: auto (default) where the site advertises it (Alt-Svc h3, to "
            "this vantage or the control), always, or never; a target's own `quic:` wins",
            "quic",
            "measure",
            choices=QUIC_MODES,
        ),
    )
    clienthello: str = setting(
        "auto",
        Spec(
            _mode,
            "send ClientHello variants of our own (a post-quantum key share, ECH, split in two "
            "records or segments) to the target's address: auto (default) where its TLS "
            "handshake fails or it publishes ECH, always, or never; a target's own "
            "`clienthello:` wins",
            "clienthello",
            "measure",
            choices=QUIC_MODES,
        ),
    )
    # remote measurement: the countries measured from here toward the destinations listed
    remote: tuple[RemoteCountry, ...] = setting((), Spec(_remote_country, many=True))
    remote_only: bool = setting(False, Spec(_bool))  # the remote countries only, not from here
    remote_rate: float = setting(10.0, Spec(POSITIVE))  # contacts a second to one address, at most
    # handshakes with the target's name to the addresses open resolvers answered (to prove an
    # answer genuine): false to contact none of them (`inconsistent` is then never claimed)
    remote_verify_answers: bool = setting(True, Spec(_bool))
    # the canaries that tell the vantage's network regime before each run; None: the built-in
    # ones of `country` (and the control helper)
    canaries: Canaries | None = setting(
        None,
        Spec(
            _canaries,
            "'none': measure no canary before the run (the network regime is then not told); "
            "lists of them go in settings.canaries",
            "canaries",
            "measure",
            _canaries_flag,
            "none",
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            spec: Spec = f.metadata["spec"]
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            try:
                if spec.many:
                    if isinstance(value, str) or not isinstance(value, (list, tuple)):
                        raise ValueError(f"expected a list, got {value!r}")
                    checked: Any = tuple(spec.check(v) for v in value)
                else:
                    checked = spec.check(value)
            except ValueError as exc:
                raise ValueError(f"{f.name}: {exc}") from None
            if checked is not value:
                object.__setattr__(self, f.name, checked)

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
        return self.bound(
            quic=self.quic != "never", hello=self.clienthello != "never", retries=self.retries
        )

    def bound(self, *, quic: bool, hello: bool, retries: int) -> float:
        """TARGET_BOUND_FORMULA for a target whose HTTP/3 path and ClientHello variants are
        measured or not, with `retries` re-measurements: the one place it is computed
        (`engine.deadline` schedules by it)."""
        grace = CONTROL_GRACE if self.control else 0.0
        return (
            self.deadline
            + grace
            + retries * (self.retry_pause + self.deadline)
            + (self.quic_deadline if quic else 0.0)
            + (self.hello_deadline if hello else 0.0)
        )

    @property
    def quic_deadline(self) -> float:
        """The most the QUIC path of a target may take: QUIC_DEADLINE_FORMULA (a handshake and
        the checks where it fails, the first byte, the body)."""
        return 3 * self.timeout + self.stall

    @property
    def hello_deadline(self) -> float:
        """The most the ClientHello variants of a target may take: HELLO_DEADLINE_FORMULA (a
        connection and the server's first flight; the variants go at once)."""
        return 2 * self.timeout


SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Settings)}


CONTROL_GRACE = 5.0  # how much longer than the probe's deadline the control's answer may take
# what a user reads in --help and the README; `Settings.deadline` and `.target_bound` compute them
QUIC_DEADLINE_FORMULA = "3 x timeout + stall_after"
HELLO_DEADLINE_FORMULA = "2 x timeout"
TARGET_BOUND_FORMULA = (
    f"deadline + {CONTROL_GRACE:g} s (with a control, for its answer) "
    f"+ retries x (retry_pause + deadline) + {QUIC_DEADLINE_FORMULA} (unless quic: never) "
    f"+ {HELLO_DEADLINE_FORMULA} (unless clienthello: never)"
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


class Unfinished(Exception):
    """The run's budget ran out while the targets were read; `read` says how many were."""

    def __init__(self, name: str, read: int) -> None:
        super().__init__(f"{name}: the run's budget ran out while reading it ({read} targets read)")
        self.read = read


class _Targets:
    """Targets as they are read: each URL once (the first entry's service wins, repeats are
    counted for a note), at most MAX_TARGETS, and the budget's clock looked at now and then."""

    def __init__(self, name: str, until: float | None) -> None:
        self.name = name
        self.until = until
        self.items: list[Target] = []
        self._seen: set[str] = set()
        self._repeated: Counter[str] = Counter()

    def add(self, target: Target) -> None:
        if target.url in self._seen:
            self._repeated[target.url] += 1
            return
        self._seen.add(target.url)
        self.items.append(target)
        n = len(self.items)
        if n > MAX_TARGETS:
            raise ConfigError(f"{self.name}: more than {MAX_TARGETS} targets")
        if self.until is not None and not n % 4096 and time.monotonic() > self.until:
            raise Unfinished(self.name, n)

    def notes(self) -> tuple[str, ...]:
        if not self._repeated:
            return ()
        shown = ", ".join(f"{u} ({n + 1}x)" for u, n in list(self._repeated.items())[:3])
        more = len(self._repeated) - 3
        tail = f" and {more} more" if more > 0 else ""
        return (f"{self.name}: listed more than once, measured once: {shown}{tail}",)

    def config(self, settings: Settings) -> Config:
        if not self.items:
            raise ConfigError(f"{self.name}: no targets")
        self._seen.clear()  # read: its table (32 MB for a million) goes before the tuple comes
        return Config(settings, tuple(self.items), self.notes())


def load(path: str | Path, *, until: float | None = None) -> Config:
    """Read a targets.yaml or a Citizen Lab CSV (by extension, or by a `url,` header); `-` is
    standard input. Only regular files, of at most MAX_FILE_BYTES, read as a stream: a million
    targets cost their own memory, not the file's. `until` (a `time.monotonic()` value) stops
    the reading with `Unfinished` when a run's budget runs out."""
    name, stream, size = _open(str(path))
    collected = _Targets(name, until)
    collecting = gc.isenabled()
    gc.disable()  # a million acyclic objects: the cyclic collector's passes only cost time
    try:
        with stream:
            head = stream.read(4)
            stream.seek(0)
            if name.lower().endswith(".csv") or head.lstrip("\ufeff").startswith("url,"):
                _csv(stream, name, collected)
                return collected.config(Settings())
            settings = _yaml(stream, name, size, collected)
            return collected.config(settings)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        if collecting:
            gc.enable()


def _open(path: str) -> tuple[str, TextIO, int]:
    """The name to give in errors, the text as a stream, and its size in bytes."""
    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            size = len(data)
            if size <= MAX_FILE_BYTES:
                stream: TextIO = io.StringIO(data.decode("utf-8"))
        else:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{path}: not a regular file (give a file, or - for stdin)")
            size = info.st_size
            if size <= MAX_FILE_BYTES:
                stream = open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_FILE_BYTES >> 20} MiB")
    return name, stream, size


def load_csv(text: str, name: str) -> tuple[Target, ...]:
    """A Citizen Lab test list given as text (see `load`)."""
    collected = _Targets(name, None)
    _csv(io.StringIO(text), name, collected)
    return collected.config(Settings()).targets


def _csv(stream: TextIO, name: str, out: _Targets) -> None:
    """A Citizen Lab test list: `url,category_code,...`; the service is named after the host."""
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError(
            f"{name}:1: empty file, expected a 'url,category_code,...' header"
        ) from None
    except csv.Error as exc:
        raise ConfigError(f"{name}:1: {exc}") from None
    if header:
        header[0] = header[0].lstrip("\ufeff")
    if "url" not in header:
        raise ConfigError(f"{name}:1: the header has no 'url' column (found: {','.join(header)})")
    col_url = header.index("url")
    col_cat = header.index("category_code") if "category_code" in header else None
    categories: dict[str, str] = {}  # a few codes, each kept once
    try:
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) <= col_url:
                raise ConfigError(
                    f"{name}:{reader.line_num}: url: missing (the row has {len(row)} columns)"
                )
            category = row[col_cat].strip() if col_cat is not None and len(row) > col_cat else ""
            category = categories.setdefault(category, category)
            try:
                out.add(Target.parse(row[col_url], category=category))
            except ValueError as exc:
                raise ConfigError(f"{name}:{reader.line_num}: url: {exc}") from None
    except csv.Error as exc:
        raise ConfigError(f"{name}:{reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}:{reader.line_num + 1}: not UTF-8 text ({exc.reason})") from None


# --- YAML, read as a stream of events; each entry of a long list is composed on its own, so that
# every value keeps its line and a million entries never live as one tree of nodes


class _Events:
    """The parser's events, aliases expanded by replaying what their anchor recorded, at most
    `budget` of them: a file cannot hold more events than bytes, so more means aliases expanding
    (a "billion laughs" file of 40 KB would list millions of targets)."""

    def __init__(self, stream: TextIO, name: str, budget: int) -> None:
        self._source = yaml.parse(stream, Loader=LOADER)
        self.name = name
        self.budget = budget + 4  # and the stream's and the document's start and end
        self._anchors: dict[str, list[yaml.Event]] = {}
        self._recording: list[tuple[str, list[yaml.Event]]] = []
        self._depths: list[int] = []
        self._replay: list[Iterator[yaml.Event]] = []
        self._peeked: yaml.Event | None = None
        self._resolver = yaml.resolver.Resolver()

    def fail(self, event: yaml.Event | yaml.Node, key: str, message: str) -> ConfigError:
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        return ConfigError(f"{self.name}:{line}: {key}: {message}")

    def peek(self) -> yaml.Event:
        if self._peeked is None:
            self._peeked = self._next()
        return self._peeked

    def next(self) -> yaml.Event:
        event = self.peek()
        self._peeked = None
        return event

    def _next(self) -> yaml.Event:
        while True:
            event = next(self._replay[-1], None) if self._replay else next(self._source)
            if event is None:
                self._replay.pop()
                continue
            if isinstance(event, yaml.AliasEvent):
                recorded = self._anchors.get(event.anchor or "")
                if recorded is None:
                    raise self.fail(event, "alias", f"unknown alias *{event.anchor}")
                self._replay.append(iter(recorded))
                continue
            self.budget -= 1
            if self.budget < 0:
                raise self.fail(
                    event, "aliases", "expand to more entries than the file holds (an alias bomb?)"
                )
            self._record(event)
            return event

    def _record(self, event: yaml.Event) -> None:
        """Keep the events of an anchored value, for its aliases."""
        if getattr(event, "anchor", None) is not None:
            self._recording.append((event.anchor, []))  # type: ignore[attr-defined]
            self._depths.append(0)
        if not self._recording:
            return
        step = int(isinstance(event, yaml.CollectionStartEvent)) - int(
            isinstance(event, yaml.CollectionEndEvent)
        )
        for i, (_, events) in enumerate(self._recording):
            events.append(event)
            self._depths[i] += step
        while self._recording and self._depths[-1] == 0:
            done, events = self._recording.pop()
            self._depths.pop()
            self._anchors[done] = events

    def compose(self) -> yaml.Node:
        """The next value as a node (for the walker), from its events."""
        event = self.next()
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self._resolve(yaml.ScalarNode, event.value, event.implicit)
            return yaml.ScalarNode(tag, event.value, *_marks(event))
        if isinstance(event, yaml.SequenceStartEvent):
            items = []
            while not isinstance(self.peek(), yaml.SequenceEndEvent):
                items.append(self.compose())
            self.next()
            tag = event.tag or self._resolve(yaml.SequenceNode, None, event.implicit)
            return yaml.SequenceNode(tag, items, *_marks(event))
        if isinstance(event, yaml.MappingStartEvent):
            pairs = []
            while not isinstance(self.peek(), yaml.MappingEndEvent):
                pairs.append((self.compose(), self.compose()))
            self.next()
            tag = event.tag or self._resolve(yaml.MappingNode, None, event.implicit)
            return yaml.MappingNode(tag, pairs, *_marks(event))
        raise self.fail(event, "value", f"unexpected {type(event).__name__}")

    def _resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str:
        """The tag a plain value stands for (a number, a boolean, a string…), as the composer
        resolves it."""
        return str(self._resolver.resolve(kind, value, implicit))  # type: ignore[no-untyped-call]

    def items(self, key: str) -> Iterator[yaml.Node]:
        """The entries of the list that comes next, each composed when its turn comes."""
        if not isinstance(self.peek(), yaml.SequenceStartEvent):
            raise self.fail(self.compose(), key, "expected a list")
        self.next()
        while not isinstance(self.peek(), yaml.SequenceEndEvent):
            yield self.compose()
        self.next()


def _marks(event: Any) -> tuple[Any, Any]:
    """Where an event starts and ends (libyaml's marks, typed apart from PyYAML's)."""
    return event.start_mark, event.end_mark


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
        if node.tag == STR_TAG:
            return node.value  # a string already (most keys and values): nothing to construct
        value = self._constructor.construct_object(node)
        self._constructor.constructed_objects.clear()  # it remembers every node it built
        return value

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
    """targets.yaml given as text (see `load`)."""
    collected = _Targets(name, None)
    settings = _yaml(io.StringIO(text), name, len(text), collected)
    return collected.config(settings)


def _yaml(stream: TextIO, name: str, size: int, out: _Targets) -> Settings:
    """targets.yaml: `settings:`, `services:`, `targets:` (see the README); the targets go to
    `out` as each entry is read."""
    try:
        return _document(_Events(stream, name, size), _Walker(name, size), out)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{name}:{line}: not valid YAML: {problem}") from None


def _document(events: _Events, w: _Walker, out: _Targets) -> Settings:
    empty = ConfigError(f"{w.name}:1: empty file, expected 'services:' and/or 'targets:'")
    events.next()  # the stream's start
    if isinstance(events.peek(), yaml.StreamEndEvent):
        raise empty
    events.next()  # the document's start
    if not isinstance(events.peek(), yaml.MappingStartEvent):
        root = events.compose()
        if isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null":
            raise empty
        raise w.fail(root, "", "expected a mapping (key: value)")
    events.next()
    settings = Settings()
    seen: set[str] = set()
    while not isinstance(events.peek(), yaml.MappingEndEvent):
        knode = events.compose()
        key = w.scalar(knode, "")
        if not isinstance(key, str):
            raise w.fail(knode, "", f"keys must be strings, got {key!r}")
        if key in seen:
            raise w.fail(knode, key, "duplicate key")
        seen.add(key)
        if key == "settings":
            settings = _settings(w, events.compose())
        elif key == "services":
            for i, item in enumerate(events.items("services")):
                _service(w, item, f"services[{i}]", out)
        elif key == "targets":
            for i, item in enumerate(events.items("targets")):
                _target(w, item, f"targets[{i}]", out)
        else:
            raise w.fail(knode, key, "unknown key (expected settings, services, targets)")
    events.next()
    events.next()  # the document's end
    if not isinstance(events.peek(), yaml.StreamEndEvent):
        raise events.fail(events.peek(), "", "expected a single document, found another")
    if not out.items:
        raise ConfigError(f"{w.name}: no targets: add 'services:' or 'targets:'")
    return settings


def override(settings: Settings, values: dict[str, Any]) -> Settings:
    """Settings with command-line values, checked as the file's are; errors name the flag."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        spec = SPECS[key]
        try:
            checked[key] = tuple(map(spec.check, value)) if spec.many else spec.check(value)
        except ValueError as exc:
            raise ConfigError(f"--{spec.flag or key}: {exc}") from None
    return replace(settings, **checked)


def _settings(w: _Walker, node: yaml.Node) -> Settings:
    values: dict[str, Any] = {}
    for key, knode, vnode in w.mapping(node, "settings"):
        where = f"settings.{key}"
        spec = SPECS.get(key)
        if spec is None:
            raise w.fail(knode, where, f"unknown setting (known: {', '.join(SPECS)})")
        if key == "remote":
            values[key] = _remote(w, vnode)
        elif key == "canaries":
            values[key] = _canaries_yaml(w, vnode)
        elif spec.many:
            items = []
            for i, item in enumerate(w.sequence(vnode, where)):
                text = str(w.scalar(item, f"{where}[{i}]"))
                try:
                    items.append(spec.check(text))
                except ValueError as exc:
                    raise w.fail(item, f"{where}[{i}]", str(exc)) from None
            values[key] = tuple(items)
        else:
            try:
                values[key] = spec.check(w.scalar(vnode, where))
            except ValueError as exc:
                raise w.fail(vnode, where, str(exc)) from None
    return replace(Settings(), **values)


def _canaries_yaml(w: _Walker, node: yaml.Node) -> Canaries:
    """`canaries: none`, or `canaries:` with `inside` and `abroad` lists of URLs."""
    if isinstance(node, yaml.ScalarNode) and w.scalar(node, "settings.canaries") == "none":
        return Canaries(off=True)
    lists: dict[str, tuple[str, ...]] = {}
    for key, knode, vnode in w.mapping(node, "settings.canaries"):
        where = f"settings.canaries.{key}"
        if key not in ("inside", "abroad"):
            raise w.fail(knode, where, "unknown key (expected inside, abroad; or none)")
        urls = []
        for i, item in enumerate(w.sequence(vnode, where)):
            try:
                urls.append(Target.parse(w.string(item, f"{where}[{i}]")).url)
            except ValueError as exc:
                raise w.fail(item, f"{where}[{i}]", str(exc)) from None
        lists[key] = tuple(urls)
    return Canaries(lists.get("inside", ()), lists.get("abroad", ()))


def canaries_of(s: Settings) -> list[tuple[str, str]]:
    """The canaries to measure, each (URL, "inside" or "abroad"): the settings', else the
    built-in ones of the country, and the control helper; at most `MAX_CANARIES`."""
    chosen = s.canaries or Canaries(INSIDE_CANARIES.get(s.country, ()), ABROAD_CANARIES)
    if chosen.off:
        return []
    abroad = list(chosen.abroad)
    if s.control:  # the helper is a canary abroad too; where it does not answer, it is not asked
        abroad.append(s.control.rstrip("/") + "/healthz")
    out = [(url, "inside") for url in chosen.inside] + [(url, "abroad") for url in abroad]
    return out[:MAX_CANARIES]


MAX_CANARIES = 8


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


def _entries(
    w: _Walker, node: yaml.Node, section: str, required: Iterable[str], optional: Iterable[str]
) -> Iterable[tuple[str, dict[str, yaml.Node]]]:
    for i, item in enumerate(w.sequence(node, section)):
        where = f"{section}[{i}]"
        yield where, _entry(w, item, where, required, optional)


def _entry(
    w: _Walker, item: yaml.Node, where: str, required: Iterable[str], optional: Iterable[str]
) -> dict[str, yaml.Node]:
    allowed = {*required, *optional}
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
    return entry


def _service(w: _Walker, item: yaml.Node, where: str, out: _Targets) -> None:
    e = _entry(w, item, where, ("name", "urls"), ("category", *MODES))
    name = w.string(e["name"], f"{where}.name")
    category = w.string(e["category"], f"{where}.category") if "category" in e else ""
    modes = _modes_of(w, e, where)
    for j, unode in enumerate(w.sequence(e["urls"], f"{where}.urls")):
        key = f"{where}.urls[{j}]"
        try:
            target = Target.parse(w.string(unode, key), name, category)
        except ValueError as exc:
            raise w.fail(unode, key, str(exc)) from None
        out.add(replace(target, **modes) if modes else target)


MODES = ("quic", "clienthello")  # a target's own modes, where its entry sets them


def _modes_of(w: _Walker, e: dict[str, yaml.Node], where: str) -> dict[str, str]:
    """A target's own modes (those its entry does not set are the settings')."""
    out = {}
    for key in MODES:
        if key in e:
            try:
                out[key] = _mode(w.scalar(e[key], f"{where}.{key}"))
            except ValueError as exc:
                raise w.fail(e[key], f"{where}.{key}", str(exc)) from None
    return out


def _target(w: _Walker, item: yaml.Node, where: str, out: _Targets) -> None:
    e = _entry(w, item, where, ("url",), ("service", "category", *MODES))
    service = w.string(e["service"], f"{where}.service") if "service" in e else ""
    category = w.string(e["category"], f"{where}.category") if "category" in e else ""
    try:
        target = Target.parse(w.string(e["url"], f"{where}.url"), service, category)
    except ValueError as exc:
        raise w.fail(e["url"], f"{where}.url", str(exc)) from None
    modes = _modes_of(w, e, where)
    out.add(replace(target, **modes) if modes else target)
