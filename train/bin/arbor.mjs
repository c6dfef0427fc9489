#!/usr/bin/env node
// `npx arbor …` lands here under Node.js. The CLI itself runs on Bun (train/ and registry/ are
// Bun code); Bun ships as an npm package, so it is already in node_modules after the install.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
let bun;
try {
  bun = path.join(path.dirname(require.resolve("bun/package.json")), "bin", "bun.exe");
} catch {
  process.stderr.write(
    "arbor: INTERNAL: the bun package is not installed; run the README's install command\n",
  );
  process.exit(1);
}
const child = spawn(bun, [path.join(here, "..", "cli.ts"), ...process.argv.slice(2)], {
  stdio: "inherit",
  env: { ...process.env, ARBOR_LAUNCHER_PID: String(process.pid) },
});
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
// `npx arbor …` runs this file under `npm exec` → `sh -c arbor …`: a SIGTERM sent to the npx
// process ends npm and that shell without passing it on, and we are re-parented. Under npm exec
// (npm_command=exec), losing our parent is that signal: forward SIGTERM so the child (e.g. `arbor
// serve`) shuts down gracefully. Not otherwise: `nohup arbor serve &` must outlive its shell.
if (process.env.npm_command === "exec") {
  const parent = process.ppid;
  const orphaned = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(orphaned);
    child.kill("SIGTERM");
  }, 250);
  orphaned.unref();
}
child.on("exit", (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
