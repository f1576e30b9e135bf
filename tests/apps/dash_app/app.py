"""Dash sample for orun's python-dash spec: an input whose callback writes a greeting,
and the path the app is served at (the page's own requests go under it)."""

import os

from dash import Dash, Input, Output, dcc, html

app = Dash(__name__, title="orun dash sample")
app.layout = html.Div([
    html.H1("orun dash sample"),
    html.P(f"served at path: [{os.environ.get('CL_APP_PATH', '')}]"),
    dcc.Input(id="name", value="", type="text", placeholder="Your name"),
    html.Div(id="greeting"),
])


@app.callback(Output("greeting", "children"), Input("name", "value"))
def greet(name: str) -> str:
    return f"Hello, {name}!" if name else "Type a name"


if __name__ == "__main__":
    app.run(debug=True)
