// The client-side L2 book of one market: applies the feed's snapshots and
// sequenced updates, checks prev_seq chaining and the CRC32 checksum.
// Pure logic, no DOM and no socket: the feed client drives it.

import { crc32 } from "./crc32.js";
import { compareDecimal, isZero } from "./decimal.js";

export const CHECKSUM_LEVELS = 10;

function checksumPart(s) {
  return s.replaceAll(".", "").replace(/^0+/, "");
}

/** The string the checksum covers: top 10 asks then top 10 bids, price then qty. */
export function checksumString(asks, bids) {
  let out = "";
  for (const levels of [asks, bids]) {
    const n = Math.min(levels.length, CHECKSUM_LEVELS);
    for (let i = 0; i < n; i++) {
      out += checksumPart(levels[i][0]) + checksumPart(levels[i][1]);
    }
  }
  return out;
}

/** Kraken v2 book checksum (unsigned zlib.crc32 of checksumString). */
export function bookChecksum(asks, bids) {
  return crc32(checksumString(asks, bids));
}

/**
 * Set one level of a side (best first) to an absolute qty; "0" deletes it.
 * Bids are `descending` (highest first), asks ascending. O(log n) search plus
 * the splice; sides are short (the subscribed depth).
 */
function setLevel(levels, price, qty, descending) {
  let lo = 0;
  let hi = levels.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareDecimal(levels[mid][0], price);
    const before = descending ? c > 0 : c < 0;
    if (before) lo = mid + 1;
    else hi = mid;
  }
  const found = lo < levels.length && compareDecimal(levels[lo][0], price) === 0;
  if (isZero(qty)) {
    if (found) levels.splice(lo, 1);
  } else if (found) {
    levels[lo] = [levels[lo][0], qty];
  } else {
    levels.splice(lo, 0, [price, qty]);
  }
}

function sorted(levels, descending) {
  const out = levels.filter(([, q]) => !isZero(q)).map(([p, q]) => [p, q]);
  out.sort((a, b) => (descending ? -1 : 1) * compareDecimal(a[0], b[0]));
  return out;
}

export class L2Book {
  /** An empty book that keeps at most `depth` levels per side. */
  constructor(symbol, depth) {
    this.symbol = symbol;
    this.depth = depth;
    this.bids = []; // [[price, qty]], best (highest) first
    this.asks = []; // [[price, qty]], best (lowest) first
    this.seq = null; // seq of the last applied book message; null until a snapshot
  }

  get synced() {
    return this.seq !== null;
  }

  /**
   * Replace the book with a snapshot message. Returns {ok: true} or
   * {ok: false, reason: "checksum"} (the book is then unsynced: resubscribe).
   */
  applySnapshot(msg) {
    this.bids = sorted(msg.bids, true).slice(0, this.depth);
    this.asks = sorted(msg.asks, false).slice(0, this.depth);
    this.seq = msg.seq;
    return this._verify(msg);
  }

  /**
   * Apply an update message. Returns {ok: true}, or {ok: false, reason} with
   * reason "unsynced" (no snapshot yet), "gap" (prev_seq is not our seq; the
   * update is not applied) or "checksum" (applied, but the result differs
   * from the server's book). On any failure the book becomes unsynced.
   */
  applyUpdate(msg) {
    if (this.seq === null) return { ok: false, reason: "unsynced" };
    if (msg.prev_seq !== this.seq) {
      const detail = `prev_seq ${msg.prev_seq} but last seq ${this.seq}`;
      this.seq = null;
      return { ok: false, reason: "gap", detail };
    }
    for (const [price, qty] of msg.bids) setLevel(this.bids, price, qty, true);
    for (const [price, qty] of msg.asks) setLevel(this.asks, price, qty, false);
    if (this.bids.length > this.depth) this.bids.length = this.depth;
    if (this.asks.length > this.depth) this.asks.length = this.depth;
    this.seq = msg.seq;
    return this._verify(msg);
  }

  _verify(msg) {
    const mine = bookChecksum(this.asks, this.bids);
    if (mine === msg.checksum) return { ok: true };
    this.seq = null;
    return { ok: false, reason: "checksum", detail: `checksum ${mine} != ${msg.checksum}` };
  }
}
