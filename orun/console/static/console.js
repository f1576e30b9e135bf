// orun console: live updates over server-sent events. No framework, no build step.
"use strict";
(function () {
  const MAX_LOG_CHARS = 400000;

  function live(on) {
    const dot = document.getElementById("live");
    if (dot) dot.classList.toggle("on", on);
  }

  // a log pane: lines appended as they come, scrolled to the end while the user is there
  function appendLog(pre, text) {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    let all = pre.textContent + text + "\n";
    if (all.length > MAX_LOG_CHARS) all = all.slice(all.length - MAX_LOG_CHARS);
    pre.textContent = all;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // one stream per page: the browser gives a host only six connections
  function follow(el, eventName) {
    const source = new EventSource(el.dataset.stream);
    source.addEventListener("open", () => live(true));
    source.addEventListener("error", () => live(false));
    source.addEventListener(eventName, (e) => { el.innerHTML = e.data; });
    const history = document.getElementById("history");
    if (history) source.addEventListener("history", (e) => { history.innerHTML = e.data; });
    source.addEventListener("gone", () => { source.close(); location.href = document.body.dataset.base; });
    source.addEventListener("signed-out", () => { source.close(); location.reload(); });
    document.querySelectorAll("pre.log[data-log]").forEach((pre) => {
      const name = pre.dataset.log;
      source.addEventListener(name + "-lines", (e) => appendLog(pre, e.data));
      source.addEventListener(name + "-reset", () => { pre.textContent = ""; });
    });
    // leaving the page closes the stream at once (the connection is free for the next)
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const rows = document.getElementById("rows");
    if (rows && rows.dataset.stream) follow(rows, "rows");
    const status = document.getElementById("status");
    if (status && status.dataset.stream) follow(status, "status");
  });
})();
