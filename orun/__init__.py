"""orun: deploy web apps from source code plus an app spec, behind one asyncio proxy."""

__version__ = "0.1.0"
