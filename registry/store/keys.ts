/**
 * Validation of object keys and prefixes, shared by every ArtifactStore so that a key valid on
 * `file://` is valid on `gs://` and the other way round, plus the few rules both stores must apply
 * identically (listing order, what deletePrefix refuses, whose error a failed upload stream is).
 */
import type { Readable } from "node:stream";
import { arborError } from "../../shared/errors.ts";

/** Segments starting with this belong to the store itself (temp files, locks) and are never keys. */
export const INTERNAL_PREFIX = ".arbor-";

const MAX_KEY_BYTES = 1000; // GCS allows 1024 bytes per object name; leave room for the store prefix.

// Control characters are refused: GCS rejects some, and they make file names unprintable.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkSegments(value: string, what: string, op: string, allowTrailingSlash: boolean): void {
  if (value.startsWith("/")) {
    throw arborError("INVALID_ARGUMENT", `${op}: ${what} '${value}' must be relative (no leading '/')`);
  }
  if (value.includes("\\")) {
    throw arborError("INVALID_ARGUMENT", `${op}: ${what} '${value}' must use '/' (no '\\')`);
  }
  if (CONTROL.test(value)) {
    throw arborError(
      "INVALID_ARGUMENT",
      `${op}: ${what} ${JSON.stringify(value)} contains control characters`,
    );
  }
  if (Buffer.byteLength(value, "utf8") > MAX_KEY_BYTES) {
    throw arborError("INVALID_ARGUMENT", `${op}: ${what} is longer than ${MAX_KEY_BYTES} bytes`);
  }
  const segments = value.split("/");
  if (allowTrailingSlash && segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  for (const s of segments) {
    if (s === "") throw arborError("INVALID_ARGUMENT", `${op}: ${what} '${value}' has an empty segment`);
    if (s === "." || s === "..") {
      throw arborError("INVALID_ARGUMENT", `${op}: ${what} '${value}' must not contain '.' or '..' segments`);
    }
    if (s.startsWith(INTERNAL_PREFIX)) {
      throw arborError(
        "INVALID_ARGUMENT",
        `${op}: ${what} '${value}' uses the reserved segment prefix '${INTERNAL_PREFIX}'`,
      );
    }
  }
}

/** Throw INVALID_ARGUMENT unless `key` names an object: relative, '/'-separated, no empty/'.'/'..' segments. */
export function assertKey(key: unknown, op: string): asserts key is string {
  if (typeof key !== "string" || key.length === 0) {
    throw arborError("INVALID_ARGUMENT", `${op}: key must be a non-empty string`);
  }
  checkSegments(key, "key", op, false);
}

/** Throw INVALID_ARGUMENT unless `prefix` is "" or a key-like string (a trailing '/' is allowed). */
export function assertPrefix(prefix: unknown, op: string): asserts prefix is string {
  if (typeof prefix !== "string") throw arborError("INVALID_ARGUMENT", `${op}: prefix must be a string`);
  if (prefix.length === 0) return;
  checkSegments(prefix, "prefix", op, true);
}

/** True when a listed path (relative to the root) is a store-internal file, not an object. */
export function isInternalPath(relative: string): boolean {
  for (const s of relative.split("/")) if (s.startsWith(INTERNAL_PREFIX)) return true;
  return false;
}

/** assertPrefix, and refuse "" too: deleting everything under it would empty the store. */
export function assertDeletePrefix(prefix: unknown, op: string): asserts prefix is string {
  assertPrefix(prefix, op);
  if (prefix === "") {
    throw arborError("INVALID_ARGUMENT", `${op}: prefix must not be empty (that would empty the store)`);
  }
}

/** Key order of `list` on every store: UTF-16 code units (GCS's byte order for ASCII keys). */
export function compareKeys(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * Whether `e` is the failure of the caller's own body stream. That is the caller's error, not the
 * store's, so `put` passes it on as is instead of wrapping it in a store code.
 */
export function isBodyStreamError(body: Readable | Uint8Array | string, e: unknown): boolean {
  return typeof body === "object" && !(body instanceof Uint8Array) && body.errored === e;
}

/** One segment of a `listMatching` pattern: a literal name, or a test for names where `*` stood. */
export type PatternSegment = { literal: string } | { match: RegExp };

/**
 * Check a `listMatching` pattern and split it into segments: key-like ('/'-separated, no empty,
 * '.' or '..' segments), where `*` stands for any run of characters other than '/' and every other
 * character is literal. `**` is refused (on GCS it would cross '/'; no store walks the tree for it).
 */
export function parsePattern(pattern: unknown, op: string): PatternSegment[] {
  if (typeof pattern !== "string" || pattern.length === 0) {
    throw arborError("INVALID_ARGUMENT", `${op}: pattern must be a non-empty string`);
  }
  checkSegments(pattern, "pattern", op, false);
  if (pattern.includes("**")) {
    throw arborError("INVALID_ARGUMENT", `${op}: pattern '${pattern}' must not contain '**'`);
  }
  return pattern
    .split("/")
    .map((s) =>
      s.includes("*")
        ? { match: new RegExp(`^${s.split("*").map(escapeRegExp).join("[^/]*")}$`, "s") }
        : { literal: s },
    );
}

/** A RegExp matching whole keys (or object names) against a pattern checked by {@link parsePattern}. */
export function patternRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split("*").map(escapeRegExp).join("[^/]*")}$`, "s");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
