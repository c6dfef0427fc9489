/**
 * Follow label pointers: poll the store every `pollIntervalMs` (works for gs://, whose stat carries
 * the object generation), and on file:// stores also watch the folders where pointers live, so a
 * promotion is seen within milliseconds; polling stays on as the fallback (fs.watch can miss events
 * on network filesystems).
 *
 * The watches are non-recursive and per folder: the store root (for `models/` appearing),
 * `models/` (model folders appearing or going), each `models/{name}/` (its `labels/` folder
 * appearing) and each `models/{name}/labels/` (pointers written, renamed into place or deleted):
 * 2 + 2 × models inotify watches, however many versions the store holds. (Node 20's recursive
 * fs.watch on Linux walks the tree and holds one inotify watch per file and folder: 7,516 for a
 * store of 1,500 versions, in every worker, against a host-wide limit.) Folders created later are
 * watched when their parent reports them, folders removed lose their watch, and hitting the watch
 * limit turns watching off: polling only, with a log line.
 */
import { type FSWatcher, watch } from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { INTERNAL_PREFIX } from "../../registry/store/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ModelCache } from "./cache.ts";

/** Ticks between store listings that discover new models. */
const DISCOVER_EVERY = 5;

/** How the follower watches one folder: fs.watch, non-recursive (a test may count or refuse). */
export type WatchFolder = (dir: string, listener: (event: string, file: string | null) => void) => FSWatcher;

const watchFolder: WatchFolder = (dir, listener) =>
  watch(dir, { persistent: false }, (event, file) => listener(event, file === null ? null : String(file)));

/** What a watched folder is to the follower. */
type FolderKind = "root" | "models" | "model" | "labels";

interface Watched {
  watcher: FSWatcher;
  /** Inode of the folder watched: a folder removed and made again under the same name is a new one. */
  ino: bigint;
}

/**
 * Runs `task` one at a time: a call while it runs asks for one more run after it (however many
 * calls came), while `more()` allows. A failing run is logged; the next call tries again.
 */
class OneAtATime {
  #running: Promise<void> | null = null;
  #again = false;
  readonly #task: () => Promise<void>;
  readonly #more: () => boolean;
  readonly #failed: (e: Error) => void;

  constructor(task: () => Promise<void>, more: () => boolean, failed: (e: Error) => void) {
    this.#task = task;
    this.#more = more;
    this.#failed = failed;
  }

  /** The run under way, if any. */
  get running(): Promise<void> | null {
    return this.#running;
  }

  run(): Promise<void> {
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await this.#task();
        } catch (e) {
          this.#failed(e as Error);
        }
      } while (this.#again && this.#more());
      this.#running = null;
    })();
    return this.#running;
  }
}

