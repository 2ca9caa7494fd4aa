"""`censorprobe serve` and what it writes: the daemon, its web endpoints and metrics, the status
page, the evidence archive, and `censorprobe report` over that archive."""
