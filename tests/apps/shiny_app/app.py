"""Shiny for Python sample for orun's python-shiny spec: an input whose value the server
turns into a greeting over the websocket, and the path the app is served at."""

import os

from shiny import App, render, ui

app_ui = ui.page_fluid(
    ui.h1("orun shiny sample"),
    ui.p(f"served at path: [{os.environ.get('CL_APP_PATH', '')}]"),
    ui.input_text("name", "Your name", ""),
    ui.output_text("greeting"),
    title="orun shiny sample",
)


def server(input, output, session):
    @render.text
    def greeting() -> str:
        return f"Hello, {input.name()}!" if input.name() else "Type a name"


app = App(app_ui, server)
