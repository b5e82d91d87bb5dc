"""Request/response over the transport (node/messages.py codec, asyncio adapter)."""
