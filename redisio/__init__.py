"""asyncio Redis plumbing shared by the asyncio services (gateway, market data).

``client`` builds the redis-py asyncio clients (a server or a cluster); ``topology``
says which node serves a key and follows the slot map; ``resp`` is a
callback-driven connection for the hot paths; ``tail`` follows streams with
raw blocking ``XREAD``. Not used by the engine, which is synchronous.
"""
