// orun's js-hono sample: a server-rendered page (hono/jsx) whose links use BASE_PATH, a
// JSON endpoint its button calls, and a server-sent event stream (hono's streamSSE).
import { Hono } from "hono";
import { raw } from "hono/html";
import { streamSSE } from "hono/streaming";

const base = process.env.BASE_PATH ?? "";
const app = new Hono();

const script = `
const base = ${JSON.stringify(base)};
document.getElementById("hello").addEventListener("click", async () => {
  const name = document.getElementById("name").value;
  const res = await fetch(base + "/api/hello?name=" + encodeURIComponent(name));
  document.getElementById("out").textContent = (await res.json()).message;
});
const events = new EventSource(base + "/sse");
events.addEventListener("tick", (e) => {
  document.getElementById("ticks").textContent += e.data + " ";
  if (e.data === "5") events.close();
});
`;

app.get("/", (c) =>
  c.html(
    <html>
      <head><title>orun hono sample</title></head>
      <body>
        <h1>orun hono sample</h1>
        <p id="where">served at path: [{base}]</p>
        <input id="name" value="orun" />
        <button id="hello">Say hello</button>
        <p id="out"></p>
        <p>ticks: <span id="ticks"></span></p>
        {raw(`<script>${script}</script>`)}
      </body>
    </html>,
  ));

app.get("/api/hello", (c) =>
  c.json({ message: `Hello, ${c.req.query("name") ?? "world"}!`, path: c.req.path,
           base_path: base, greeting: process.env.greeting ?? null }));

app.get("/sse", (c) =>
  streamSSE(c, async (stream) => {
    for (let n = 1; n <= 5; n++) {
      await stream.writeSSE({ event: "tick", data: String(n), id: String(n) });
      await stream.sleep(100);
    }
  }));

export default app;
