"""Watched inbox folders: inbox -> durable queue -> predict jobs -> outbox (see manager.py)."""
