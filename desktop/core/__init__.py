"""Hearth's core: plain Python and asyncio, no Qt (a test enforces this)."""
