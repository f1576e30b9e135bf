"""NiceGUI sample for orun's python-nicegui spec: a button and an input that change labels
over NiceGUI's socket.io connection."""

import os

from nicegui import ui


@ui.page("/")
def index() -> None:
    ui.label("orun nicegui sample").classes("text-h4")
    ui.label(f"served at path: [{os.environ.get('CL_APP_PATH', '')}]")
    clicks = {"n": 0}
    label = ui.label("Clicks: 0").props("id=clicks")

    def count() -> None:
        clicks["n"] += 1
        label.set_text(f"Clicks: {clicks['n']}")

    ui.button("Count", on_click=count).props("id=count")
    name = ui.input("Your name").classes("name-input")
    ui.label().props("id=hello").bind_text_from(
        name, "value", backward=lambda v: f"Hello, {v}!" if v else "")


if __name__ in {"__main__", "__mp_main__"}:
    ui.run(title="orun nicegui sample")
