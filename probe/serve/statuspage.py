"""The status page at `/`: services of this vantage, coloured by verdict, with the explanation.

One HTML document, no external assets and no JavaScript (it is opened from inside censored
networks, where a CDN may be blocked and scripts may be stripped), readable on a phone.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from urllib.parse import quote

from probe import __version__
from probe.model import Diagnosis, RegimeReport
from probe.serve.metrics import Latest
from probe.vocabulary import TARGET_VERDICTS, Regime

STYLE = """
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:1rem;color:#1f2328}
h1{font-size:1.3rem;margin:0 0 .2rem} .meta{color:#57606a;margin-bottom:1rem}
.counts span{display:inline-block;margin:0 .6rem .4rem 0;padding:.15rem .5rem;border-radius:.3rem;color:#fff}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.45rem .5rem;vertical-align:top;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa;font-size:.85rem}
.v{font-weight:600;color:#fff;border-radius:.3rem;padding:.1rem .45rem;white-space:nowrap}
.why{color:#1f2328;font-size:.9rem} .when{white-space:nowrap;color:#57606a;font-size:.85rem}
a{color:#0969da} .problem{background:#ffebe9;border:1px solid #cf222e;padding:.5rem;border-radius:.3rem}
@media (max-width:700px){thead{display:none} tr{display:block;border-bottom:2px solid #d0d7de;padding:.4rem 0}
 td{display:block;border:0;padding:.15rem .2rem} td.url{font-weight:600}}
"""


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _path(q: Diagnosis | None) -> str:
    """A path's own verdict (HTTP/3, ECH) as a badge, its explanation on hover (— for none)."""
    if q is None:
        return "—"
    how = f" {html.escape(str(q.summary))}" if q.verdict.is_block else ""
    return (
        f'<span class=v style="background:{q.verdict.style.colour}" '
        f'title="{html.escape(q.explanation)}">{html.escape(q.verdict)}</span>{how}'
    )


def render(
    results: Sequence[Latest],
    vantage: str,
    country: str,
    *,
    round_info: str = "",
    problem: str | None = None,
    regime: RegimeReport | None = None,
    now: float | None = None,
) -> str:
    now = now if now is not None else time.time()
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    rows = []
    for r in sorted(results, key=lambda r: (r.verdict.style.rank, r.target.service)):
        t = r.target
        d = r.diagnosis
        how = str(d.blocking) if d.blocking else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.finished))
        rows.append(
            "<tr>"
            f"<td>{html.escape(t.service)}</td>"
            f"<td class=url>{html.escape(t.key)}</td>"
            f'<td><span class=v style="background:{d.verdict.style.colour}">'
            f"{html.escape(d.verdict)}</span> {html.escape(how)}</td>"
            f"<td>{_path(r.quic)}</td>"
            f"<td>{_path(r.ech)}</td>"
            f"<td class=why>{html.escape(d.explanation)}</td>"
            f'<td class=when title="{stamp}">{_ago(max(0.0, now - r.finished))}</td>'
            f'<td><a href="result?url={quote(t.key, safe="")}">evidence</a></td>'
            "</tr>"
        )
    badges = "".join(
        f'<span style="background:{v.style.colour}">{v} {counts[v]}</span>'
        for v in TARGET_VERDICTS
        if v in counts
    )
    body = (
        "\n".join(rows)
        or "<tr><td colspan=8>No measurement yet: the first round is running.</td></tr>"
    )
    warning = f"<p class=problem>{html.escape(problem)}</p>" if problem else ""
    if regime is not None:  # first: under a regime, it is what every row below is about
        kind = "problem" if regime.regime != Regime.NORMAL else "meta"
        evidence = "; ".join(regime.evidence)
        warning = (
            f'<p class={kind} title="{html.escape(evidence)}">{html.escape(regime.sentence())}'
            f"</p>{warning}"
        )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<meta http-equiv=refresh content=60>
<title>censorprobe — {html.escape(vantage)} ({html.escape(country)})</title>
<style>{STYLE}</style></head><body>
<h1>censorprobe · vantage {html.escape(vantage)} · {html.escape(country)}</h1>
<div class=meta>{len(results)} targets · {html.escape(round_info)} · censorprobe {__version__} ·
<a href=metrics>metrics</a> · <a href=results>results (JSON)</a></div>
{warning}<div class=counts>{badges}</div>
<table><thead><tr><th>Service</th><th>URL</th><th>Verdict</th><th>HTTP/3</th><th>ECH</th><th>Why</th><th>Measured</th><th></th></tr></thead>
<tbody>
{body}
</tbody></table></body></html>
"""
