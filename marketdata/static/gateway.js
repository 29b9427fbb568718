// The order-entry client: one websocket to the gateway, logon signed in the
// page, request/reply by id, execution reports, the account's open orders
// (from `orders.open` after logon, then kept current by execution reports)
// and, under the risk stage, its balances (from `account.balances` after
// logon, then kept current by `balances` pushes). Whether the risk stage is
// on is learnt from that request: `risk` is true once `account.balances`
// answered, false when the gateway does not know the method (risk off), null
// while unknown. After a dropped connection it reconnects with backoff and
// logs on again with the in-memory signer; the open orders and balances are
// then rebuilt from scratch (`orders.open`, `account.balances`), since the
// exchange may have restarted without them. While the session is down `down`
// is true and `openOrders` / `balances` are only the last known state. No
// DOM: `onChange(what)` is called with "state", "orders", "balances",
// "executions" or "error".

import { backoffDelay } from "./backoff.js";
import { logonParams, makeSigner } from "./hmac.js";

export const EXEC_LOG_LENGTH = 200;
// An untriggered stop or take-profit is open too: it waits off-book for its trigger.
const OPEN_STATUSES = new Set(["new", "partially_filled", "untriggered"]);
const REQUEST_TIMEOUT_MS = 10000;

/** The key of an order in `openOrders`: order ids are unique only within a market. */
export function orderKey(symbol, orderId) {
  return `${symbol} ${orderId}`;
}

export class GatewayError extends Error {
  constructor(code, message, method) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    this.method = method;
  }
}

