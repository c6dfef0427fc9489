/**
 * Dockerfile.serve cannot be built here (no Docker engine), so this test lays out its final image as
 * the Dockerfile says — the files its COPY lines take, the production dependencies less the ones its
 * RUN line removes, its ENV — and runs its CMD and HEALTHCHECK in that folder. An import that reaches
 * outside the copied folders, or into a removed package, fails here before it fails in an image.
 */
import { expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { openArtifactStore } from "../registry/store/open.ts";
import { publishLabelled } from "./serve-fixtures.ts";

const ROOT = path.join(import.meta.dir, "..");

/** What the Dockerfile says about its final image. */
interface ImageSpec {
  /** Repository paths the final stage copies (the build context's, not another stage's). */
  copies: string[];
  /** `node_modules/…` patterns the dependency stage deletes (`*` = any characters). */
  removed: string[];
  env: Record<string, string>;
  cmd: string[];
  /** The HEALTHCHECK's command, an exec of node. */
  healthcheck: string[];
}

function readDockerfile(): ImageSpec {
  // Join continuation lines, drop comments.
  const lines = readFileSync(path.join(ROOT, "Dockerfile.serve"), "utf8")
    .replace(/\\\n/g, " ")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  const finalFrom = lines.findLastIndex((l) => l.startsWith("FROM "));
  const spec: ImageSpec = { copies: [], removed: [], env: {}, cmd: [], healthcheck: [] };
  lines.forEach((line, i) => {
    const [word, ...rest] = line.trim().split(/\s+/);
    if (word === "RUN")
      for (const m of line.matchAll(/\brm -rf ([^&;]+)/g)) spec.removed.push(...m[1].trim().split(/\s+/));
    if (i < finalFrom) return;
    if (word === "COPY" && !rest[0].startsWith("--from")) spec.copies.push(...rest.slice(0, -1));
    if (word === "ENV") for (const m of line.matchAll(/(\w+)=(\S+)/g)) spec.env[m[1]] = m[2];
    if (word === "CMD") spec.cmd = JSON.parse(line.slice(line.indexOf("[")));
    if (word === "HEALTHCHECK") {
      const m = /CMD node -e "(.*)"\s*$/.exec(line);
      if (m) spec.healthcheck = ["node", "-e", m[1]];
    }
  });
  return spec;
}

/** Top-level `node_modules/…` folders `npm ci --omit=dev` installs. */
function productionPackages(): string[] {
  const ls = Bun.spawnSync(["npm", "ls", "--omit=dev", "--all", "--parseable"], { cwd: ROOT });
  return ls.stdout
    .toString()
    .split("\n")
    .map((p) => path.relative(ROOT, p))
    .filter((p) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(p));
}

test("Dockerfile.serve: its image's files and production dependencies run the server; predict, explain, /readyz, the HEALTHCHECK and SIGTERM work", async () => {
  const spec = readDockerfile();
  // The parse found what the image is made of (a reworded Dockerfile fails here, not silently).
  expect(spec.copies).toContain("serve");
  expect(spec.removed).toContain("node_modules/bun");
  expect(spec.cmd).toEqual(["node", "--import", "tsx", "serve/main.ts"]);
  // Liveness: a model that fails to load must not get the container restarted.
  expect(spec.healthcheck[2]).toContain("/healthz");

  const tmp = mkdtempSync(path.join(tmpdir(), "arbor-image-"));
  try {
    const app = path.join(tmp, "app");
    for (const p of spec.copies) cpSync(path.join(ROOT, p), path.join(app, p), { recursive: true });
    const isRemoved = (p: string) =>
      spec.removed.some((r) =>
        new RegExp(`^${r.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`).test(p),
      );
    const packages = productionPackages();
    expect(packages).toContain("node_modules/uWebSockets.js");
    expect(packages).not.toContain("node_modules/typescript");
    for (const p of packages.filter((p) => !isRemoved(p))) {
      mkdirSync(path.dirname(path.join(app, p)), { recursive: true });
      symlinkSync(path.join(ROOT, p), path.join(app, p));
    }

    const storeDir = path.join(tmp, "store");
    const store = await openArtifactStore(pathToFileURL(storeDir).href);
    await publishLabelled(store, "m", 1, "regression", 1, []);
    await store.close();

    const proc = Bun.spawn(spec.cmd, {
      cwd: app,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: tmp,
        ...spec.env,
        ARBOR_STORE: pathToFileURL(storeDir).href,
        ARBOR_SERVE_HOST: "127.0.0.1",
        ARBOR_SERVE_PORT: "0",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const stderr = new Response(proc.stderr).text();
    const reader = proc.stdout.getReader();
    let out = "";
    while (!/"port":\d+/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the image's CMD exited: ${await stderr}`);
      out += new TextDecoder().decode(value);
    }
    const port = Number(/"port":(\d+)/.exec(out)?.[1]);
    const res = await fetch(`http://127.0.0.1:${port}/v1/models/m:predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[0.5, 1, 2, 3, 4, 5]] }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { version: number }).version).toBe(1);
    // Explain runs on the explain thread, whose entry must load from the image's files too.
    const explained = await fetch(`http://127.0.0.1:${port}/v1/models/m:explain`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [[0.5, 1, 2, 3, 4, 5]] }),
    });
    expect(explained.status).toBe(200);
    expect(((await explained.json()) as { explanations: unknown[] }).explanations.length).toBe(1);

    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const health = Bun.spawnSync(spec.healthcheck, {
      env: { PATH: process.env.PATH ?? "", ARBOR_SERVE_PORT: String(port) },
    });
    expect(health.exitCode).toBe(0);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    // And the HEALTHCHECK fails once nothing answers.
    const down = Bun.spawnSync(spec.healthcheck, {
      env: { PATH: process.env.PATH ?? "", ARBOR_SERVE_PORT: String(port) },
    });
    expect(down.exitCode).toBe(1);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}, 60_000);
