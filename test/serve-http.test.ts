/**
 * HTTP details of the serve tier over raw and fetch sockets: content negotiation (case, q-values),
 * percent-encoded paths, 405 with Allow, 426 on the stream route without an upgrade, bodies over
 * the limit (413 after the body, or at once and closing; never read on for ever), deeply nested JSON refused
 * before parsing, explicit versions of unknown models, and HTTP/1.1 pipelining: GET routes, and
 * POST routes when micro-batching is off (with batching on, uWebSockets.js closes a connection that
 * pipelines behind a pending reply; see the README).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pack, unpack } from "msgpackr";
import type { ArtifactStore } from "../registry/store/artifact-store.ts";
import { openArtifactStore } from "../registry/store/open.ts";
import { pointLabel, publishFixture, type ServeProcess, startServe } from "./serve-fixtures.ts";

const MAX_BODY = 64 * 1024;
let dir: string;
let store: ArtifactStore;
let server: ServeProcess;
let unbatched: ServeProcess;

const ROW = { f0: 1, f1: 2, f2: "c1", f3: 0.5, f4: -1, f5: 3 };
const BODY = JSON.stringify({ instances: [ROW] });

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "arbor-serve-http-"));
  store = await openArtifactStore(pathToFileURL(dir).href);
  const f = await publishFixture(store, {
    name: "flights",
    version: 1,
    task: "binary",
    numFeatures: 6,
    numTrees: 10,
    depth: 3,
    seed: 11,
    categories: [0, 0, 4],
  });
  await pointLabel(store, "flights", "production", 1, f.manifestSha256);
  const args = ["--store", pathToFileURL(dir).href, "--workers", "1"];
  [server, unbatched] = await Promise.all([
    startServe(args, { ARBOR_SERVE_MAX_BODY_BYTES: String(MAX_BODY) }),
    startServe([...args, "--no-batching"]),
  ]);
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  expect(await unbatched?.stop()).toBe(0);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Write `data` on a fresh connection; collect what comes back until the server closes or `ms` pass. */
function raw(
  port: number,
  data: string | Uint8Array,
  ms = 1500,
): Promise<{ text: string; closed: boolean; bytesWritten: number }> {
  return new Promise((resolve) => {
    let text = "";
    let closed = false;
    const s = net.connect(port, "127.0.0.1", () => s.write(data));
    s.on("data", (d) => {
      text += d.toString("latin1");
    });
    s.on("error", () => {});
    const done = () => resolve({ text, closed, bytesWritten: s.bytesWritten });
    s.on("close", () => {
      closed = true;
      clearTimeout(timer);
      done();
    });
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, ms);
  });
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

const JSON_TYPE = { "content-type": "application/json" };

/** POST to `route` on the batching server; the reply decoded by its content type. */
async function post(
  route: string,
  headers: Record<string, string> = JSON_TYPE,
  body: string | Uint8Array = BODY,
) {
  const res = await fetch(`${server.url}${route}`, { method: "POST", headers, body });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const ctype = res.headers.get("content-type") ?? "";
  const value = ctype.includes("msgpack") ? unpack(bytes) : JSON.parse(new TextDecoder().decode(bytes));
  return { status: res.status, ctype, value };
}

const predict = (headers: Record<string, string>, body: string | Uint8Array = BODY) =>
  post("/v1/models/flights:predict", headers, body);

