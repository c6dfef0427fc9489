/**
 * What a process holds on its clients' behalf, all connections together, so that slow or hostile
 * clients cannot fill its memory: request bytes it has taken in but not yet handled (HTTP bodies
 * while they arrive, stream messages parked by backpressure), and reply bytes its clients have not
 * read yet (HTTP replies being written, stream replies in the send buffer or held in order).
 */
import type { Counter, Gauge } from "prom-client";
import type { Logger } from "../../shared/logger.ts";

/**
 * Request bytes held, bounded by ARBOR_SERVE_BODY_BUDGET_BYTES: what does not fit is refused
 * (503 SERVER_BUSY) rather than kept.
 */
export class RequestBytes {
  readonly limit: number;
  readonly #gauge: Gauge<never>;
  #held = 0;

  constructor(limit: number, gauge: Gauge<never>) {
    this.limit = limit;
    this.#gauge = gauge;
  }

  /** Take `size` bytes if they fit (true), else nothing (false). */
  take(size: number): boolean {
    if (this.#held + size > this.limit) return false;
    this.#held += size;
    this.#gauge.set(this.#held);
    return true;
  }

  /** Give back `size` bytes taken earlier. */
  give(size: number): void {
    if (size === 0) return;
    this.#held -= size;
    this.#gauge.set(this.#held);
  }
}

/**
 * A connection with replies its client has not read: an HTTP reply being written, a stream's send
 * buffer and the replies it holds in order behind an explain.
 */
export interface ReplyHolder {
  /** For the log line when it is closed. */
  readonly requestId: string;
  /** Bytes of its replies not yet handed to the kernel. */
  unsent(): number;
  /** Close the connection now, dropping what is unsent. */
  drop(): void;
}

/**
 * Reply bytes held for clients that have not read them, bounded by ARBOR_SERVE_REPLY_BUDGET_BYTES.
 * A reply is computed before anyone knows whether its client reads, so the bound is kept by
 * closing connections: past the budget, those that have waited longest on their clients are closed
 * until the rest fit. A client that reads keeps its connection; one that stalled goes first.
 */
export class ReplyBacklog {
  readonly limit: number;
  /** Holders with unsent bytes, as last noted; a Map keeps insertion order, so oldest first. */
  readonly #holders = new Map<ReplyHolder, number>();
  #total = 0;
  readonly #gauge: Gauge<never>;
  readonly #closed: Counter<never>;
  readonly #logger: Logger;

  constructor(limit: number, gauge: Gauge<never>, closed: Counter<never>, logger: Logger) {
    this.limit = limit;
    this.#gauge = gauge;
    this.#closed = closed;
    this.#logger = logger;
  }

  /** `holder` now has `unsent` bytes not handed to the kernel (0: all sent, or it closed). */
  note(holder: ReplyHolder, unsent: number): void {
    const was = this.#holders.get(holder);
    if (unsent <= 0) {
      if (was === undefined) return;
      this.#holders.delete(holder);
      this.#total -= was;
    } else {
      this.#holders.set(holder, unsent);
      this.#total += unsent - (was ?? 0);
    }
    if (this.#total > this.limit) this.#shed();
    this.#gauge.set(this.#total);
  }

  /**
   * Re-read every holder's count (a send buffer can drain without an event that noted it) and
   * return the exact total.
   */
  recount(): number {
    let total = 0;
    for (const [h, was] of this.#holders) {
      const now = h.unsent();
      if (now <= 0) this.#holders.delete(h);
      else {
        if (now !== was) this.#holders.set(h, now);
        total += now;
      }
    }
    this.#total = total;
    this.#gauge.set(total);
    return total;
  }

  /**
   * Close the longest-waiting holders until the rest fit the budget. The sockets are closed from
   * the next check phase, not inside the uWS callback (a cork, a writable event) that noted the
   * bytes; they leave the count now.
   */
  #shed(): void {
    let total = this.recount();
    const victims: ReplyHolder[] = [];
    for (const [h, unsent] of this.#holders) {
      if (total <= this.limit) break;
      // A holder closed is not counted again: its close callback notes 0, which finds it gone.
      this.#holders.delete(h);
      total -= unsent;
      victims.push(h);
      this.#closed.inc();
      this.#logger.warn(
        { request_id: h.requestId, unsent, held: total + unsent, limit: this.limit },
        "closing a connection whose client does not read its replies (ARBOR_SERVE_REPLY_BUDGET_BYTES)",
      );
    }
    this.#total = total;
    if (victims.length > 0)
      setImmediate(() => {
        for (const h of victims) h.drop();
      });
  }
}
