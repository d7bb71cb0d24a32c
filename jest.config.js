/** Unit tests (*.test.ts) and integration tests (*.int.test.ts) in one run. */
const fs = require("node:fs");
const swcrc = JSON.parse(fs.readFileSync(`${__dirname}/.swcrc`, "utf8"));

/** @type {import('jest').Config} */
module.exports = {
  // node, plus a kill of the servers a test file left running (jest.environment.js)
  testEnvironment: "<rootDir>/jest.environment.js",
  testEnvironmentOptions: {
    // Workspace packages resolve to their TypeScript sources, not dist/.
    customExportConditions: ["codeq-source", "node", "node-addons"],
  },
  roots: ["<rootDir>/packages", "<rootDir>/services", "<rootDir>/bench"].filter((d) =>
    fs.existsSync(d.replace("<rootDir>", __dirname)),
  ),
  testMatch: ["**/src/**/*.test.ts"],
  transform: { "^.+\\.ts$": ["@swc/jest", { ...swcrc, sourceMaps: "inline", swcrc: false }] },
  moduleFileExtensions: ["ts", "js", "json"],
  testTimeout: 30000,
};
