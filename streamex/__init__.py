"""streamex: an in-memory exchange matching engine on Redis Streams."""

__version__ = "0.1.0"
