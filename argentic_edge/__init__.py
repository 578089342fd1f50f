"""argentic-edge: a LAN messaging appliance for Argentic multi-agent systems."""

__version__ = "0.1.0"
