/**
 * Follow label pointers: poll the store every `pollIntervalMs` (works for gs://, whose stat carries
 * the object generation), and on file:// stores also watch the models folder so a promotion is
 * seen within milliseconds; polling stays on as the fallback (fs.watch can miss events on network
 * filesystems and does not see folders created after it started).
 */
import { type FSWatcher, watch } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../../shared/logger.ts";
import type { ModelCache } from "./cache.ts";

/** Ticks between store listings that discover new models. */
const DISCOVER_EVERY = 5;

/** Runs {@link ModelCache.refresh} on a timer and on file events; never two at once. */
export class LabelFollower {
  readonly #cache: ModelCache;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | null = null;
  #watcher: FSWatcher | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #discover = false;
  #stopped = false;

  constructor(cache: ModelCache, logger: Logger) {
    this.#cache = cache;
    this.#logger = logger;
  }

  /** First refresh (awaited), then the timer and the watcher. */
  async start(storeUri: string, pollIntervalMs: number, useWatch: boolean): Promise<void> {
    await this.trigger();
    // Every tick stats the known pointers; every DISCOVER_EVERY-th tick also lists the store for
    // new models. File events always rediscover (a local listing is cheap).
    let tick = 0;
    this.#timer = setInterval(() => void this.trigger(++tick % DISCOVER_EVERY === 0), pollIntervalMs);
    this.#timer.unref();
    if (useWatch && storeUri.startsWith("file://")) this.#watch(path.join(fileURLToPath(storeUri), "models"));
  }

  #watch(dir: string): void {
    try {
      this.#watcher = watch(dir, { recursive: true, persistent: false }, (_event, file) => {
        if (file === null || String(file).includes("labels")) void this.trigger(true);
      });
      this.#watcher.on("error", (e) => {
        this.#logger.warn({ err: e.message, dir }, "file watch failed; polling only");
        this.#watcher?.close();
        this.#watcher = null;
      });
      this.#logger.info({ dir }, "watching label pointers");
    } catch (e) {
      this.#logger.info({ dir, err: (e as Error).message }, "cannot watch the models folder; polling only");
    }
  }

  /** Refresh now; if a refresh is running, run one more after it. */
  trigger(discover = true): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#discover ||= discover;
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          const discover = this.#discover;
          this.#discover = false;
          await this.#cache.refresh(discover);
        } catch (e) {
          this.#logger.warn({ err: (e as Error).message }, "label refresh failed; will retry");
        }
      } while (this.#again && !this.#stopped);
      this.#running = null;
    })();
    return this.#running;
  }

  /**
   * Stop the timer and the watcher. Resolves when a refresh under way has finished: closing the
   * cache or the store under it would leave a freshly loaded session pinned to a label nobody
   * releases, and log the closed store as a failed update.
   */
  stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#watcher?.close();
    return this.#running ?? Promise.resolve();
  }
}
