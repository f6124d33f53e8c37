"""Built-in protocol handlers: thin drivers of ``aionet.proto`` codecs or adapters of engines."""
