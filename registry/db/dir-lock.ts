/**
 * A lock file next to the embedded database. PGlite has no lock of its own and two processes
 * writing one data directory corrupt it. The lock holds the owner's pid and, on Linux, the
 * process start time, so that a stale lock is recognised even when its pid has been reused (a
 * container restarted with a persistent volume runs arbor under the same small pid again).
 */
import { closeSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { arborError } from "../../shared/errors.ts";

/** Lock files this process holds (a second open in-process is refused, not taken over). */
const HELD = new Set<string>();

interface Owner {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks since boot), or null where there is no /proc. */
  start: string | null;
}

/** Take the lock or throw DB_LOCKED naming the holder; returns the release function. */
export function acquireDirLock(lockPath: string, dataDir: string): () => void {
  if (HELD.has(lockPath)) {
    throw arborError("DB_LOCKED", `open registry: this process already has ${dataDir} open`);
  }
  const me: Owner = { pid: process.pid, start: startTime(process.pid) };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // Written aside and hard-linked into place, so the lock never exists without its owner.
      const tmp = `${lockPath}.${process.pid}`;
      const fd = openSync(tmp, "w");
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      try {
        linkSync(tmp, lockPath);
      } finally {
        unlinkSync(tmp);
      }
      HELD.add(lockPath);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        HELD.delete(lockPath);
        try {
          unlinkSync(lockPath);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw arborError("DB_UNAVAILABLE", `open registry: cannot create ${lockPath}: ${String(e)}`, {
          cause: e,
        });
      }
    }
    const owner = readOwner(lockPath);
    if (owner !== null && owner.pid !== process.pid && isRunning(owner)) {
      throw arborError(
        "DB_LOCKED",
        `open registry: the embedded database ${dataDir} is in use by process ${owner.pid}`,
        { details: { pid: owner.pid, lock: lockPath } },
      );
    }
    // Stale: its process is gone (or it is an earlier life of our own pid). Take it over.
    try {
      unlinkSync(lockPath);
    } catch {
      // someone else took it over first; retry
    }
  }
  throw arborError("DB_LOCKED", `open registry: could not take the lock ${lockPath}`);
}

function readOwner(lockPath: string): Owner | null {
  let text: string;
  try {
    text = readFileSync(lockPath, "utf8").trim();
  } catch {
    return null;
  }
  try {
    const parsed = JSON.parse(text) as Partial<Owner>;
    if (Number.isInteger(parsed.pid) && (parsed.pid as number) > 0) {
      return { pid: parsed.pid as number, start: typeof parsed.start === "string" ? parsed.start : null };
    }
  } catch {
    // an older lock with a bare pid
  }
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? { pid, start: null } : null;
}

function isRunning(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (owner.start === null) return true;
  const now = startTime(owner.pid);
  return now === null || now === owner.start;
}

function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces; fields after it start past the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null;
  } catch {
    return null;
  }
}
