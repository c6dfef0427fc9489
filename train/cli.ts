/** arbor's CLI entry point (runs on Bun). `train/bin/arbor.mjs` starts it. */
import { COMMANDS } from "./cli/commands.ts";
import { runCli } from "./cli/dispatch.ts";

// Started by train/bin/arbor.mjs: if that launcher dies without forwarding a signal (SIGKILL), we
// are re-parented; stop as if interrupted rather than run on unsupervised (a tune worker would
// keep claiming trials that its operator believes stopped).
const launcher = Number(process.env["ARBOR_LAUNCHER_PID"] ?? 0);
if (launcher > 0) {
  setInterval(() => {
    if (process.ppid !== launcher) process.kill(process.pid, "SIGTERM");
  }, 500).unref();
}

const code = await runCli(COMMANDS, process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
