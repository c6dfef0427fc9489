/**
 * `arbor serve` from the Bun CLI: flags validated in Bun, the server runs under Node, signals are
 * forwarded, and the CLI exits with the server's exit code.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { openArtifactStore } from "../registry/store/open.ts";
import { pointLabel, publishFixture } from "./serve-fixtures.ts";

const ROOT = path.join(import.meta.dir, "..");

test("arbor serve: bad flags exit 2 with a code; the default cluster (one process per core) stops on SIGTERM with exit 0", async () => {
  const bad = Bun.spawnSync(["bun", "train/cli.ts", "serve", "--port", "99999"], {
    cwd: ROOT,
    stderr: "pipe",
  });
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toContain("INVALID_ARGUMENT");

  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cli-"));
  try {
    const store = await openArtifactStore(pathToFileURL(dir).href);
    const f = await publishFixture(store, {
      name: "c",
      version: 1,
      task: "regression",
      numFeatures: 2,
      numTrees: 2,
      depth: 2,
      seed: 1,
    });
    await pointLabel(store, "c", "production", 1, f.manifestSha256);
    await store.close();
    const proc = Bun.spawn(
      ["bun", "train/cli.ts", "serve", "--host", "127.0.0.1", "--port", "0", "--store", dir],
      {
        cwd: ROOT,
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const reader = proc.stdout.getReader();
    let out = "";
    while (!/"port":\d+/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`arbor serve exited: ${await new Response(proc.stderr).text()}`);
      out += new TextDecoder().decode(value);
    }
    const port = Number(/"port":(\d+)/.exec(out)![1]);
    // The default is one server process per core, all on one port.
    expect(out).toContain(`"workers":${availableParallelism()}`);
    const res = await fetch(`http://127.0.0.1:${port}/v1/models/c:predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[1, 2]] }),
    });
    expect(res.status).toBe(200);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
