"""python-reflex test app: a counter whose button sends an event over Reflex's websocket."""

import reflex as rx


class CounterState(rx.State):
    count: int = 0

    @rx.event
    def increment(self):
        self.count += 1


def index() -> rx.Component:
    return rx.vstack(
        rx.heading("orun reflex counter", id="title"),
        rx.text(CounterState.count, id="count"),
        rx.button("Increment", on_click=CounterState.increment, id="increment"),
        rx.image(src="/orun-logo.svg", id="logo", width="32px", height="32px"),
    )


app = rx.App()
app.add_page(index, title="orun reflex counter")
