/**
 * HTTP plumbing of the control plane: a tiny router (method + path pattern), JSON responses,
 * errors as `{error: {code, message, details?}}` with the code's status, zod validation whose
 * messages name the field, and bearer-token checks in constant time.
 */
import { timingSafeEqual } from "node:crypto";
import type { z } from "zod";
import { type ArborError, arborError } from "../../shared/errors.ts";

/** What a handler gets. */
export interface RequestContext {
  req: Request;
  url: URL;
  params: Record<string, string>;
  requestId: string;
  /** The token's index in config.apiTokens (mutating routes), for logs. */
  actor: string;
}

/** A route. `mutating` routes need a bearer token. */
export interface Route {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  /** e.g. `/v1/splits/{id}` or `/v1/studies/{id}:cancel`; `{name}` matches one segment up to a '/' or ':'. */
  path: string;
  name: string;
  mutating: boolean;
  handler(ctx: RequestContext): Promise<Response>;
}

/** A compiled route table. */
export class Router {
  readonly #routes: { route: Route; re: RegExp; keys: string[] }[] = [];

  add(route: Route): this {
    const keys: string[] = [];
    const source = route.path
      .split(/(\{[a-zA-Z]+\})/)
      .map((part) => {
        const key = /^\{([a-zA-Z]+)\}$/.exec(part);
        if (key) {
          keys.push(key[1]);
          return "([^/:]+)";
        }
        return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      })
      .join("");
    const re = new RegExp(`^${source}$`);
    this.#routes.push({ route, re, keys });
    return this;
  }

  /** The route for a request, or why there is none. */
  match(
    method: string,
    pathname: string,
  ): { route: Route; params: Record<string, string> } | { error: ArborError } {
    let pathMatched = false;
    for (const { route, re, keys } of this.#routes) {
      const m = re.exec(pathname);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      const params: Record<string, string> = {};
      keys.forEach((k, i) => {
        params[k] = decodeURIComponent(m[i + 1]);
      });
      return { route, params };
    }
    return {
      error: pathMatched
        ? arborError("METHOD_NOT_ALLOWED", `${method} ${pathname}: method not allowed`)
        : arborError("ROUTE_NOT_FOUND", `${method} ${pathname}: no such route`),
    };
  }

  get routes(): readonly Route[] {
    return this.#routes.map((r) => r.route);
  }
}

/** A JSON response. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** The error body and status of an ArborError. */
export function errorResponse(err: ArborError): Response {
  return json(err.toJSON(), err.status);
}

/** Parse a JSON body and validate it; INVALID_ARGUMENT names every bad field (`body.trials: …`). */
export async function readBody<S extends z.ZodType>(req: Request, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  const text = await req.text();
  try {
    raw = text.length === 0 ? {} : JSON.parse(text);
  } catch (e) {
    throw arborError("MALFORMED_BODY", `body: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return validate(schema, raw, "body");
}

/** Validate a value; messages name the field under `where`. */
export function validate<S extends z.ZodType>(schema: S, raw: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${[where, ...i.path.map(String)].join(".")}: ${i.message}`);
  throw arborError("INVALID_ARGUMENT", problems.join("; "), { details: { problems } });
}

/** Index of the configured token the request carries, or -1. Compares in constant time. */
export function tokenIndex(header: string | null, tokens: readonly string[]): number {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (!m) return -1;
  const given = Buffer.from(m[1]);
  let found = -1;
  tokens.forEach((t, i) => {
    const want = Buffer.from(t);
    if (want.length === given.length && timingSafeEqual(want, given)) found = i;
  });
  return found;
}

/** `?limit=&offset=` with bounds. */
export function pagination(url: URL): { limit: number; offset: number } {
  const limit = Number(url.searchParams.get("limit") ?? 50);
  const offset = Number(url.searchParams.get("offset") ?? 0);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw arborError("INVALID_ARGUMENT", "query.limit: must be a whole number from 1 to 1000");
  }
  if (!Number.isInteger(offset) || offset < 0)
    throw arborError("INVALID_ARGUMENT", "query.offset: must be a whole number ≥ 0");
  return { limit, offset };
}

/** A page of items with the offset of the next page (null at the end). */
export function page<T>(
  items: T[],
  p: { limit: number; offset: number },
): { items: T[]; limit: number; offset: number; nextOffset: number | null } {
  return {
    items,
    limit: p.limit,
    offset: p.offset,
    nextOffset: items.length === p.limit ? p.offset + p.limit : null,
  };
}
