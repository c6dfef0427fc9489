/**
 * A lock file for FileArtifactStore.compareAndSwap: created with O_EXCL (`wx`), so one holder at a
 * time across processes on one machine (and on NFS v3+, where O_EXCL is atomic too). A lock whose
 * owner process is gone, or that is older than STALE_LOCK_MS, is broken so a crash never blocks a
 * key for good.
 */
import { randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { arborError } from "../../shared/errors.ts";

/** A compare-and-swap holds its lock for milliseconds; one this old belongs to a hung or dead process. */
const STALE_LOCK_MS = 30_000;
/** How long to wait for a lock before giving up with STORE_UNAVAILABLE. */
const LOCK_WAIT_MS = 20_000;

/** A held lock. */
export interface FileLock {
  /** Throw STORE_PRECONDITION_FAILED if a stale-lock breaker took the lock from us. */
  verify(): Promise<void>;
  /** Remove the lock file if it is still ours. */
  release(): Promise<void>;
}

/** The `code` of a Node.js system error (`ENOENT`, `EEXIST`, …); FileArtifactStore uses it too. */
export function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Take the lock at `lockPath` (its folder is created), waiting with jittered backoff; `what` names it in errors. */
export async function acquireLock(lockPath: string, what: string): Promise<FileLock> {
  const dir = path.dirname(lockPath);
  const token = randomBytes(12).toString("hex");
  const content = JSON.stringify({ pid: process.pid, host: os.hostname(), token, at: Date.now() });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let delay = 2;
  for (;;) {
    await fsp.mkdir(dir, { recursive: true });
    try {
      await fsp.writeFile(lockPath, content, { flag: "wx" });
      break;
    } catch (e) {
      // ENOENT: a concurrent delete pruned the folder; make it again.
      if (errno(e) !== "EEXIST" && errno(e) !== "ENOENT") throw e;
    }
    await breakIfStale(lockPath);
    if (Date.now() > deadline) {
      throw arborError(
        "STORE_UNAVAILABLE",
        `${what}: lock held by another writer for over ${LOCK_WAIT_MS} ms`,
      );
    }
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 50);
  }
  const ours = async () => (await fsp.readFile(lockPath, "utf8").catch(() => "")) === content;
  return {
    verify: async () => {
      if (!(await ours())) throw arborError("STORE_PRECONDITION_FAILED", `${what}: lost the lock; retry`);
    },
    release: async () => {
      if (await ours()) await fsp.rm(lockPath, { force: true }).catch(() => {});
    },
  };
}

async function breakIfStale(lockPath: string): Promise<void> {
  let raw: string;
  let mtimeMs: number;
  try {
    raw = await fsp.readFile(lockPath, "utf8");
    mtimeMs = (await fsp.stat(lockPath)).mtimeMs;
  } catch {
    return; // released meanwhile
  }
  let owner: { pid?: unknown; host?: unknown } = {};
  try {
    owner = JSON.parse(raw) as { pid?: unknown; host?: unknown };
  } catch {
    // Empty or half-written (its owner is between create and write, or died there): judged by age.
  }
  let dead = Date.now() - mtimeMs > STALE_LOCK_MS;
  if (!dead && owner.host === os.hostname() && typeof owner.pid === "number") {
    try {
      process.kill(owner.pid, 0);
    } catch (e) {
      dead = errno(e) === "ESRCH";
    }
  }
  if (!dead) return;
  // Move the stale lock aside (atomic); remove it only if it is still the one judged stale.
  const aside = `${lockPath}.${randomBytes(6).toString("hex")}`;
  try {
    await fsp.rename(lockPath, aside);
  } catch {
    return;
  }
  const moved = await fsp.readFile(aside, "utf8").catch(() => "");
  if (moved !== raw) {
    // We moved a fresh lock someone just took: put it back unless a newer one exists. Its owner's
    // verify() catches the rare case where that fails.
    await fsp.link(aside, lockPath).catch(() => {});
  }
  await fsp.rm(aside, { force: true }).catch(() => {});
}
