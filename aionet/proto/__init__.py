"""Sans-IO protocol codecs. Nothing here may import asyncio or socket (a test enforces it)."""
