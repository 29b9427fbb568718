// The market-data client: one websocket to the feed, the `markets` list,
// book/trades/ticker/candles subscriptions for the selected market (candles of
// the selected interval), book verification (prev_seq chain and checksum) with
// resubscription on any gap or mismatch, and reconnection with backoff. While
// the socket is down `down` is true and the book, trades, ticker and candles
// are only the last known state; a new connection starts them from scratch
// (fresh snapshots: the trades and candles snapshots refill the tape and the
// chart), since the exchange may have restarted. No DOM: it calls
// `onChange(what)` after every applied message and the page renders at most
// once per frame.

import { backoffDelay } from "./backoff.js";
import { L2Book } from "./book.js";

export const BOOK_DEPTH = 25;
export const TAPE_LENGTH = 100;
export const INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"];
export const CANDLES_KEPT = 500; // the snapshot's 100, then the ones that open live
const STALE_MS = 5000; // the feed sends a heartbeat after 1 s of silence
const RESYNC_TIMEOUT_MS = 5000;

export class FeedClient {
  /**
   * `url` is the feed's websocket URL; `onChange(what)` is called with
   * "markets", "book", "trades", "ticker", "candles", "state" or "error".
   * `interval` is the candles' first interval.
   */
  constructor(url, onChange, interval = "1m") {
    this.url = url;
    this.onChange = onChange;
    this.ws = null;
    this.state = "disconnected"; // connecting | resyncing | live | disconnected | reconnecting
    this.stateDetail = "";
    this.markets = [];
    this.symbol = null;
    this.book = null;
    this.trades = []; // newest first
    this.lastTradeId = null;
    this.lastTradeSeq = -1;
    this.ticker = null;
    this.interval = INTERVALS.includes(interval) ? interval : "1m";
    this.candles = []; // of `interval`, oldest first, as the feed sends them
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map(); // id -> method
    this.lastMessageAt = 0;
    this.resyncStartedAt = 0;
    this.errors = []; // {code, message, method}
    this.stats = {
      messages: 0, bookMessages: 0, resyncs: 0, gaps: 0, checksumFailures: 0, reconnects: 0,
      handleMs: 0, // total time spent parsing, applying and verifying messages
    };
    this.stopped = false;
    this._timer = null;
    this._watchdog = setInterval(() => this._checkLiveness(), 1000);
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  /** Close for good (no reconnect). */
  stop() {
    this.stopped = true;
    clearTimeout(this._timer);
    clearInterval(this._watchdog);
    if (this.ws) this.ws.close();
    this._setState("disconnected", "stopped");
  }

  /** Switch to market `symbol`: unsubscribe the old one, subscribe the new. */
  select(symbol) {
    if (symbol === this.symbol) return;
    const old = this.symbol;
    this.symbol = symbol;
    this.book = new L2Book(symbol, BOOK_DEPTH);
    this.trades = [];
    this.lastTradeId = null;
    this.lastTradeSeq = -1;
    this.ticker = null;
    this.candles = [];
    if (this._open()) {
      if (old) {
        for (const channel of ["book", "trades", "ticker", "candles"]) {
          this._send("unsubscribe", this._params(channel, old));
        }
      }
      this._subscribeAll();
    }
    this.onChange("book");
    this.onChange("trades");
    this.onChange("ticker");
    this.onChange("candles");
  }

  /** Switch the candles to `interval` ("1m" ... "1d"): a new snapshot replaces them. */
  selectInterval(interval) {
    if (interval === this.interval || !INTERVALS.includes(interval)) return;
    const old = this.interval;
    this.interval = interval;
    this.candles = [];
    if (this._open() && this.symbol) {
      this._send("unsubscribe", { channel: "candles", symbol: this.symbol, interval: old });
      this._send("subscribe", this._params("candles", this.symbol));
    }
    this.onChange("candles");
  }

  market() {
    return this.markets.find((m) => m.symbol === this.symbol) || null;
  }

  /** True while there is no open connection to the feed (connecting, reconnecting, closed). */
  get down() {
    return this.state !== "live" && this.state !== "resyncing";
  }

  _params(channel, symbol) {
    if (channel === "book") return { channel, symbol, depth: BOOK_DEPTH };
    if (channel === "candles") return { channel, symbol, interval: this.interval };
    return { channel, symbol };
  }

  _open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  _send(method, params) {
    const id = this.nextId++;
    this.pending.set(id, method);
    this.ws.send(JSON.stringify({ id, method, params }));
    return id;
  }

  _setState(state, detail = "") {
    this.state = state;
    this.stateDetail = detail;
    this.onChange("state");
  }

  _connect() {
    clearTimeout(this._timer);
    this._setState(this.attempt ? "reconnecting" : "connecting", "opening");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._error("CONNECT", String(err), "connect");
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastMessageAt = Date.now();
      this.pending.clear();
      this._send("markets", {});
      if (this.symbol) {
        this._clearMarketData();
        this._subscribeAll();
      }
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.lastMessageAt = Date.now();
      const started = performance.now();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        this._error("BAD_FRAME", `not JSON: ${String(err)}`, "feed");
        return;
      }
      this._handle(msg);
      this.stats.handleMs += performance.now() - started;
    };
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
  }

  /** `ws` is gone (closed by the peer, the network or the watchdog): reconnect. */
  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    // The book, trades and ticker stay as the last known state (the page greys them
    // out); the next connection replaces them.
    if (this.stopped) return;
    this._setState("disconnected", `closed (${code}${reason ? `: ${reason}` : ""})`);
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this.stopped) return;
    this.attempt += 1;
    this.stats.reconnects += 1;
    const delay = backoffDelay(this.attempt);
    this._setState("reconnecting", `attempt ${this.attempt} in ${(delay / 1000).toFixed(1)} s`);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  /** Forget the market's trades, ticker and candles (a new connection: whatever the feed
   * says now). */
  _clearMarketData() {
    this.trades = [];
    this.lastTradeId = null; // trade ids restart when the exchange does
    this.lastTradeSeq = -1;
    this.ticker = null;
    this.candles = [];
    this.onChange("trades");
    this.onChange("ticker");
    this.onChange("candles");
  }

  _subscribeAll() {
    this.book = new L2Book(this.symbol, BOOK_DEPTH);
    this.resyncStartedAt = Date.now();
    this._setState("resyncing", "waiting for book snapshot");
    for (const channel of ["book", "trades", "ticker", "candles"]) {
      this._send("subscribe", this._params(channel, this.symbol));
    }
    this.onChange("book");
  }

  /** The book is out of step: drop it and ask the feed for a fresh snapshot. */
  _resync(reason, detail) {
    this.stats.resyncs += 1;
    if (reason === "gap") this.stats.gaps += 1;
    if (reason === "checksum") this.stats.checksumFailures += 1;
    this.book = new L2Book(this.symbol, BOOK_DEPTH);
    this.resyncStartedAt = Date.now();
    this._setState("resyncing", `${reason}: ${detail || ""}`.trim());
    if (this._open()) {
      this._send("unsubscribe", this._params("book", this.symbol));
      this._send("subscribe", this._params("book", this.symbol));
    }
    this.onChange("book");
  }

  _checkLiveness() {
    if (!this._open()) return;
    const now = Date.now();
    const stale = now - this.lastMessageAt > STALE_MS;
    const stuck = this.state === "resyncing" && now - this.resyncStartedAt > RESYNC_TIMEOUT_MS;
    if (stale || stuck) {
      // Neither data nor heartbeats (or no snapshot after resubscribing): start over.
      const ws = this.ws;
      const reason = stale ? "no data or heartbeat" : "no snapshot after resubscribing";
      ws.close(4000, "watchdog");
      this._closed(ws, 4000, reason);
    }
  }

  _error(code, message, method) {
    this.errors.unshift({ code, message, method, ts: Date.now() });
    this.errors.length = Math.min(this.errors.length, 20);
    this.onChange("error");
  }

  _handle(msg) {
    this.stats.messages += 1;
    if (msg.channel === undefined) {
      const method = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) {
        this._error(msg.error.code, msg.error.message, method || "feed");
      } else if (method === "markets" && msg.result) {
        this.markets = msg.result.markets;
        this.onChange("markets");
      }
      return;
    }
    if (msg.symbol !== undefined && msg.symbol !== this.symbol) return; // stale, old market
    switch (msg.channel) {
      case "book":
        this._onBook(msg);
        break;
      case "trades":
        this._onTrades(msg);
        break;
      case "ticker":
        this.ticker = msg;
        this.onChange("ticker");
        break;
      case "candles":
        this._onCandles(msg);
        break;
      default:
        break; // heartbeat and future channels: liveness only
    }
  }

  _onBook(msg) {
    this.stats.bookMessages += 1;
    const book = this.book;
    let result;
    if (msg.type === "snapshot") {
      result = book.applySnapshot(msg);
    } else if (!book.synced) {
      return; // resyncing: updates before the new snapshot are stale
    } else {
      result = book.applyUpdate(msg);
    }
    if (!result.ok) {
      this._resync(result.reason, result.detail);
      return;
    }
    if (this.state !== "live") {
      this.attempt = 0;
      this._setState("live", "");
    }
    this.onChange("book");
  }

  _onTrades(msg) {
    if (msg.type === "snapshot") {
      // The last trades, oldest first: the tape starts from them.
      this.trades = msg.data.slice(-TAPE_LENGTH).reverse();
      this.lastTradeId = msg.data.length ? msg.data[msg.data.length - 1].trade_id : null;
      this.lastTradeSeq = msg.seq;
      this.onChange("trades");
      return;
    }
    let added = false;
    for (const t of msg.data) {
      if (this.lastTradeId !== null && t.trade_id <= this.lastTradeId) continue;
      this.lastTradeId = t.trade_id;
      this.trades.unshift(t);
      added = true;
    }
    if (this.trades.length > TAPE_LENGTH) this.trades.length = TAPE_LENGTH;
    if (added) this.lastTradeSeq = msg.seq;
    if (added) this.onChange("trades");
  }

  /** A candles snapshot replaces the chart's candles; an update replaces or adds each
   * candle by its open_time (they come oldest first). */
  _onCandles(msg) {
    if (msg.interval !== this.interval) return; // of the interval just switched from
    if (msg.type === "snapshot") {
      this.candles = msg.data.slice();
    } else {
      const candles = this.candles;
      for (const c of msg.data) {
        let i = candles.length;
        while (i > 0 && candles[i - 1].open_time > c.open_time) i--;
        if (i > 0 && candles[i - 1].open_time === c.open_time) candles[i - 1] = c;
        else candles.splice(i, 0, c);
      }
      if (candles.length > CANDLES_KEPT) candles.splice(0, candles.length - CANDLES_KEPT);
    }
    this.onChange("candles");
  }
}
