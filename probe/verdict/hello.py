"""What the ClientHello variants say (`probe.engine.variants`): the ECH verdict, beside the
target's, and a sentence on the target's own verdict where they explain it. Pure, like `judge`.

The ECH verdict:
- `unsupported`: a resolver answered the query for the site's HTTPS record, and no answer
  publishes an ECH configuration; `not_measured`: no resolver answered it, or the variants did
  not go (`clienthello: never`, the vantage's regime, no address).
- `accessible`: the ECH ClientHello (the published outer name and config id) is answered.
- `blocked` (layer `tls`, the method of its failure): the ECH ClientHello fails where the same
  ClientHello without the ECH extension (`ech_outer`: the outer name alone) is answered — the
  extension is what is blocked, as Russia's TSPU does since November 2024.
- `down`: both fail, and the target itself is down; `inconclusive`: both fail otherwise (the
  outer name, or the address, is blocked: not ECH's doing).
"""

from __future__ import annotations

from probe.model import Blocking, Diagnosis, HelloObservation, HelloPath, Measurement
from probe.vocabulary import Failure, Layer, Method, Verdict

# the variants with the target's own name, and what each one changes
SHAPES = {
    "pq": "with a post-quantum key share (larger than one packet)",
    "ech_grease": "with a GREASE ECH extension",
    "split_record": "split into two TLS records",
    "split_segment": "split into two TCP segments inside the SNI",
}


def judge_ech(m: Measurement, target: Verdict) -> Diagnosis | None:
    """The ECH verdict of the measurement `m`, whose target's verdict is `target`; None for a
    target without variants (plain http://)."""
    path = m.hello
    if path is None:
        return None
    published = m.published_ech()
    if published is None:
        asked = [r for r in m.https_records if r.failure is None]
        if asked:
            names = ", ".join(r.resolver for r in asked)
            return Diagnosis(
                Verdict.UNSUPPORTED,
                None,
                f"ECH: the site publishes no ECH configuration (its HTTPS record, from {names})",
                "no ECH published",
            )
        if m.https_records:
            first = m.https_records[0]
            return _not_measured(
                "no resolver answered the query for its HTTPS record "
                f"({first.resolver}: {first.failure}, {first.error})"
            )
        return _not_measured(path.skipped or "its HTTPS record was not asked")
    if path.skipped is not None:
        return _not_measured(path.skipped)
    ech, outer = path.of("ech"), path.of("ech_outer")
    if ech is None or outer is None:
        return _not_measured("the ECH variants were not sent")
    head = (
        f"an ECH ClientHello (outer name {published.public_name}, config id "
        f"{published.config_id}) to {path.address}:{path.port}"
    )
    if ech.failure is None:
        return Diagnosis(
            Verdict.ACCESSIBLE, None, f"ECH: {head} is answered ({ech.answer})", "ECH answered"
        )
    failed = f"{head}: {ech.failure} ({ech.answer})"
    if outer.failure is None and ech.connected:
        blocking = Blocking(Layer.TLS, Method(ech.failure))
        return Diagnosis(
            Verdict.BLOCKED,
            blocking,
            f"ECH blocked: {failed}, while the same ClientHello without ECH is answered "
            f"({outer.answer}): the ECH extension is what is blocked",
            str(blocking),
        )
    both = f"{failed}, and without ECH too ({outer.failure}: {outer.answer})"
    if target == Verdict.DOWN:
        return Diagnosis(Verdict.DOWN, None, f"ECH: {both}; the site is down", "site down")
    return Diagnosis(
        Verdict.INCONCLUSIVE,
        None,
        f"ECH inconclusive: {both}: the outer name or the address fails, not ECH alone",
        "ECH inconclusive",
    )


def _not_measured(why: str) -> Diagnosis:
    return Diagnosis(Verdict.NOT_MEASURED, None, f"ECH not measured: {why}", "not measured")


def what_variants_say(path: HelloPath | None, host: str) -> str | None:
    """A sentence on the target's verdict where the variants tell something: the name or the
    shape of the ClientHello. None where they did not go, or tell nothing."""
    if path is None:
        return None
    baseline, harmless = path.of("baseline"), path.of("harmless")
    if baseline is None or harmless is None:
        return None  # the ECH variants alone: the ECH verdict says what they tell
    if baseline.failure is not None:
        return _name_or_address(path, baseline, harmless, host)
    failing = [v for v in path.variants if v.variant in SHAPES and v.failure is not None]
    if not failing:
        return None
    shapes = "; ".join(f"{SHAPES[v.variant]}: {v.failure}" for v in failing)
    return (
        f"ClientHello variants: a browser-shaped ClientHello with SNI {host} is answered "
        f"({baseline.answer}), but not one {shapes}: the censor reads the ClientHello's shape"
    )


def _name_or_address(
    path: HelloPath, baseline: HelloObservation, harmless: HelloObservation, host: str
) -> str:
    at = f"{path.address}:{path.port}"
    if harmless.failure is not None:
        return (
            f"ClientHello variants: every variant fails at {at}, the harmless name "
            f"{harmless.sni} too ({harmless.failure}): the address is blocked, not the name "
            "(or a block of the target's own handshakes still holds)"
        )
    passing = [v for v in path.variants if v.variant in SHAPES and v.failure is None]
    what = "reset" if baseline.failure == Failure.RESET else "failure"
    said = (
        f"ClientHello variants: the {what} follows the name: a ClientHello with SNI {host} "
        f"fails ({baseline.failure}), the harmless name {harmless.sni} is answered at {at}"
    )
    if passing:
        said += "; yet one " + " and one ".join(SHAPES[v.variant] for v in passing)
        said += " gets through: the censor does not reassemble what it reads"
    return said
