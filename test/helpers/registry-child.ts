/**
 * A registry client in its own process, for the concurrency and crash-safety suites. Reads
 * ARBOR_HOME / DATABASE_URL / ARBOR_STORE like the CLI does and prints one JSON line.
 *
 *   bun test/helpers/registry-child.ts register NAME DIR
 *   bun test/helpers/registry-child.ts register-and-hang NAME DIR afterCopy|afterManifest
 *   bun test/helpers/registry-child.ts promote NAME VERSION LABEL
 *   bun test/helpers/registry-child.ts promote-and-hang NAME VERSION LABEL   (hangs after the pointer write)
 *   bun test/helpers/registry-child.ts drain-jobs WORKER_ID     (claim and complete until empty)
 *
 * `register-and-hang` prints `{"paused":VERSION}` at the given point inside the registration
 * transaction and then waits forever, so that the parent can SIGKILL it there.
 */

import { openRegistry } from "../../registry/index.ts";
import type { RegisterHooks } from "../../registry/models.ts";
import { loadArborConfig } from "../../shared/config.ts";
import { createLogger } from "../../shared/logger.ts";

const [mode, name, arg, extra] = process.argv.slice(2);
const config = loadArborConfig(process.env);
const logger = createLogger({ name: "registry-child", level: "warn" });

const hang = (at: { version: number }) => {
  process.stdout.write(`${JSON.stringify({ paused: at.version })}\n`);
  return new Promise<void>(() => {});
};
const hooks: RegisterHooks = {};
if (mode === "register-and-hang") {
  if (extra === "afterCopy") hooks.afterCopy = hang;
  else if (extra === "afterManifest") hooks.afterManifest = hang;
  else throw new Error(`unknown hang point ${extra}`);
}
if (mode === "promote-and-hang") hooks.afterPointerWrite = hang;

const reg = await openRegistry(config, logger, { registerHooks: hooks });
try {
  if (mode === "register" || mode === "register-and-hang") {
    const r = await reg.models.register({ name, bundleDir: arg, actor: `child-${process.pid}` });
    process.stdout.write(`${JSON.stringify({ version: r.version, manifestSha256: r.manifestSha256 })}\n`);
  } else if (mode === "promote" || mode === "promote-and-hang") {
    const c = await reg.models.promote(name, Number(arg), extra, { actor: `child-${process.pid}` });
    process.stdout.write(`${JSON.stringify(c)}\n`);
  } else if (mode === "drain-jobs") {
    const done: string[] = [];
    for (let job = await reg.jobs.claim(name); job; job = await reg.jobs.claim(name)) {
      await reg.jobs.complete(job.id, name, { by: name });
      done.push(job.id);
    }
    process.stdout.write(`${JSON.stringify({ done })}\n`);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await reg.close();
}
