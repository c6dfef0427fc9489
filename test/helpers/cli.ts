/** Run the arbor CLI in-process (the same dispatcher `npx arbor` uses) and capture its output. */
import { COMMANDS } from "../../train/cli/commands.ts";
import { runCli } from "../../train/cli/dispatch.ts";

/** Exit code and captured streams of one CLI run. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `arbor ARGV…` with the given environment and working folder. */
export async function runArbor(
  argv: readonly string[],
  options: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(COMMANDS, argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
  });
  return { code, stdout, stderr };
}
