"""censorprobe: is a service reachable from here, and if not, how is it blocked?"""

__version__ = "0.1.0"