/** Runs {@link ModelCache.refresh} on a timer and on file events; never two at once. */
export class LabelFollower {
  readonly #cache: ModelCache;
  readonly #logger: Logger;
  readonly #watchFolder: WatchFolder;
  #timer: NodeJS.Timeout | null = null;
  /** Watched folders by path; empty when not watching. */
  readonly #watched = new Map<string, Watched>();
  /** Store folder, while watching is on. */
  #root: string | null = null;
  /** Watches made to match the folders (see {@link #syncOnce}). */
  readonly #syncs = new OneAtATime(
    () => this.#syncOnce(),
    () => !this.#stopped && this.#root !== null,
    (e) => this.#logger.warn({ err: e.message }, "checking the watched folders failed; will retry"),
  );
  /** Label refreshes. */
  readonly #refreshes = new OneAtATime(
    () => {
      const discover = this.#discover;
      this.#discover = false;
      return this.#cache.refresh(discover);
    },
    () => !this.#stopped,
    (e) => this.#logger.warn({ err: e.message }, "label refresh failed; will retry"),
  );
  #discover = false;
  #stopped = false;

  constructor(cache: ModelCache, logger: Logger, watchFn: WatchFolder = watchFolder) {
    this.#cache = cache;
    this.#logger = logger;
    this.#watchFolder = watchFn;
  }

  /** Watches held now (one inotify watch each on Linux). */
  get watchCount(): number {
    return this.#watched.size;
  }

  /** The watches (if any), then the first refresh (awaited), then the timer. */
  async start(storeUri: string, pollIntervalMs: number, useWatch: boolean): Promise<void> {
    // Watches first: a pointer written after a folder is watched is an event, one written before is
    // found by the refresh that follows.
    if (useWatch && storeUri.startsWith("file://")) {
      this.#root = fileURLToPath(storeUri);
      await this.#sync();
      if (this.#root !== null) {
        this.#logger.info(
          { dir: path.join(this.#root, "models"), watches: this.#watched.size },
          "watching label pointers",
        );
      }
    }
    await this.trigger();
    // Every tick stats the known pointers; every DISCOVER_EVERY-th tick also lists the label
    // pointers for new models and checks the watched folders. File events always rediscover.
    let tick = 0;
    this.#timer = setInterval(() => {
      const discover = ++tick % DISCOVER_EVERY === 0;
      if (discover && this.#root !== null) void this.#sync();
      void this.trigger(discover);
    }, pollIntervalMs);
    this.#timer.unref();
  }

  /**
   * Make the watches match the folders: the root, `models/`, every model folder and every
   * `labels/` folder there now; close the watches of folders gone (or replaced). Never two at once.
   */
  #sync(): Promise<void> {
    return this.#syncs.run();
  }

  async #syncOnce(): Promise<void> {
    const root = this.#root;
    if (root === null || this.#stopped) return;
    const want = new Map<string, { kind: FolderKind; ino: bigint }>();
    const dirIno = async (dir: string): Promise<bigint | null> => {
      const s = await fsp.stat(dir, { bigint: true }).catch(() => null);
      return s?.isDirectory() ? s.ino : null;
    };
    const rootIno = await dirIno(root);
    if (rootIno !== null) want.set(root, { kind: "root", ino: rootIno });
    const models = path.join(root, "models");
    const modelsIno = await dirIno(models);
    if (modelsIno !== null) {
      want.set(models, { kind: "models", ino: modelsIno });
      const entries = await fsp.readdir(models, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (!entry.isDirectory() || entry.name.startsWith(INTERNAL_PREFIX)) continue;
        const model = path.join(models, entry.name);
        const modelIno = await dirIno(model);
        if (modelIno === null) continue;
        want.set(model, { kind: "model", ino: modelIno });
        const labels = path.join(model, "labels");
        const labelsIno = await dirIno(labels);
        if (labelsIno !== null) want.set(labels, { kind: "labels", ino: labelsIno });
      }
    }
    if (this.#root === null || this.#stopped) return; // stopped, or watching given up, meanwhile
    for (const [dir, w] of this.#watched) {
      if (want.get(dir)?.ino !== w.ino) this.#unwatch(dir);
    }
    for (const [dir, { kind, ino }] of want) {
      if (this.#watched.has(dir)) continue;
      if (!this.#add(dir, kind, ino)) return;
    }
  }

  /** Watch one folder; false when watching had to be given up. */
  #add(dir: string, kind: FolderKind, ino: bigint): boolean {
    let watcher: FSWatcher;
    try {
      watcher = this.#watchFolder(dir, (_event, file) => this.#onEvent(dir, kind, file));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return true; // gone since the check: next sync
      this.#giveUp(dir, e as Error, code === "ENOSPC" || code === "EMFILE" ? "limit" : "error");
      return false;
    }
    watcher.on("error", (e) => this.#giveUp(dir, e, "error"));
    this.#watched.set(dir, { watcher, ino });
    return true;
  }

  #unwatch(dir: string): void {
    this.#watched.get(dir)?.watcher.close();
    this.#watched.delete(dir);
  }

  /** Close every watch and poll only (the inotify watch limit reached, or a watch failing). */
  #giveUp(dir: string, e: Error, why: "limit" | "error"): void {
    if (this.#root === null) return;
    this.#logger.warn(
      { dir, err: e.message, watches: this.#watched.size },
      why === "limit"
        ? "file watch limit reached (fs.inotify.max_user_watches); polling only"
        : "file watch failed; polling only",
    );
    this.#root = null;
    for (const dir of [...this.#watched.keys()]) this.#unwatch(dir);
  }

  #onEvent(dir: string, kind: FolderKind, file: string | null): void {
    if (this.#stopped || this.#root === null) return;
    // An event named after the watched folder itself is its removal (inotify's IN_DELETE_SELF, as
    // libuv reports it): that watch is dead; the next sync watches a folder made again there.
    const self = file !== null && file === path.basename(dir);
    if (kind === "labels" && !self) {
      // Pointers are renamed or linked into place; temp and lock files are the store's own.
      if (file === null || (file.endsWith(".json") && !file.startsWith(INTERNAL_PREFIX)))
        void this.trigger(true);
      return;
    }
    if (kind === "model" && !self && file !== null && file !== "labels") return; // a version folder
    if (kind === "root" && !self && file !== null && file !== "models") return;
    if (self) this.#unwatch(dir);
    // A folder came or went: watch what is there now, then look for pointers that were written
    // before their folder was watched (and for pointers gone with a removed folder).
    void this.#sync().then(() => this.trigger(true));
  }

  /** Refresh now; if a refresh is running, run one more after it. */
  trigger(discover = true): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#discover ||= discover;
    return this.#refreshes.run();
  }

  /**
   * Stop the timer and the watches. Resolves when a refresh under way has finished: closing the
   * cache or the store under it would leave a freshly loaded session pinned to a label nobody
   * releases, and log the closed store as a failed update.
   */
  stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#root = null;
    for (const dir of [...this.#watched.keys()]) this.#unwatch(dir);
    return this.#refreshes.running ?? Promise.resolve();
  }
}