describe("serve: content negotiation", () => {
  test("Accept q-values and case decide the reply format; the request's format otherwise", async () => {
    const json = JSON_TYPE;
    expect((await predict({ ...json, accept: "application/msgpack;q=0, application/json" })).ctype).toBe(
      "application/json",
    );
    expect((await predict({ ...json, accept: "application/json;q=0.4, application/msgpack" })).ctype).toBe(
      "application/msgpack",
    );
    expect((await predict({ ...json, accept: "APPLICATION/MSGPACK" })).ctype).toBe("application/msgpack");
    expect((await predict({ ...json, accept: "text/html, */*;q=0.1" })).ctype).toBe("application/json");
    // A msgpack request with its media type in odd case, no Accept: the reply is msgpack too.
    const m = await predict({ "content-type": "Application/MsgPack" }, pack({ instances: [ROW] }));
    expect(m.status).toBe(200);
    expect(m.ctype).toBe("application/msgpack");
    expect(m.value.predictions.length).toBe(1);
    // An unsupported media type is refused in JSON, whatever its name contains.
    const bad = await predict({ "content-type": "text/x-msgpack" }, BODY);
    expect(bad.status).toBe(415);
    expect(bad.ctype).toBe("application/json");
    expect(bad.value.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("serve: paths and methods", () => {
  test("percent-encoded paths route as their decoded form; an encoded slash does not add a level", async () => {
    const expected = (await post("/v1/models/flights:predict")).value;
    for (const p of [
      "/v1/models/flights%3Apredict",
      "/v1/models/fl%69ghts:predict",
      "/v1/%6Dodels/flights:predict",
    ]) {
      const res = await post(p);
      expect(res.status).toBe(200);
      expect(res.value).toEqual(expected);
    }
    const slash = await post("/v1/models/flights%2Fversions%2F1:predict");
    expect(slash.status).toBe(404);
    expect(slash.value.error.code).toBe("MODEL_NOT_FOUND");
    const malformed = await post("/v1/models/flights%ZZ:predict");
    expect(malformed.status).toBe(404);
  });

  test("405 names the allowed methods (Allow); GET /v1/stream without an upgrade is 426", async () => {
    const get = await fetch(`${server.url}/v1/models/flights:predict`);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const post = await fetch(`${server.url}/healthz`, { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    const v2 = await fetch(`${server.url}/v2/models/flights/infer`, { method: "DELETE" });
    expect(v2.status).toBe(405);
    expect(v2.headers.get("allow")).toBe("POST");
    const stream = await fetch(`${server.url}/v1/stream`);
    expect(stream.status).toBe(426);
    expect(stream.headers.get("upgrade")).toBe("websocket");
    expect(((await stream.json()) as { error: { code: string } }).error.code).toBe("UPGRADE_REQUIRED");
  });

  test("an explicit version of a model the store does not have is MODEL_NOT_FOUND, of one it has VERSION_NOT_FOUND", async () => {
    for (let i = 0; i < 2; i++) {
      // The second round is answered from the remembered miss.
      const a = await post("/v1/models/nope/versions/1:predict");
      expect(a.status).toBe(404);
      expect(a.value.error.code).toBe("MODEL_NOT_FOUND");
      const b = await post("/v1/models/flights/versions/9:predict");
      expect(b.status).toBe(404);
      expect(b.value.error.code).toBe("VERSION_NOT_FOUND");
    }
  });
});

describe("serve: refused bodies", () => {
  const head = (extra: string) =>
    `POST /v1/models/flights:predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n${extra}\r\n`;
  const chunked = (total: number) => {
    const chunk = `4000\r\n${"[".repeat(0x4000)}\r\n`;
    return `${head("Transfer-Encoding: chunked\r\n")}${chunk.repeat(Math.ceil(total / 0x4000))}0\r\n\r\n`;
  };
  const healthz = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";

  test("a body over the limit is read to its end, then answered 413 on a connection that stays usable", async () => {
    const declared = MAX_BODY + 10_000;
    const byLength = await raw(
      server.port,
      `${head(`Content-Length: ${declared}\r\n`)}${"x".repeat(declared)}${healthz}`,
      800,
    );
    expect(statuses(byLength.text)).toEqual([413, 200]);
    expect(byLength.text).toContain("PAYLOAD_TOO_LARGE");
    expect(byLength.closed).toBe(false);
    const byChunks = await raw(server.port, chunked(MAX_BODY * 2) + healthz, 800);
    expect(statuses(byChunks.text)).toEqual([413, 200]);
    expect(byChunks.closed).toBe(false);
  });

  test("far over the limit, it is answered 413 at once and the connection closed", async () => {
    const big = await raw(server.port, `${head("Content-Length: 50000000\r\n")}{"instances":`);
    expect(statuses(big.text)).toEqual([413]);
    expect(big.text).toContain("ARBOR_SERVE_MAX_BODY_BYTES");
    expect(big.closed).toBe(true);
  });

  test("an endless chunked body is not read on for ever: the connection is closed", async () => {
    const port = server.port;
    const result = await new Promise<{ closed: boolean; sent: number }>((resolve) => {
      let sent = 0;
      const s = net.connect(port, "127.0.0.1", () => {
        s.write(head("Transfer-Encoding: chunked\r\n"));
        const chunk = `4000\r\n${"[".repeat(0x4000)}\r\n`;
        const pump = () => {
          while (sent < 256 * 1024 * 1024 && !s.destroyed) {
            sent += 0x4000;
            if (!s.write(chunk)) {
              s.once("drain", pump);
              return;
            }
          }
        };
        pump();
      });
      s.on("error", () => {});
      s.on("close", () => resolve({ closed: true, sent }));
      setTimeout(() => {
        s.destroy();
        resolve({ closed: false, sent });
      }, 10_000);
    });
    expect(result.closed).toBe(true);
    expect(result.sent).toBeLessThan(64 * 1024 * 1024);
    expect((await predict(JSON_TYPE)).status).toBe(200);
  }, 20_000);

  test("JSON nested thousands of levels deep is refused (400) before parsing; the server keeps serving", async () => {
    const depth = 30_000;
    const body = `{"instances":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    expect(body.length).toBeLessThan(MAX_BODY);
    const r = await predict(JSON_TYPE, body);
    expect(r.status).toBe(400);
    expect(r.value.error.code).toBe("MALFORMED_BODY");
    expect(r.value.error.message).toContain("nested deeper than 64");
    // Brackets inside strings do not count; a normal body of the same size is parsed.
    const padded = JSON.stringify({ instances: [{ ...ROW, f2: `${"[".repeat(20_000)}` }] });
    const p = await predict(JSON_TYPE, padded);
    expect(p.status).toBe(200);
    expect((await predict(JSON_TYPE)).status).toBe(200);
  });
});

describe("serve: the process's budget of bodies being read", () => {
  /** A POST of `body` whose first `first` bytes are sent now, the rest by `finish()`. */
  function partial(port: number, body: string, first: number) {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    let text = "";
    s.on("data", (d) => {
      text += d.toString("latin1");
    });
    const head = `POST /v1/models/flights:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    s.write(head + body.slice(0, first));
    let sent = first;
    return {
      /** Send the body up to byte `upTo`. */
      more: (upTo: number) => {
        s.write(body.slice(sent, upTo));
        sent = upTo;
      },
      finish: async () => {
        s.write(body.slice(sent));
        for (let i = 0; i < 400 && !/\r\n\r\n\{/.test(text); i++) await Bun.sleep(10);
        s.destroy();
        return { status: statuses(text)[0], text };
      },
      abort: () => s.destroy(),
    };
  }

  test("past ARBOR_SERVE_BODY_BUDGET_BYTES a body is read through and answered 503 SERVER_BUSY with Retry-After; bytes count as they arrive; finished and aborted bodies give them back", async () => {
    const budgeted = await startServe(["--store", pathToFileURL(dir).href, "--workers", "1"], {
      ARBOR_SERVE_MAX_BODY_BYTES: String(1024 * 1024),
      ARBOR_SERVE_BODY_BUDGET_BYTES: String(2 * 1024 * 1024),
    });
    try {
      const held = async () => {
        const text = await (await fetch(`${budgeted.url}/metrics`)).text();
        return Number(/^arbor_serve_request_body_bytes_held(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1]);
      };
      const until = async (atLeast: number) => {
        for (let i = 0; i < 500 && (await held()) < atLeast; i++) await Bun.sleep(10);
        expect(await held()).toBeGreaterThanOrEqual(atLeast);
      };
      // Valid predict bodies of 900,000 bytes (whitespace after the JSON), 800,000 sent at first.
      const body = BODY + " ".repeat(900_000 - BODY.length);
      // Bytes count as they arrive, not as announced: a client that sends headers and a few bytes
      // of a big body holds only those (reserving its Content-Length would refuse b below).
      const slow = partial(budgeted.port, body, 20);
      const a = partial(budgeted.port, body, 800_000);
      const b = partial(budgeted.port, body, 800_000);
      await until(1_500_000);
      // A third one fits at first (400,000 bytes), not once it sends more: refused then, its bytes
      // dropped, and answered once its body has been read.
      const c = partial(budgeted.port, body, 400_000);
      await until(1_900_000);
      c.more(800_000);
      for (let i = 0; i < 500 && (await held()) > 1_700_000; i++) await Bun.sleep(10);
      expect(await held()).toBeLessThanOrEqual(1_700_000);
      const refused = await c.finish();
      expect(refused.status).toBe(503);
      expect(refused.text).toContain('"SERVER_BUSY"');
      expect(refused.text.toLowerCase()).toContain("retry-after: 1");
      expect((await a.finish()).status).toBe(200);
      expect((await b.finish()).status).toBe(200);
      slow.abort();
      for (let i = 0; i < 200 && (await held()) > 0; i++) await Bun.sleep(10);
      expect(await held()).toBe(0);
      // A client that leaves mid-body gives its bytes back too.
      const d = partial(budgeted.port, body, 800_000);
      await until(500_000);
      d.abort();
      for (let i = 0; i < 200 && (await held()) > 0; i++) await Bun.sleep(10);
      expect(await held()).toBe(0);
      const [e, f] = [partial(budgeted.port, body, 800_000), partial(budgeted.port, body, 800_000)];
      await until(1_500_000);
      expect((await e.finish()).status).toBe(200);
      expect((await f.finish()).status).toBe(200);
    } finally {
      expect(await budgeted.stop()).toBe(0);
    }
  }, 60_000);
});

describe("serve: HEAD", () => {
  test("a HEAD reply has the GET reply's headers and length, no body, and keeps the connection usable", async () => {
    const port = server.port;
    const text = await new Promise<string>((resolve) => {
      let out = "";
      const s = net.connect(port, "127.0.0.1", async () => {
        s.write("HEAD /v1/models/flights HTTP/1.1\r\nHost: a\r\n\r\n");
        await Bun.sleep(100);
        s.write("GET /v1/models/flights HTTP/1.1\r\nHost: a\r\n\r\n");
        await Bun.sleep(300);
        s.destroy();
        resolve(out);
      });
      s.on("data", (d) => {
        out += d.toString("latin1");
      });
      s.on("error", () => {});
    });
    expect(statuses(text)).toEqual([200, 200]);
    const [head, get] = text.split(/(?=HTTP\/1\.1 )/);
    const length = (r: string) => Number(/content-length: (\d+)/i.exec(r)?.[1]);
    expect(length(head)).toBeGreaterThan(100);
    expect(head.endsWith("\r\n\r\n")).toBe(true);
    expect(length(get)).toBe(length(head));
    expect(get.split("\r\n\r\n")[1].length).toBe(length(head));
  });
});

describe("serve: HTTP/1.1 pipelining", () => {
  test("pipelined GETs are answered in order on one connection", async () => {
    const req = (p: string) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`;
    const r = await raw(server.port, req("/healthz") + req("/v1/models/nope") + req("/readyz"), 800);
    expect(statuses(r.text)).toEqual([200, 404, 200]);
    expect(r.closed).toBe(false);
  });

  test("with micro-batching off, pipelined predicts are answered in order on one connection", async () => {
    const one = `POST /v1/models/flights:predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;
    const bad = `POST /v1/models/flights:predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{oops`;
    const r = await raw(unbatched.port, one + bad + one, 800);
    expect(statuses(r.text)).toEqual([200, 400, 200]);
    expect(r.closed).toBe(false);
  });
});
