"""The data layer: apps and their versions, the server config and its schema, the
store, app paths, `$ORUN_HOME` rules, and the pure parsers of container settings.

It imports nothing from the services, the runtime, routing or the proxy, so every other
layer can depend on it.
"""
