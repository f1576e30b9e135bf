"""The web console at `/_orun/console`: apps, versions, logs and actions in a browser.

Admins only (the admin password or an API token). Server-rendered pages (Jinja2
templates and a little plain JavaScript shipped in this package), live updates over
server-sent events fed by the event bus, and actions that call the same services as
the admin API, so they land in the same audit trail. It sits beside `orun/api/` and
uses it: the server passes in what it needs (`ConsoleHost`).
"""
