"""Each censor of the lab does what it should, seen with standard tools (dig, curl) from a vantage,
and the honest cases stay honest."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from probe.lab import scenarios as lab
from tests.lab.conftest import in_internet, in_vantage

CURL_OK = 0
CURL_REFUSED = 7
CURL_TIMEOUT = 28
CURL_TLS_FAIL = 35
CURL_BAD_CERT = 60
CURL_RECV_RESET = 56


def host(technique: str) -> str:
    return lab.by_technique(technique).host


def addr(technique: str) -> str:
    return lab.by_technique(technique).address


def dig(*args: str) -> subprocess.CompletedProcess[str]:
    return in_vantage("dig", "+time=2", "+tries=1", *args)


def curl(lab_up: Path, *args: str, where: str = "vantage") -> subprocess.CompletedProcess[str]:
    cmd = ["curl", "-sS", "--max-time", "4", "--cacert", str(lab_up / "ca.pem"), *args]
    return in_vantage(*cmd) if where == "vantage" else in_internet(*cmd)


def test_honest_origin_is_reachable(lab_up: Path) -> None:
    r = curl(lab_up, "https://ok.lab.test/")
    assert r.returncode == CURL_OK
    assert "<title>ok.lab.test" in r.stdout


def test_isp_resolver_answers_nxdomain_while_the_real_one_answers(lab_up: Path) -> None:
    assert "status: NXDOMAIN" in dig(host("isp_nxdomain")).stdout
    assert dig("+short", f"@{lab.INTERNET_RESOLVER}", host("isp_nxdomain")).stdout.split() == [
        addr("isp_nxdomain")
    ]


def test_isp_resolver_redirects_to_its_blockpage(lab_up: Path) -> None:
    assert dig("+short", host("isp_redirect")).stdout.split() == [lab.ISP_BLOCKPAGE]
    r = curl(lab_up, f"http://{host('isp_redirect')}/")
    assert "Доступ ограничен" in r.stdout


def test_border_injects_a_forged_answer_that_races_the_real_one(lab_up: Path) -> None:
    name = host("dns_injection")
    # dig takes the first answer: the forged one
    assert dig("+short", f"@{lab.INTERNET_RESOLVER}", name).stdout.split() == [lab.FORGED_ADDRESS]
    # the injector does not see TCP: the real answer
    assert dig("+tcp", "+short", f"@{lab.INTERNET_RESOLVER}", name).stdout.split() == [
        addr("dns_injection")
    ]
    # both answers arrive for one UDP query
    listen = (
        "import socket,sys,dns.message\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1.0)\n"
        f"s.connect(('{lab.INTERNET_RESOLVER}',53));s.send(dns.message.make_query('{name}','A').to_wire())\n"
        "out=[]\n"
        "try:\n"
        "  while True: out.append(dns.message.from_wire(s.recv(4096)).answer[0][0].to_text())\n"
        "except socket.timeout: pass\n"
        "print(' '.join(out))\n"
    )
    got = in_vantage(sys.executable, "-c", listen).stdout.split()
    assert got == [lab.FORGED_ADDRESS, addr("dns_injection")]


def test_injection_answers_for_an_address_that_runs_no_resolver(lab_up: Path) -> None:
    no_resolver = addr("none")
    assert dig("+short", f"@{no_resolver}", host("dns_injection")).stdout.split() == [
        lab.FORGED_ADDRESS
    ]
    assert "timed out" in dig(f"@{no_resolver}", host("none")).stdout  # unlisted: nothing answers
    assert "refused" in dig("+tcp", f"@{no_resolver}", host("dns_injection")).stdout


def test_ip_blackhole_times_out(lab_up: Path) -> None:
    r = curl(lab_up, "--connect-timeout", "2", f"https://{host('ip_drop')}/")
    assert r.returncode == CURL_TIMEOUT
    assert curl(lab_up, f"https://{host('ip_drop')}/", where="internet").returncode == CURL_OK


def test_ip_reset_refuses(lab_up: Path) -> None:
    assert curl(lab_up, f"https://{host('ip_reset')}/").returncode == CURL_REFUSED
    assert curl(lab_up, f"https://{host('ip_reset')}/", where="internet").returncode == CURL_OK


def test_sni_reset_resets_the_name_and_passes_another_sni(lab_up: Path) -> None:
    r = curl(lab_up, f"https://{host('sni_reset')}/")
    assert r.returncode in (CURL_TLS_FAIL, CURL_RECV_RESET)
    assert "reset" in r.stderr.lower()
    other = curl(
        lab_up, "-k", "--resolve", f"example.com:443:{addr('sni_reset')}", "https://example.com/"
    )
    assert other.returncode == CURL_OK


def test_sni_drop_times_out_the_name_and_passes_another_sni(lab_up: Path) -> None:
    assert curl(lab_up, f"https://{host('sni_drop')}/").returncode == CURL_TIMEOUT
    other = curl(
        lab_up, "-k", "--resolve", f"example.com:443:{addr('sni_drop')}", "https://example.com/"
    )
    assert other.returncode == CURL_OK


def test_host_header_reset(lab_up: Path) -> None:
    r = curl(lab_up, f"http://{host('host_reset')}/")
    assert r.returncode == CURL_RECV_RESET
    other = curl(lab_up, "-H", "Host: other.lab.test", f"http://{addr('host_reset')}/")
    assert other.returncode == CURL_OK


def test_http_blockpage_by_dnat(lab_up: Path) -> None:
    assert "Доступ ограничен" in curl(lab_up, f"http://{host('http_blockpage')}/").stdout
    genuine = curl(lab_up, f"http://{host('http_blockpage')}/", where="internet").stdout
    assert f"<title>{host('http_blockpage')}" in genuine


def test_http_302_to_the_national_blockpage(lab_up: Path) -> None:
    r = curl(lab_up, "-i", f"http://{host('http_redirect')}/")
    assert r.stdout.startswith("HTTP/1.1 302")
    assert f"Location: http://{lab.NATIONAL_BLOCKPAGE_HOST}/" in r.stdout


def test_tls_interception_presents_an_untrusted_certificate(lab_up: Path) -> None:
    assert curl(lab_up, f"https://{host('tls_intercept')}/").returncode == CURL_BAD_CERT
    r = curl(lab_up, "-kv", f"https://{host('tls_intercept')}/")
    assert "ISP Interception CA" in r.stderr
    assert curl(lab_up, f"https://{host('tls_intercept')}/", where="internet").returncode == CURL_OK


def test_throttling_polices_the_server_to_under_200_kbit(lab_up: Path) -> None:
    url = f"https://{host('throttle')}/large"
    slow = curl(lab_up, "-o", "/dev/null", "-w", "%{speed_download}", url)
    fast = curl(lab_up, "-o", "/dev/null", "-w", "%{speed_download}", url, where="internet")
    assert float(slow.stdout) * 8 < 200_000
    assert float(slow.stdout) > 0  # data still flows
    assert float(fast.stdout) * 8 > 10_000_000


def test_residual_blocking_keeps_the_pair_blocked_for_a_while(lab_up: Path) -> None:
    harmless = ["-k", "--resolve", f"example.com:443:{addr('residual')}", "https://example.com/"]
    assert curl(lab_up, *harmless).returncode == CURL_OK
    assert curl(lab_up, f"https://{host('residual')}/").returncode in (
        CURL_TLS_FAIL,
        CURL_RECV_RESET,
    )
    assert curl(lab_up, *harmless).returncode == CURL_REFUSED  # the penalty box
    other_vantage = in_vantage("curl", "-sS", "--max-time", "4", *harmless, vantage="b")
    assert other_vantage.returncode == CURL_OK  # only that client is boxed
    time.sleep(lab.RESIDUAL_SECONDS + 1)
    assert curl(lab_up, *harmless).returncode == CURL_OK


def test_cdn_answers_another_valid_node(lab_up: Path) -> None:
    s = lab.by_technique("cdn")
    assert dig("+short", s.host).stdout.split() == [s.other_address]
    assert dig("+short", f"@{lab.INTERNET_RESOLVER}", s.host).stdout.split() == [s.address]
    for node in (s.address, s.other_address):
        assert (
            curl(lab_up, "--resolve", f"{s.host}:443:{node}", f"https://{s.host}/").returncode
            == CURL_OK
        )


def test_down_everywhere(lab_up: Path) -> None:
    assert curl(lab_up, f"https://{host('down')}/").returncode == CURL_REFUSED
    assert curl(lab_up, f"https://{host('down')}/", where="internet").returncode == CURL_REFUSED


def test_slow_server_is_slow_but_healthy(lab_up: Path) -> None:
    r = curl(
        lab_up,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_starttransfer}",
        f"https://{host('slow')}/",
    )
    code, ttfb = r.stdout.split()
    assert code == "200"
    assert float(ttfb) >= lab.SLOW_DELAY


def scenario(name: str) -> lab.Scenario:
    return next(s for s in lab.scenarios() if s.name == name)


def test_freezes_stop_the_transfer_after_their_threshold(lab_up: Path) -> None:
    """No RST, no FIN: curl waits out its time with what arrived before the freeze."""
    fmt = ["-o", "/dev/null", "-w", "%{size_header} %{size_download}"]
    head = curl(lab_up, *fmt, f"http://{scenario('freeze-in-headers').host}/")
    assert head.returncode == CURL_TIMEOUT and head.stdout.split()[1] == "0"
    body = curl(lab_up, *fmt, f"http://{scenario('freeze-in-body').host}/")
    headers, got = map(int, body.stdout.split())
    assert body.returncode == CURL_TIMEOUT and 10_000 < headers + got < 20_000
    record = curl(lab_up, *fmt, f"https://{scenario('freeze-in-tls-record').host}/")
    assert record.returncode == CURL_TIMEOUT and record.stdout == "0 0"
    whole = curl(lab_up, *fmt, f"http://{scenario('freeze-in-body').host}/", where="internet")
    assert whole.returncode == CURL_OK and int(whole.stdout.split()[1]) > 100_000


def test_a_chain_host_redirects_to_a_blocked_one(lab_up: Path) -> None:
    s = scenario("chain-to-sni-reset")
    r = curl(lab_up, "-i", s.url)
    assert r.stdout.startswith("HTTP/1.1 302") and f"Location: {s.redirect}" in r.stdout


def test_one_family_dropped_the_other_passes(lab_up: Path) -> None:
    v6, v4 = scenario("ipv6-blackhole"), scenario("ipv4-blackhole")
    assert curl(lab_up, "-6", "--connect-timeout", "2", v6.url).returncode == CURL_TIMEOUT
    assert curl(lab_up, "-4", v6.url).returncode == CURL_OK
    assert curl(lab_up, "-4", "--connect-timeout", "2", v4.url).returncode == CURL_TIMEOUT
    assert curl(lab_up, "-6", v4.url).returncode == CURL_OK
    assert curl(lab_up, "-6", v6.url, where="internet").returncode == CURL_OK


def test_aaaa_answers_are_forged_and_a_answers_are_not(lab_up: Path) -> None:
    s = scenario("aaaa-injection")
    forged = dig("+short", f"@{lab.INTERNET_RESOLVER}", "AAAA", s.host).stdout.split()
    assert forged == [lab.FORGED_ADDRESS6]
    assert dig("+short", f"@{lab.INTERNET_RESOLVER}", "A", s.host).stdout.split() == [s.address]


def test_vantage_b_has_an_ipv6_route_that_goes_nowhere(lab_up: Path) -> None:
    url = scenario("dual-stack").url
    assert "default via 2001:db8:2::1" in in_vantage("ip", "-6", "route", vantage="b").stdout
    cmd = ["curl", "-sS", "-6", "--connect-timeout", "2", "--cacert", str(lab_up / "ca.pem"), url]
    assert in_vantage(*cmd, vantage="b").returncode == CURL_TIMEOUT
    assert in_vantage(*cmd, vantage="a").returncode == CURL_OK


QUIC_ATTEMPT = (
    "import asyncio, sys, time\n"
    "from probe.measure import quic\n"
    "from probe.policy import AddressPolicy\n"
    "address, sni = sys.argv[1], sys.argv[2]\n"
    "limits = quic.Limits(2.0, 1.0, 1 << 20, time.perf_counter() + 5)\n"
    "h, _ = asyncio.run(quic.handshake_and_get(address, 443, sni, None, verify=False,"
    " ca_file=None, limits=limits, policy=AddressPolicy.open()))\n"
    "print(h.failure)\n"
)


def quic_handshake(address: str, sni: str, where: str = "vantage") -> str:
    cmd = [sys.executable, "-c", QUIC_ATTEMPT, address, sni]
    out = in_vantage(*cmd) if where == "vantage" else in_internet(*cmd)
    return out.stdout.strip() or out.stderr[-300:]


def test_the_quic_censor_drops_a_flow_by_the_sni_in_its_initial(lab_up: Path) -> None:
    s = scenario("quic-sni-block")
    assert quic_handshake(s.address, s.host) == "timeout"
    assert quic_handshake(s.address, "example.com") == "None"  # the same address, another name
    assert quic_handshake(s.address, s.host, where="internet") == "None"


def test_the_isp_drops_all_udp_443_to_one_address(lab_up: Path) -> None:
    s = scenario("quic-udp-block")
    assert quic_handshake(s.address, "example.com") == "timeout"
    assert quic_handshake(s.address, s.host, where="internet") == "None"
    assert quic_handshake(scenario("quic-open").address, "quic.lab.test") == "None"


def test_quic_origins_advertise_http3_and_the_others_do_not(lab_up: Path) -> None:
    quic_origin = curl(lab_up, "-sI", scenario("quic-open").url).stdout.lower()
    assert 'alt-svc: h3=":443"' in quic_origin
    assert "alt-svc" not in curl(lab_up, "-sI", "https://ok.lab.test/").stdout.lower()


HELLO_ATTEMPT = """
import asyncio, sys
from probe.engine.variants import shapes
from probe.measure.clienthello import send
from probe.model import PublishedECH
from probe.policy import AddressPolicy
address, host, variant, outer = sys.argv[1:]
published = PublishedECH(outer, 42, 1, 1)
shape = shapes(host, "example.com", published, every=True)[variant]
seen = asyncio.run(send(variant, address, 443, shape, 2.0, AddressPolicy.open()))
print(seen.failure)
"""


def hello(s: lab.Scenario, variant: str, where: str = "vantage") -> str:
    """What our own ClientHello `variant` to the scenario's origin meets: None (answered) or
    how it failed."""
    cmd = [sys.executable, "-c", HELLO_ATTEMPT, s.address, s.host, variant, lab.ECH_PUBLIC_NAME]
    out = in_vantage(*cmd) if where == "vantage" else in_internet(*cmd)
    return out.stdout.strip() or out.stderr[-300:]


def test_the_ech_censor_holds_an_ech_clienthello_to_its_listed_outer_name(lab_up: Path) -> None:
    s = scenario("ech-blocked")
    assert hello(s, "ech") == "timeout"
    assert hello(s, "ech_outer") == "None"  # the same outer name, without the extension
    assert hello(s, "ech_grease") == "None"  # an ECH extension, but the real name outside
    assert hello(s, "ech", where="internet") == "None"
    assert "ech=" in dig("+short", "-t", "TYPE65", s.host).stdout  # what the site publishes


def test_a_clienthello_larger_than_one_packet_is_dropped(lab_up: Path) -> None:
    s = scenario("large-clienthello-dropped")
    assert hello(s, "pq") == "timeout"
    assert hello(s, "baseline") == "None"
    assert hello(s, "pq", where="internet") == "None"


def test_the_sni_reset_reads_one_packet_at_a_time(lab_up: Path) -> None:
    s = scenario("sni-reset")
    assert hello(s, "baseline") == "reset"
    assert hello(s, "split_segment") == "None"
    assert hello(s, "split_record") == "None"
