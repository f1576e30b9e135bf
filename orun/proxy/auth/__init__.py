"""Authentication in front of apps: basic auth as orun's admin, OpenID Connect, and
forward auth. `service.AuthTarget` wraps an app's target; see `service.AuthService`."""
