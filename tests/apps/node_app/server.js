// orun's js-node sample: reports what the spec set up (port, app path, build output, the
// locked dependency's version, user), streams a few chunks, and stops cleanly on SIGTERM.
const http = require("node:http");
const fs = require("node:fs");
const os = require("node:os");
const ms = require("ms");

const port = Number(process.env.PORT || 3000);
const build = JSON.parse(fs.readFileSync("dist/build.json", "utf8"));

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/stream") {
    // chunks 100 ms apart: a proxy that buffers would deliver them all at the end
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    let n = 0;
    const timer = setInterval(() => {
      n += 1;
      res.write(`chunk ${n} at ${Date.now()}\n`);
      if (n === 5) {
        clearInterval(timer);
        res.end();
      }
    }, 100);
    req.on("close", () => clearInterval(timer));
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({
    sample: "orun node sample",
    path: url.pathname,
    app_path: process.env.CL_APP_PATH ?? null,
    port,
    build,
    ms: require("ms/package.json").version,
    two_minutes: ms("2m"),
    uid: os.userInfo().uid,
    node_env: process.env.NODE_ENV ?? null,
    greeting: process.env.greeting ?? null,
  }));
});

server.listen(port, "0.0.0.0", () => console.log(`listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
