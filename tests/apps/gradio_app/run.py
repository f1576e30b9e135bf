"""Gradio sample for orun's python-gradio spec: a button that runs a function, a
generator that streams its results through the queue, and an image output (a file URL)."""

import os
import time

import gradio as gr
import numpy as np


def greet(name: str) -> str:
    return f"Hello, {name}!"


def count(n: float):
    for i in range(1, int(n) + 1):
        time.sleep(0.3)
        yield f"tick {i}"


def square() -> np.ndarray:
    return np.full((16, 16, 3), 200, dtype=np.uint8)


with gr.Blocks(title="orun gradio sample") as demo:
    gr.Markdown(f"# orun gradio sample\n\nserved at path: [{os.environ.get('CL_APP_PATH', '')}]")
    name = gr.Textbox(label="Name", elem_id="name")
    greeting = gr.Textbox(label="Greeting", elem_id="greeting")
    gr.Button("Greet", elem_id="greet").click(greet, inputs=name, outputs=greeting,
                                              api_name="greet")
    ticks = gr.Number(value=3, label="Ticks", elem_id="ticks")
    progress = gr.Textbox(label="Progress", elem_id="progress")
    gr.Button("Count", elem_id="count").click(count, inputs=ticks, outputs=progress,
                                              api_name="count")
    image = gr.Image(label="Square", elem_id="square")
    gr.Button("Draw", elem_id="draw").click(square, inputs=None, outputs=image,
                                            api_name="draw")

if __name__ == "__main__":
    demo.launch()
