"""The admin API: JSON over the owner-only unix socket, on top of the services."""
