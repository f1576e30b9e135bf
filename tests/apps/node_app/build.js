// `npm run build`: writes dist/build.json, which the server reports (proves the build ran).
const fs = require("node:fs");

fs.mkdirSync("dist", { recursive: true });
fs.writeFileSync("dist/build.json", JSON.stringify({ built: true, node: process.version }));
