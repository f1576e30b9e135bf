"""Panel sample for orun's python-panel spec: a text input whose value the server turns
into a greeting (over Bokeh's websocket), and the path the app is served at."""

import os

import panel as pn

pn.extension()

name = pn.widgets.TextInput(name="Your name", value="", css_classes=["name-input"])


def greet(value: str) -> str:
    return f"Hello, {value}!" if value else "Type a name"


pn.Column(
    "# orun panel sample",
    f"served at path: [{os.environ.get('CL_APP_PATH', '')}]",
    name,
    pn.bind(greet, name),
).servable(title="orun panel sample")
