/**
 * Label pointer files (`models/{name}/labels/{label}.json`) and the label history. The pointer is
 * what serve replicas follow; the registry writes it inside the database transaction that moves
 * the label, and puts the previous pointer back if that transaction does not commit.
 */
import { decodeLabelPointer, type LabelPointer } from "../shared/bundle.ts";
import { isArborError } from "../shared/errors.ts";
import type { ArtifactStore, Generation, VersionedObject } from "./store/artifact-store.ts";

/** What a pointer write replaced, so that it can be undone. */
export interface PointerWrite {
  key: string;
  previous: VersionedObject | null;
  /** Generation of the pointer this write produced. */
  generation: Generation;
}

/** Read a pointer with its generation, or null when there is none. */
export async function readPointerObject(store: ArtifactStore, key: string): Promise<VersionedObject | null> {
  try {
    return await store.read(key);
  } catch (e) {
    if (isArborError(e, "STORE_NOT_FOUND")) return null;
    throw e;
  }
}

/** Parse pointer bytes; null when they are not a valid pointer. */
export function parsePointer(data: Uint8Array): LabelPointer | null {
  try {
    return decodeLabelPointer(data, "");
  } catch {
    return null;
  }
}

/**
 * Write a pointer with compare-and-swap. Callers hold the label's row lock, so a lost race means
 * a writer outside the registry; re-read and retry a few times rather than fail the promotion.
 */
export async function writePointer(
  store: ArtifactStore,
  key: string,
  pointer: LabelPointer,
): Promise<PointerWrite> {
  const body = `${JSON.stringify(pointer, null, 2)}\n`;
  let previous = await readPointerObject(store, key);
  for (let attempt = 0; ; attempt++) {
    try {
      const written = await store.compareAndSwap(key, body, previous?.generation ?? null);
      return { key, previous, generation: written.generation };
    } catch (e) {
      if (isArborError(e, "STORE_PRECONDITION_FAILED") && attempt < 4) {
        previous = await readPointerObject(store, key);
        continue;
      }
      // A write can land although it reported failure (a lost response): undo it before failing.
      const now = await readPointerObject(store, key).catch(() => null);
      if (now && new TextDecoder().decode(now.data) === body) {
        await restorePointer(store, { key, previous, generation: now.generation }).catch(() => {});
      }
      throw e;
    }
  }
}

/** Put back what {@link writePointer} replaced, unless someone has written the pointer since. */
export async function restorePointer(store: ArtifactStore, write: PointerWrite): Promise<void> {
  if (write.previous) {
    try {
      await store.compareAndSwap(write.key, write.previous.data, write.generation);
    } catch (e) {
      // The label's row lock is gone once the transaction ended: a newer promotion may have
      // written the pointer since, and its pointer is the right one to keep.
      if (!isArborError(e, "STORE_PRECONDITION_FAILED")) throw e;
    }
    return;
  }
  const now = await store.stat(write.key);
  if (now && now.generation === write.generation) await store.delete(write.key);
}

/** One label move from the audit trail. */
export interface LabelMove {
  action: "promote" | "rollback";
  toVersion: number;
}

/**
 * Replay a label's history as a stack (a promotion pushes, a rollback pops back to its target)
 * and return the versions below the current one, nearest first: the rollback candidates.
 * Rolling back twice after promoting 1, 2, 3 goes 3 → 2 → 1, not 3 → 2 → 3.
 */
export function rollbackCandidates(history: readonly LabelMove[]): number[] {
  const stack: number[] = [];
  for (const move of history) {
    if (move.action === "promote") {
      if (stack[stack.length - 1] !== move.toVersion) stack.push(move.toVersion);
      continue;
    }
    while (stack.length > 0 && stack[stack.length - 1] !== move.toVersion) stack.pop();
    if (stack.length === 0) stack.push(move.toVersion);
  }
  return stack.slice(0, -1).reverse();
}
