"""The target's ClientHello variants: ClientHellos of our own (`probe.measure.hello`), one thing
changed at a time, sent at once to the address where the target's own handshake went.

- `baseline`: shaped like a current browser's, with a classic X25519 key share.
- `harmless`: the baseline with the SNI check's name (is it the name?).
- `pq`: the baseline with an X25519MLKEM768 key share: larger than one packet.
- `ech_grease`: the baseline with a GREASE ECH extension (the real name outside).
- `ech`: where the site publishes ECH, an ECH ClientHello with its outer name and config id;
  `ech_outer`: the same ClientHello without the ECH extension (the outer name alone).
- `split_record`: the baseline in two TLS records; `split_segment`: in two TCP segments, cut
  inside the SNI.

When (`clienthello:`): `auto` where the target's own TLS handshake failed (every variant: name
or shape?) or where the site publishes ECH (`ech` and `ech_outer` only: its own handshake
answered the rest); `always` (every variant); `never`. After the target's last measurement
(a variant with the real name may re-arm a censor's residual blocking), within the variants'
deadline, and not while the vantage's network regime is not `normal`.
"""

from __future__ import annotations

import asyncio

from probe.engine.deadline import Budget, hello_mode
from probe.engine.runtime import Runtime
from probe.measure.clienthello import send
from probe.measure.hello import SECP256R1, SECP384R1, X25519, X25519MLKEM768, ECHConfig, Shape
from probe.model import HelloPath, Measurement, PublishedECH, Target
from probe.policy import is_ip_literal
from probe.vocabulary import Regime, Step

PQ_GROUPS = (X25519MLKEM768, X25519, SECP256R1, SECP384R1)
# a GREASE ECH extension's config id and suite (draft-ietf-tls-esni §6.2: random, as browsers)
GREASE_ECH_ID = 0x42


def shapes(
    host: str, harmless: str, published: PublishedECH | None, every: bool
) -> dict[str, Shape]:
    """The variants to send: every one (`every`), or those of ECH alone."""
    out: dict[str, Shape] = {}
    if every:
        out["baseline"] = Shape(host)
        out["harmless"] = Shape(harmless)
        out["pq"] = Shape(host, groups=PQ_GROUPS, key_shares=(X25519MLKEM768, X25519))
        out["ech_grease"] = Shape(host, ech=ECHConfig(host, GREASE_ECH_ID))
        out["split_record"] = Shape(host, split="record")
        out["split_segment"] = Shape(host, split="segment")
    if published is not None:
        config = ECHConfig(
            published.public_name, published.config_id, published.kdf, published.aead
        )
        out["ech"] = Shape(host, ech=config)
        out["ech_outer"] = Shape(published.public_name)
    return out


def _why(target: Target, rt: Runtime, m: Measurement) -> tuple[str | None, str | None]:
    """Why the variants go (`always`, `failed`, `ech`), or why not."""
    mode = hello_mode(target, rt.settings)
    if mode == "never":
        return None, "clienthello: never"
    if rt.regime is not None and rt.regime.regime != Regime.NORMAL:
        return None, f"the vantage's network regime is {rt.regime.regime}, not normal"
    if mode == "always":
        return "always", None
    if any(t.failure is not None for t in m.tls):
        return "failed", None
    if m.published_ech() is not None:
        return "ech", None
    return None, "its TLS handshake was answered and no ECH configuration was found"


async def measure(target: Target, rt: Runtime, m: Measurement, budget: Budget) -> HelloPath | None:
    """The variants, as the target's mode says; None for http targets."""
    if hello_mode(target, rt.settings) is None:
        return None
    tried, skipped = _why(target, rt, m)
    if tried is None:
        return HelloPath(skipped=skipped)
    address = next((t.address for t in m.tls), None)
    if address is None:
        literal = [target.host] if is_ip_literal(target.host) else []
        address = next((a for a in m.addresses() or literal if rt.policy.allows(a)), None)
    if address is None:
        return HelloPath(tried=tried, skipped="no address to send them to")
    s = rt.settings
    variants = shapes(target.host, s.sni_check_name, m.published_ech(), tried != "ech")
    timeout = budget.take(s.hello_deadline, Step.CLIENTHELLO)
    seen = await asyncio.gather(
        *(
            send(name, address, target.port, shape, timeout, rt.policy)
            for name, shape in variants.items()
        )
    )
    return HelloPath(tried, None, address, target.port, tuple(seen))
