"""asyncio Redis plumbing shared by the asyncio services (gateway, market data).

``client`` builds the redis-py asyncio client from a URL; ``resp`` is a
callback-driven connection for the hot paths; ``tail`` follows streams with
raw blocking ``XREAD``. Not used by the engine, which is synchronous.
"""
