// Build step of the js-hono spec for apps without a start script: generate a server
// entry that serves the app exported by src/index.{tsx,ts,jsx,js} with @hono/node-server
// on $PORT, and bundle it (with the app's own modules; packages stay in node_modules)
// into dist/orun-server.mjs with esbuild, which also compiles TypeScript and JSX.
// An app with a start script builds and starts itself: nothing is done then.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
if (pkg.scripts?.start) process.exit(0);

const index = ["tsx", "ts", "jsx", "js"].map((ext) => `src/index.${ext}`).find(existsSync);
if (!index) {
  console.error('error: package.json has no "start" script and there is no ' +
                "src/index.{tsx,ts,jsx,js} exporting the Hono app (export default app)");
  process.exit(1);
}

mkdirSync("dist", { recursive: true });
const entry = "dist/.orun-entry.mjs";
writeFileSync(entry, `import { serve } from "@hono/node-server";
import app from "../${index}";

if (typeof app?.fetch !== "function") {
  console.error("error: ${index} must export the Hono app as its default export " +
                "(export default app)");
  process.exit(1);
}
const port = Number(process.env.PORT || 3000);
const server = serve({ fetch: app.fetch, port, hostname: "0.0.0.0" },
                     (info) => console.log(\`listening on \${info.port}\`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
`);

const esbuild = createRequire("/opt/orun/tools/")("esbuild");
// JSX defaults to Hono's own runtime; a tsconfig.json that says otherwise wins
const tsconfig = existsSync("tsconfig.json") ? readFileSync("tsconfig.json", "utf8") : "";
const jsx = tsconfig.includes("jsxImportSource") ? {}
  : { jsx: "automatic", jsxImportSource: "hono/jsx" };
await esbuild.build({
  entryPoints: [entry], outfile: "dist/orun-server.mjs", bundle: true, platform: "node",
  format: "esm", packages: "external", target: `node${process.versions.node}`,
  logLevel: "warning", ...jsx,
});
console.log(`generated dist/orun-server.mjs serving the app of ${index}`);