export class GatewayClient {
  constructor(onChange) {
    this.onChange = onChange;
    this.url = null;
    this.ws = null;
    this.state = "disconnected"; // disconnected | connecting | connected | logged_on | reconnecting
    this.stateDetail = "";
    this.account = null;
    this.apiKey = null;
    this.cancelOnDisconnect = false;
    this._sign = null; // closure holding the secret; null when logged off
    // True from a successful logon until logoff (or a reconnect that cannot log on):
    // the user expects a live session, so any other state means it is down.
    this.session = false;
    this.openOrders = new Map(); // orderKey(symbol, order_id) -> latest report
    this.balances = new Map(); // asset -> {asset, available, held, ts}
    this.risk = null; // true: the risk stage is on (balances, quote_qty); false: off; null: unknown
    this.executions = []; // newest first
    this.errors = []; // newest first: {code, message, method, ts}
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, method, timer}
    this.attempt = 0;
    this._timer = null;
  }

  /**
   * Connect to `url` and log on with `apiKey` and `secret`. Resolves with the
   * logon result; rejects with a GatewayError (shown to the user too).
   */
  async logon(url, apiKey, secret, cancelOnDisconnect) {
    this.logoff();
    this.url = url;
    this.apiKey = apiKey;
    this.cancelOnDisconnect = cancelOnDisconnect;
    this._sign = await makeSigner(secret);
    return this._connectAndLogon(true);
  }

  /** True while a session the user logged on is not up (dropped, reconnecting, logging on). */
  get down() {
    return this.session && this.state !== "logged_on";
  }

  /** Close the session and forget the credentials. */
  logoff() {
    clearTimeout(this._timer);
    this.session = false;
    this._sign = null;
    this.apiKey = null;
    this.account = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "logoff");
    this._failPending("DISCONNECTED", "logged off");
    this.openOrders.clear();
    this._clearBalances();
    this._setState("disconnected", "");
    this.onChange("orders");
  }

  _clearBalances() {
    this.balances.clear();
    this.risk = null;
    this.onChange("balances");
  }

  place(params) {
    return this.request("order.place", params);
  }

  cancel(symbol, orderId) {
    return this.request("order.cancel", { symbol, order_id: orderId });
  }

  /**
   * Amend an open order: `changes` has `price`, `qty` (the new total quantity) and/or
   * `stop_price` (an untriggered stop's trigger).
   */
  amend(symbol, orderId, changes) {
    const params = { symbol, order_id: orderId };
    if (changes.price !== undefined) params.price = changes.price;
    if (changes.qty !== undefined) params.qty = changes.qty;
    if (changes.stop_price !== undefined) params.stop_price = changes.stop_price;
    return this.request("order.amend", params);
  }

  /** Cancel every open order of the account in market `symbol`, or in every market (null). */
  cancelAll(symbol) {
    return this.request("order.cancel_all", symbol ? { symbol } : {});
  }

  /**
   * Send one request; resolves with `result`, rejects with a GatewayError. An error
   * whose code is in the set `expected` is not listed as an error (the caller handles it).
   */
  request(method, params, expected = null) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(this._error("DISCONNECTED", "not connected to the gateway", method));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(this._error("TIMEOUT", `no reply to ${method} in ${REQUEST_TIMEOUT_MS / 1000} s`, method));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, method, timer, expected });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  _setState(state, detail) {
    this.state = state;
    this.stateDetail = detail;
    this.onChange("state");
  }

  _error(code, message, method) {
    const err = new GatewayError(code, message, method);
    this.errors.unshift({ code, message, method, ts: Date.now() });
    this.errors.length = Math.min(this.errors.length, 20);
    this.onChange("error");
    return err;
  }

  _failPending(code, message) {
    for (const { reject, method, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new GatewayError(code, message, method));
    }
    this.pending.clear();
  }

  /** Open a socket to `url`; a failure is listed as an error when `report` is set. */
  _open(url, report) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (err) {
        reject(this._error("CONNECT", `bad gateway URL ${url}: ${err.message}`, "connect"));
        return;
      }
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve(ws);
      };
      ws.onmessage = (event) => {
        if (ws === this.ws) this._handle(event.data);
      };
      ws.onclose = (event) => {
        if (!opened) {
          const message = `cannot connect to ${url} (${event.code})`;
          reject(report ? this._error("CONNECT", message, "connect")
            : new GatewayError("CONNECT", message, "connect"));
        }
        this._closed(ws, event.code, event.reason);
      };
    });
  }

  /** Connect and log on; `userInitiated` is false for the automatic reconnects. */
  async _connectAndLogon(userInitiated) {
    const sign = this._sign;
    this._setState(this.attempt ? "reconnecting" : "connecting", this.url);
    try {
      await this._open(this.url, userInitiated);
      this._setState("connected", "logging on");
      const params = await logonParams(this.apiKey, sign);
      if (this.cancelOnDisconnect) params.cancel_on_disconnect = true;
      const result = await this.request("logon", params);
      this.account = result.account;
      this.attempt = 0;
      this.session = true;
      // Whatever was open before (the exchange may have restarted): rebuilt from orders.open,
      // and the balances (and whether there are any: risk on or off) from account.balances.
      this.openOrders.clear();
      this._clearBalances();
      this.onChange("orders");
      this._setState("logged_on", result.account);
      const balances = this.refreshBalances();
      await this.refreshOpenOrders();
      await balances;
      return result;
    } catch (err) {
      // Wrong key or secret, or a gateway the user cannot reach at all: retrying cannot
      // help, so forget the credentials (a dropped session that was up keeps retrying).
      const code = err instanceof GatewayError ? err.code : "";
      if (code === "UNAUTHENTICATED" || (userInitiated && code === "CONNECT")) {
        clearTimeout(this._timer);
        this.attempt = 0;
        this._sign = null;
        this.session = false;
        const ws = this.ws;
        this.ws = null;
        if (ws) ws.close(1000, "logon failed");
        // Not logged on any more: the last known open orders cannot be trusted or acted on.
        this.openOrders.clear();
        this._clearBalances();
        this.onChange("orders");
        this._setState("disconnected", code === "CONNECT" ? "cannot connect" : "logon failed");
      }
      throw err;
    }
  }

  /** Replace the open-order table with the gateway's view (`orders.open`). */
  async refreshOpenOrders() {
    const result = await this.request("orders.open", {});
    this.openOrders.clear();
    for (const report of result.orders) {
      this.openOrders.set(orderKey(report.symbol, report.order_id), report);
    }
    this.onChange("orders");
  }

  /**
   * Replace the balances with the gateway's view (`account.balances`) and learn from
   * the answer whether the risk stage is on. Never rejects: a failure other than
   * UNKNOWN_METHOD (risk off) is listed as an error and leaves `risk` unknown.
   */
  async refreshBalances() {
    const ws = this.ws;
    let result;
    try {
      result = await this.request("account.balances", {}, new Set(["UNKNOWN_METHOD"]));
    } catch (err) {
      if (ws !== this.ws) return; // the connection went meanwhile: the next logon asks again
      if (err instanceof GatewayError && err.code === "UNKNOWN_METHOD") {
        this.balances.clear();
        this.risk = false;
        this.onChange("balances");
      }
      return;
    }
    if (ws !== this.ws) return;
    // The answer reflects every change this gateway had read when it was sent, so it
    // supersedes any push that came before it; pushes after it are newer.
    this.balances.clear();
    for (const b of result.balances) {
      this.balances.set(b.asset, { asset: b.asset, available: b.available, held: b.held, ts: null });
    }
    this.risk = true;
    this.onChange("balances");
  }

  _onBalance(data) {
    if (!data || typeof data.asset !== "string") return;
    this.balances.set(data.asset, {
      asset: data.asset, available: data.available, held: data.held, ts: data.ts ?? null,
    });
    this.risk = true; // only the risk stage pushes balances
    this.onChange("balances");
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.account = null;
    this._failPending("DISCONNECTED", `connection closed (${code})`);
    if (!this._sign) {
      this._setState("disconnected", "");
      return;
    }
    // Still logged on as far as the user is concerned: come back with backoff.
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this._setState("reconnecting", `closed (${code}${reason ? `: ${reason}` : ""}); attempt ${this.attempt} in ${(delay / 1000).toFixed(1)} s`);
    this._timer = setTimeout(() => {
      if (!this._sign) return;
      this._connectAndLogon(false).catch(() => {}); // the state line shows the outcome
    }, delay);
  }

  _handle(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this._error("BAD_FRAME", `gateway sent non-JSON: ${String(err)}`, "gateway");
      return;
    }
    if (msg.channel === "executions") {
      this._onExecution(msg.data);
      return;
    }
    if (msg.channel === "balances") {
      this._onBalance(msg.data);
      return;
    }
    if (msg.channel !== undefined) return;
    const entry = this.pending.get(msg.id);
    if (msg.error) {
      const method = entry ? entry.method : "gateway";
      const err = entry && entry.expected && entry.expected.has(msg.error.code)
        ? new GatewayError(msg.error.code, msg.error.message, method)
        : this._error(msg.error.code, msg.error.message, method);
      if (entry) {
        this.pending.delete(msg.id);
        clearTimeout(entry.timer);
        entry.reject(err);
      }
      return;
    }
    if (entry) {
      this.pending.delete(msg.id);
      clearTimeout(entry.timer);
      entry.resolve(msg.result);
    }
  }

  _onExecution(report) {
    this.executions.unshift(report);
    if (this.executions.length > EXEC_LOG_LENGTH) this.executions.length = EXEC_LOG_LENGTH;
    if (report.exec_type === "rejected" || report.exec_type === "cancel_rejected") {
      this._error(report.reason || "REJECTED", `${report.exec_type} order ${report.order_id}`, report.exec_type);
    }
    if (report.exec_type !== "cancel_rejected") {
      const key = orderKey(report.symbol, report.order_id);
      if (OPEN_STATUSES.has(report.status)) this.openOrders.set(key, report);
      else this.openOrders.delete(key);
      this.onChange("orders");
    }
    this.onChange("executions");
  }
}
