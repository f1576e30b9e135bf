"""The labels orun puts on containers, images and volumes.

`orun.home` scopes everything to one orun installation: adoption, cleanup and the
tests find an installation's objects by it.
"""

LABEL_HOME = "orun.home"
LABEL_APP_ID = "orun.app.id"
LABEL_APP_KEY = "orun.app.key"
LABEL_APP_PATH = "orun.app.path"
LABEL_VERSION = "orun.version"
LABEL_IDENTITY = "orun.identity"
LABEL_PORT = "orun.port"
LABEL_HEALTH = "orun.health"

