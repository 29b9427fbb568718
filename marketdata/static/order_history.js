// The account's order history, from the REST API's signed `GET /api/v3/allOrders`
// (PROTOCOL.md section D): the latest orders of one market, open and closed,
// newest first. The page asks again when the market changes and, shortly after,
// when one of the account's orders ends (a final execution report), so the list
// follows the websocket without polling.
// The request is signed in the page like the gateway logon (hmac.js); the secret
// stays inside the signer closure and only the api key travels, in X-MBX-APIKEY.

import { makeSigner } from "./hmac.js";

export const HISTORY_LIMIT = 50;
const REFRESH_DELAY_MS = 250; // coalesces the reports of one burst into one request
const RETRIES = 5; // the database may be a moment behind the websocket: ask again, doubling

/** REST statuses that show an order in this websocket status (section D, "Names"). */
const REST_STATUSES = {
  new: ["NEW"], partially_filled: ["PARTIALLY_FILLED"], filled: ["FILLED"],
  canceled: ["CANCELED"], expired: ["EXPIRED", "EXPIRED_IN_MATCH"], rejected: ["REJECTED"],
};

/** `BTC-USD` -> `BTCUSD`, the REST symbol (section D, "Names"). */
export function restSymbol(symbol) {
  return symbol.replace("-", "");
}

const SEQ_BITS = 14n;
const SHARD_BITS = 8n;
const EPOCH_MS = 1577836800000n;

/** The streamex order id ("<ms>-<n>[-K]") of a REST orderId given as a decimal string. */
export function streamexOrderId(number) {
  const x = BigInt(number);
  const shard = x & ((1n << SHARD_BITS) - 1n);
  const n = (x >> SHARD_BITS) & ((1n << SEQ_BITS) - 1n);
  const ms = (x >> (SEQ_BITS + SHARD_BITS)) + EPOCH_MS;
  return shard === 0n ? `${ms}-${n}` : `${ms}-${n}-${shard}`;
}

/** JSON text -> value, with `orderId` integers kept exact as strings (they pass 2**53). */
export function parseOrders(text) {
  return JSON.parse(text.replace(/"orderId":\s*(\d+)/g, '"orderId":"$1"'));
}

export class OrderHistory {
  /** `onChange()` is called whenever `orders`, `state` or `error` changed. */
  constructor(onChange) {
    this.onChange = onChange;
    this.orders = []; // allOrders items, newest first, with `streamexId` added
    this.symbol = null;
    this.state = "off"; // off | loading | ok | error
    this.error = null; // {code, msg} of the last failed request
    this._apiUrl = null;
    this._apiKey = null;
    this._sign = null;
    this._request = 0; // answers of older requests are dropped
    this._timer = null;
    this._expected = new Map(); // streamex order id -> REST statuses its last report implies
    this._retries = 0;
  }

  /** True between `start` and `stop` (an account is logged on). */
  get active() {
    return this._sign !== null;
  }

  /** Start following `symbol` for the account of `apiKey` on the REST API at `apiUrl`. */
  async start(apiUrl, apiKey, secret, symbol) {
    this._apiUrl = apiUrl.replace(/\/+$/, "");
    this._apiKey = apiKey;
    this._sign = await makeSigner(secret);
    this.select(symbol);
  }

  /** Forget the account (log off): no more requests, an empty list. */
  stop() {
    clearTimeout(this._timer);
    this._request += 1;
    this._sign = null;
    this._apiKey = null;
    this.orders = [];
    this.state = "off";
    this.error = null;
    this.onChange();
  }

  /** Show `symbol`'s orders (now). */
  select(symbol) {
    this.symbol = symbol;
    this.orders = [];
    this._expected.clear();
    this.refresh();
  }

  /** An execution report of the account arrived: ask again shortly, and again (a few
   * times, backing off) until the list shows the order in the report's status. */
  expect(report) {
    if (!this._sign || report.symbol !== this.symbol) return;
    const statuses = REST_STATUSES[report.status];
    if (statuses && report.exec_type !== "rejected" && report.exec_type !== "cancel_rejected") {
      this._expected.set(report.order_id, statuses);
    }
    this._retries = 0;
    this.refreshSoon();
  }

  /** Ask again after a short delay (`delayMs`). */
  refreshSoon(delayMs = REFRESH_DELAY_MS) {
    if (!this._sign) return;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.refresh(), delayMs);
  }

  /** Ask for the latest orders of the selected market now. */
  async refresh() {
    clearTimeout(this._timer);
    const sign = this._sign;
    if (!sign || !this.symbol) return;
    const request = ++this._request;
    this.state = "loading";
    this.onChange();
    const query = `symbol=${restSymbol(this.symbol)}&limit=${HISTORY_LIMIT}`
      + `&timestamp=${Date.now()}`;
    try {
      const signature = await sign(query);
      const response = await fetch(`${this._apiUrl}/api/v3/allOrders?${query}&signature=${signature}`,
        { headers: { "X-MBX-APIKEY": this._apiKey }, cache: "no-store" });
      const text = await response.text();
      if (request !== this._request) return;
      let body = null;
      try {
        body = parseOrders(text);
      } catch {
        if (response.ok) throw new Error("the answer is not JSON");
      }
      if (!response.ok) {
        this._fail(body && body.code != null ? String(body.code) : `HTTP ${response.status}`,
          (body && body.msg) || response.statusText);
        return;
      }
      this.orders = body.reverse().map((o) => ({ ...o, streamexId: streamexOrderId(o.orderId) }));
      this.state = "ok";
      this.error = null;
      this._settle();
    } catch (err) {
      if (request !== this._request) return;
      this._fail("UNREACHABLE", `the REST API at ${this._apiUrl} did not answer (${err.message})`);
      return;
    }
    this.onChange();
  }

  /** Drop the expectations the list meets; ask again later for the others. */
  _settle() {
    const shown = new Map(this.orders.map((o) => [o.streamexId, o.status]));
    for (const [id, statuses] of this._expected) {
      if (statuses.includes(shown.get(id))) this._expected.delete(id);
    }
    if (!this._expected.size) return;
    if (this._retries >= RETRIES) {
      this._expected.clear(); // older than the latest HISTORY_LIMIT, or history is stuck
      return;
    }
    this.refreshSoon(REFRESH_DELAY_MS * 2 ** this._retries);
    this._retries += 1;
  }

  _fail(code, msg) {
    this.state = "error";
    this.error = { code, msg };
    this.onChange();
  }
}
