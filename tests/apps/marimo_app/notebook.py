"""marimo sample for orun's python-marimo spec: a text input whose value a later cell
turns into a greeting (run on the server, sent over the websocket), and the path the app
is served at."""

import marimo

__generated_with = "0.25.2"

app = marimo.App()


@app.cell
def _():
    import os

    import marimo as mo
    return mo, os


@app.cell
def _(mo, os):
    mo.md(f"# orun marimo sample\n\nserved at path: [{os.environ.get('CL_APP_PATH', '')}]")
    return


@app.cell
def _(mo):
    name = mo.ui.text(label="Your name")
    name  # noqa: B018 (a cell shows its last expression)
    return (name,)


@app.cell
def _(mo, name):
    mo.md(f"Hello, {name.value}!" if name.value else "Type a name")
    return


if __name__ == "__main__":
    app.run()
