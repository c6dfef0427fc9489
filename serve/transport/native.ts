/**
 * Load uWebSockets.js and refuse the slow path. The 20.30 build we install silently falls back to
 * a JavaScript implementation on top of `ws` when its native binary does not load (wrong Node ABI,
 * Bun); that fallback is an order of magnitude slower and would quietly break the latency budget,
 * so the server must not start on it.
 */

import type * as UwsModule from "uWebSockets.js";
import { createRequire } from "node:module";
import { arborError } from "../../shared/errors.ts";

/** The uWebSockets.js module type. */
export type Uws = typeof UwsModule;

/** True when `mod` is the native addon, not the `ws`-based fallback. */
function isNativeUws(mod: unknown): boolean {
  if (mod === null || typeof mod !== "object") return false;
  const m = mod as Record<string, unknown>;
  // The fallback exports only App/_cfg/us_listen_socket_close/us_socket_local_port; the addon's
  // functions are native code and it also exports getParts and the compressor constants.
  return (
    typeof m["App"] === "function" &&
    typeof m["getParts"] === "function" &&
    String(m["App"]).includes("[native code]")
  );
}

/** Load uWebSockets.js, throwing INTERNAL with a clear message when only the fallback loads. */
export function loadNativeUws(): Uws {
  const require = createRequire(import.meta.url);
  // The package warns on stderr with console.warn/console.log when it falls back; silence that
  // so our own single JSON error line is what the operator sees.
  const warn = console.warn;
  const log = console.log;
  let fallbackNote = "";
  console.warn = (...a: unknown[]) => {
    fallbackNote += a.map(String).join(" ");
  };
  console.log = console.warn;
  let mod: unknown;
  try {
    mod = require("uWebSockets.js");
  } finally {
    console.warn = warn;
    console.log = log;
  }
  if (!isNativeUws(mod)) {
    throw arborError(
      "INTERNAL",
      `uWebSockets.js: the native binary did not load (node ${process.versions.node}, ABI ${process.versions.modules}, ${process.platform}-${process.arch}); refusing to start on the slow JavaScript fallback. Run the server with Node.js 20 (ABI 115) on linux-x64, and unset UWS_USE_FALLBACK. ${fallbackNote.trim().split("\n")[0] ?? ""}`,
    );
  }
  return mod as Uws;
}
