"""The engine: the runtime a process shares, the flow of one target, the control helper's
client, and the scheduling of many targets. It imports the measure primitives and the verdict,
and nothing of the front ends."""
