#!/usr/bin/env node
// The `codeq` bin. A checked-in launcher rather than dist/main.js itself: npm links
// a bin only if its file exists at install time, and dist/ appears only with a build.
"use strict";
const path = require("node:path");
const fs = require("node:fs");

const main = path.join(__dirname, "..", "dist", "main.js");
if (!fs.existsSync(main)) {
  process.stderr.write("codeq: not built yet; run `npm run build` at the repository root\n");
  process.exit(1);
}
require(main);
