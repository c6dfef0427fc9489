/** arbor's CLI entry point (runs on Bun). `train/bin/arbor.mjs` starts it. */
import { COMMANDS } from "./cli/commands.ts";
import { runCli } from "./cli/dispatch.ts";

const code = await runCli(COMMANDS, process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
