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
import { pointLabel, publishFixture, startServe } from "./serve-fixtures.ts";

const ROOT = path.join(import.meta.dir, "..");

/** A store folder with a small regression model "c", version 1 labelled production. */
async function publishModelC(dir: string): Promise<void> {
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
}

/** Read the server's stdout until its listening line; its text so far and the port. */
async function listening(proc: {
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array>;
}): Promise<{ out: string; port: number }> {
  const reader = proc.stdout.getReader();
  let out = "";
  while (!/"port":\d+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`arbor serve exited: ${await new Response(proc.stderr).text()}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { out, port: Number(/"port":(\d+)/.exec(out)![1]) };
}

test("arbor serve: bad flags exit 2 with a code; the default cluster (one process per core) stops on SIGTERM with exit 0", async () => {
  const bad = Bun.spawnSync(["bun", "train/cli.ts", "serve", "--port", "99999"], {
    cwd: ROOT,
    stderr: "pipe",
  });
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toContain("INVALID_ARGUMENT");
  // Integers are decimal (Number() would read 0x50 as port 80).
  const hex = Bun.spawnSync(["bun", "train/cli.ts", "serve", "--port", "0x50"], {
    cwd: ROOT,
    stderr: "pipe",
  });
  expect(hex.exitCode).toBe(2);
  expect(hex.stderr.toString()).toContain("INVALID_ARGUMENT");

  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cli-"));
  try {
    await publishModelC(dir);
    const proc = Bun.spawn(
      ["bun", "train/cli.ts", "serve", "--host", "127.0.0.1", "--port", "0", "--store", dir],
      // A DATABASE_URL meant for other commands: the server reads only the store, so it starts.
      { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, DATABASE_URL: "mysql://x" } },
    );
    const { out, port } = await listening(proc);
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

test("a SIGTERM to the shell that `npx arbor` runs the launcher under still stops the server gracefully", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cli-"));
  try {
    await publishModelC(dir);
    // As `npm exec` does: a shell between the caller and the launcher, which dies of the signal
    // without passing it on; npm marks its children with npm_command=exec.
    const proc = Bun.spawn(
      [
        "sh",
        "-c",
        `node train/bin/arbor.mjs serve --host 127.0.0.1 --port 0 --workers 1 --store ${dir}; true`,
      ],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, npm_command: "exec" } },
    );
    const { port } = await listening(proc);
    proc.kill("SIGTERM");
    await proc.exited;
    // The launcher and the server keep the stderr pipe open until they exit.
    const logs = await new Response(proc.stderr).text();
    expect(logs).toContain('"signal":"SIGTERM"');
    expect(logs).toContain('"msg":"stopped"');
    const refused = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      () => false,
      () => true,
    );
    expect(refused).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("cluster: /metrics gathers every worker; a worker that dies is replaced; the port keeps answering; SIGTERM still exits 0", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cluster-"));
  const server = await startServe(["--store", pathToFileURL(dir).href, "--workers", "2"]);
  try {
    const pidOf = async () => {
      const res = await fetch(`${server.url}/version`, { headers: { connection: "close" } });
      return ((await res.json()) as { pid: number }).pid;
    };
    const pids = new Set<number>();
    for (let i = 0; i < 50 && pids.size < 2; i++) pids.add(await pidOf());
    expect(pids.size).toBe(2);
    // One scrape, whichever worker answers it, shows every worker's requests.
    for (let i = 0; i < 4; i++) {
      const text = await (await fetch(`${server.url}/metrics`, { headers: { connection: "close" } })).text();
      for (const w of ["0", "1"])
        expect(text).toMatch(
          new RegExp(`arbor_serve_requests_total\\{route="/version"[^}]*worker="${w}"\\} [1-9]`),
        );
    }
    const victim = [...pids][0];
    process.kill(victim, "SIGKILL");
    const end = Date.now() + 30_000;
    while (!server.logs().includes("starting a replacement") && Date.now() < end) await Bun.sleep(50);
    expect(server.logs()).toContain("starting a replacement");
    // Both the survivor and, once it listens, the replacement answer on the same port.
    const seen = new Set<number>();
    while (seen.size < 2 && Date.now() < end) {
      const pid = await pidOf().catch(() => 0);
      if (pid !== 0 && pid !== victim) seen.add(pid);
    }
    expect(seen.size).toBe(2);
  } finally {
    expect(await server.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("cluster: SIGTERM while a replacement worker is still starting exits 0", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cluster-"));
  const server = await startServe(["--store", pathToFileURL(dir).href, "--workers", "2"]);
  try {
    const res = await fetch(`${server.url}/version`, { headers: { connection: "close" } });
    process.kill(((await res.json()) as { pid: number }).pid, "SIGKILL");
    const end = Date.now() + 30_000;
    while (!server.logs().includes("starting a replacement") && Date.now() < end) await Bun.sleep(5);
    expect(server.logs()).toContain("starting a replacement");
  } finally {
    // The replacement is loading its modules now: its signal handlers must already be there.
    expect(await server.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("arbor serve takes host, port and labels from ARBOR_SERVE_* when no flag is given", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cli-"));
  try {
    await publishModelC(dir);
    const proc = Bun.spawn(["bun", "train/cli.ts", "serve", "--workers", "1", "--store", dir], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
      env: {
        ...process.env,
        ARBOR_SERVE_HOST: "127.0.0.1",
        ARBOR_SERVE_PORT: "0",
        ARBOR_SERVE_LABELS: "staging,production",
      },
    });
    const { out, port } = await listening(proc);
    expect(out).toContain('"host":"127.0.0.1"');
    const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models/c`)).json()) as {
      labels: Record<string, unknown>;
    };
    expect(Object.keys(models.labels).sort()).toEqual(["production", "staging"]);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("serve refuses bad settings before listening: exit code and a stable code, no stack", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-cli-"));
  try {
    await publishModelC(dir);
    const serve = (args: string[], env: Record<string, string> = {}) => {
      const r = Bun.spawnSync(["node", "--import", "tsx", "serve/main.ts", "--workers", "1", ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
        stdout: "pipe",
        stderr: "pipe",
        timeout: 30_000,
      });
      const fatal = r.stderr
        .toString()
        .split("\n")
        .find((l) => l.includes('"level":"fatal"'));
      return {
        exitCode: r.exitCode,
        code: fatal === undefined ? "" : JSON.parse(fatal).code,
        stderr: r.stderr.toString(),
      };
    };
    const store = ["--store", dir, "--host", "127.0.0.1"];
    expect(serve([...store, "--bogus", "1"])).toMatchObject({ exitCode: 2, code: "INVALID_ARGUMENT" });
    expect(serve([...store, "--wokers", "1"]).stderr).toContain("did you mean --workers?");
    expect(serve([...store, "--port", ""])).toMatchObject({ exitCode: 2, code: "INVALID_CONFIG" });
    expect(serve([...store, "--port", "0x50"])).toMatchObject({ exitCode: 2, code: "INVALID_CONFIG" });
    expect(serve([...store, "--labels", ","])).toMatchObject({ exitCode: 2, code: "INVALID_CONFIG" });
    expect(serve(store, { ARBOR_SERVE_POLL_MS: "3000000000" })).toMatchObject({
      exitCode: 2,
      code: "INVALID_CONFIG",
    });
    // A body budget smaller than the largest body could never take one.
    expect(serve(store, { ARBOR_SERVE_BODY_BUDGET_BYTES: "1000" })).toMatchObject({
      exitCode: 2,
      code: "INVALID_CONFIG",
    });
    expect(serve(store, { ARBOR_SERVE_WS_MAX_PAYLOAD_BYTES: "1073741824" })).toMatchObject({
      exitCode: 2,
      code: "INVALID_CONFIG",
    });
    const typo = serve(["--store", path.join(dir, "typo")]);
    expect(typo).toMatchObject({ exitCode: 2, code: "STORE_NOT_FOUND" });
    // The fatal line says what to do.
    expect(JSON.parse(typo.stderr.trim().split("\n").at(-1) ?? "").hint).toMatch(/\w+/);
    expect(serve(["--store", "file://host/srv/store"])).toMatchObject({ exitCode: 2, code: "STORE_BAD_URI" });
    // With several workers the primary exits with the failing worker's code.
    const cluster = serve(["--store", path.join(dir, "typo"), "--workers", "2"]);
    expect(cluster.exitCode).toBe(2);
    expect(cluster.stderr).toContain("STORE_NOT_FOUND");
    // A port another server holds: refused, not shared (uSockets binds with SO_REUSEPORT).
    const first = Bun.spawn(
      ["node", "--import", "tsx", "serve/main.ts", "--workers", "1", "--port", "0", ...store],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    const { port } = await listening(first);
    try {
      const second = serve([...store, "--port", String(port)]);
      expect(second).toMatchObject({ exitCode: 1, code: "LISTEN_FAILED" });
      expect(second.stderr).not.toContain("    at ");
    } finally {
      first.kill("SIGTERM");
      await first.exited;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
