"""The contract every streamex process shares, with no I/O and no matching code.

Redis keys and stream entry shapes (``keys``, ``ids``, ``streams``), engine
commands and events (``commands``, ``events``), the snapshot schema
(``snapshot``), error codes (``errors``), market arithmetic (``market``),
settings (``settings``), the public websocket protocol (``wire``,
``order_entry``, ``market_data``) and request signing (``signing``). It
imports only the standard library and msgspec.
"""
