"""The control helper's server: the probe's measurement, from an unfiltered network, for probes
that ask (its client is `probe.engine.control`)."""
