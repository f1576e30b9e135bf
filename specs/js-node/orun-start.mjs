// orun's start wrapper for Node apps (PID 1 in the container).
//
// Why it exists: node and npm as PID 1 get no default signal handling, so `docker stop`
// (orun's idle stop, a replaced version) would wait for its timeout and then kill the
// app. This wrapper starts the app in its own process group, passes SIGTERM/SIGINT/
// SIGHUP on to the whole group, and ends with 0 when the app ended because it was asked
// to. It also points Node at the system's CA bundle (NODE_EXTRA_CA_CERTS) when the image
// has one, so outbound HTTPS through a TLS-intercepting proxy whose CA the image trusts
// works as it does for other programs, and sets BASE_PATH to the app's path
// (CL_APP_PATH) unless a param sets it.
//
// What it runs: `npm start` when package.json has a start script (or server.js exists,
// npm's own default); else the entry the js-hono spec generated (dist/orun-server.mjs).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { constants } from "node:os";

const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
const GENERATED = "dist/orun-server.mjs";

function startScript() {
  try {
    return JSON.parse(readFileSync("package.json", "utf8")).scripts?.start ?? "";
  } catch {
    return "";
  }
}

function command() {
  if (startScript() || existsSync("server.js")) return ["npm", ["start"]];
  if (existsSync(GENERATED)) return [process.execPath, [GENERATED]];
  console.error('error: package.json has no "start" script (and there is no server.js): ' +
                'add one, e.g. "start": "node index.js"');
  process.exit(2);
}

const env = { ...process.env };
if (!env.NODE_EXTRA_CA_CERTS && existsSync(CA_BUNDLE)) env.NODE_EXTRA_CA_CERTS = CA_BUNDLE;
// the app's path (empty at a domain root), for links: BASE_PATH as Hono apps expect it
if (env.BASE_PATH === undefined) env.BASE_PATH = env.CL_APP_PATH ?? "";

const [file, args] = command();
const child = spawn(file, args, { stdio: "inherit", env, detached: true });
let stopping = false;
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(signal, () => {
    stopping = true;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // the group is already gone
    }
  });
}
child.on("error", (err) => {
  console.error(`error: cannot run ${file}: ${err.message}`);
  process.exit(127);
});
child.on("exit", (code, signal) => {
  const status = code ?? 128 + (constants.signals[signal] ?? 0);
  // asked to stop and it stopped: a clean end. npm itself always ends by the signal it
  // got (whatever the app's exit code), so the app's own code is not known here.
  process.exit(stopping && (signal || [0, 130, 143].includes(status)) ? 0 : status);
});
