"""The analysis, pure: observations (and the control's, and fingerprints) -> a diagnosis, and the
settling of several measurements of one target. No I/O, no asyncio."""

from probe.verdict.hello import judge_ech, what_variants_say
from probe.verdict.judge import judge
from probe.verdict.quic import judge_quic
from probe.verdict.remote import judge_remote
from probe.verdict.settle import settle

__all__ = ["judge", "judge_ech", "judge_quic", "judge_remote", "settle", "what_variants_say"]
