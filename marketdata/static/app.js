// The trading page: wires the feed and gateway clients to the DOM.
// Messages are applied as they arrive (feed.js, gateway.js); the DOM is
// redrawn at most once per animation frame, only the parts that changed.
// While either connection is down a banner says which one, the market data
// is greyed out and order entry (place, amend, cancel, cancel all) is off.
// Under the risk stage (learnt from `account.balances` answering, gateway.js)
// the Balances panel shows the account's balances and a market buy spends a
// quote amount (`quote_qty`); without it the panel is hidden and a market buy
// has a quantity, as any other order. The candle chart shows the feed's
// `candles` channel for the selected market and interval (`?interval=` keeps it),
// the ticker its rolling 24-hour fields. The Order history panel lists the
// account's latest orders of the selected market from the REST API
// (order_history.js; `?api=` sets its URL, by default port 8003 of this host).
// The ticket places every order type of the protocol: limit and market, stop
// and take-profit (a stop price; they wait "untriggered" in the open orders,
// off the book, until a trade prints through it), GTD (an expiry, local time)
// and icebergs (a display quantity, for the types with a limit price).

import { drawCandleChart } from "./candle_chart.js";
import { compareDecimal, decimalsOf, fromUnits, toUnits } from "./decimal.js";
import { drawDepthChart } from "./depth_chart.js";
import { FeedClient, INTERVALS } from "./feed.js";
import { GatewayClient, orderKey } from "./gateway.js";
import { OrderHistory } from "./order_history.js";

const LADDER_ROWS = 12;
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

const feedUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
const defaultGateway = query.get("gateway") || `ws://${location.hostname}:8001/`;
const defaultApi = query.get("api") || `http://${location.hostname}:8003/`;

// ---- render scheduling -------------------------------------------------------

const dirty = new Set();
let frameRequested = false;
const frameStats = { frames: 0 };

function invalidate(what) {
  dirty.add(what);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

const INTERVAL_MS = { "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000,
  "4h": 14_400_000, "1d": 86_400_000 };
const feed = new FeedClient(feedUrl, (what) => invalidate(what), query.get("interval") || "1m");
const gateway = new GatewayClient(onGatewayChange);
const orderHistory = new OrderHistory(() => invalidate("history"));

const REASON_TEXT = {
  INSUFFICIENT_FUNDS: "not enough available balance for the order's hold",
  EXPIRED: "its expiry time had passed when it reached the market",
};

/** Order types with a limit price (a stop of these becomes a limit order). */
const LIMIT_TYPES = new Set(["limit", "stop_limit", "take_profit_limit"]);
/** Order types that wait for a trade through their stop price. */
const STOP_TYPES = new Set(["stop_limit", "stop_market", "take_profit_limit", "take_profit_market"]);
/** Times in force of an order that may rest in the book (post-only, iceberg). */
const RESTING_TIFS = new Set(["GTC", "GTD"]);
const DEFAULT_GTD_MS = 3_600_000;

/** What the user is told about a rejected / cancel_rejected report. */
function rejectDetail(r) {
  const why = REASON_TEXT[r.reason];
  return `${r.exec_type} order ${r.order_id}${why ? `: ${why}` : ""}`;
}

let wasDown = false;

function onGatewayChange(what) {
  if (what === "executions") {
    // An order rejected after "received" (e.g. POST_ONLY_WOULD_TAKE, INSUFFICIENT_FUNDS) shows
    // in the ticket too. A refused cancel or amend shows next to the open orders, where it was
    // asked for.
    const r = gateway.executions[0];
    if (r) orderHistory.expect(r);
    if (r && r.exec_type === "rejected") {
      showOrderError({ code: r.reason || "REJECTED", detail: rejectDetail(r) });
    } else if (r && r.exec_type === "cancel_rejected") {
      showOrdersError({ code: r.reason || "REJECTED", detail: rejectDetail(r) });
    }
  }
  if (what === "balances") syncTicketInputs(); // risk on or off decides what a market buy sends
  if (what === "state") {
    if (!gateway.session && orderHistory.active) orderHistory.stop(); // logged off
    else if (gateway.state === "logged_on" && wasDown) orderHistory.refreshSoon(); // rebuilt
    wasDown = gateway.down;
  }
  invalidate(what);
}

// ---- helpers -------------------------------------------------------------------

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function timeOf(ts) {
  const d = new Date(ts);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** `ms` as a local "YYYY-MM-DDTHH:MM:SS", the value a datetime-local input takes. */
function localDateTime(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
    + `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local input's value (local time) as ms since the epoch, or null if unset. */
function epochMsOf(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms : null;
}

function marketOf(symbol) {
  return feed.markets.find((m) => m.symbol === symbol) || null;
}

function priceDecimals() {
  const m = feed.market();
  return m ? decimalsOf(m.tick_size) : 2;
}

function qtyDecimals() {
  const m = feed.market();
  return m ? decimalsOf(m.lot_size) : 4;
}

// ---- ladder --------------------------------------------------------------------

function makeLadderRows(tbody, side) {
  const rows = [];
  for (let i = 0; i < LADDER_ROWS; i++) {
    const cells = [el("td", { class: "mine" }), el("td", { class: "price" }),
      el("td", { class: "size" }), el("td", { class: "total" })];
    const row = el("tr", { class: `level ${side}`, "data-testid": `${side}-level` }, cells);
    row.addEventListener("click", () => {
      const price = row.dataset.price;
      if (price) $("order-price").value = price;
    });
    tbody.append(row);
    rows.push({ row, cells, price: null, qty: null });
  }
  return rows;
}

const askRows = makeLadderRows($("ladder-asks"), "ask");
const bidRows = makeLadderRows($("ladder-bids"), "bid");

/** Own open quantity per "bid|units" / "ask|units" of price, for the selected market. */
function myLevels() {
  const mine = new Map();
  const m = feed.market();
  if (!m) return mine;
  const pd = decimalsOf(m.tick_size);
  const qd = decimalsOf(m.lot_size);
  for (const o of gateway.openOrders.values()) {
    // An untriggered stop is not in the book yet.
    if (o.symbol !== m.symbol || o.price == null || o.status === "untriggered") continue;
    const key = `${o.side === "buy" ? "bid" : "ask"}|${toUnits(o.price, pd)}`;
    mine.set(key, (mine.get(key) || 0n) + toUnits(o.leaves_qty, qd));
  }
  return mine;
}

function fillSide(rows, levels, side, mine, maxTotal, reversed) {
  const pd = priceDecimals();
  const qd = qtyDecimals();
  let total = 0n;
  const totals = levels.slice(0, LADDER_ROWS).map(([, qty]) => (total += toUnits(qty, qd)));
  for (let i = 0; i < LADDER_ROWS; i++) {
    const r = rows[reversed ? LADDER_ROWS - 1 - i : i];
    const level = levels[i];
    if (!level) {
      if (r.price !== null) {
        r.price = r.qty = null;
        delete r.row.dataset.price;
        delete r.row.dataset.qty;
        r.row.classList.remove("has-mine");
        for (const c of r.cells) setText(c, "");
        r.row.style.setProperty("--fill", "0%");
      }
      continue;
    }
    const [price, qty] = level;
    const own = mine.get(`${side}|${toUnits(price, pd)}`);
    r.price = price;
    r.qty = qty;
    r.row.dataset.price = price;
    r.row.dataset.qty = qty;
    r.row.classList.toggle("has-mine", own !== undefined);
    setText(r.cells[0], own !== undefined ? fromUnits(own, qd) : "");
    setText(r.cells[1], price);
    setText(r.cells[2], qty);
    setText(r.cells[3], fromUnits(totals[i], qd));
    const pct = maxTotal > 0n ? (Number((totals[i] * 10000n) / maxTotal) / 100) : 0;
    r.row.style.setProperty("--fill", `${pct}%`);
  }
  return totals.length ? totals[totals.length - 1] : 0n;
}

function renderLadder() {
  const book = feed.book;
  const bids = book && book.synced ? book.bids : [];
  const asks = book && book.synced ? book.asks : [];
  const qd = qtyDecimals();
  const sum = (levels) => levels.slice(0, LADDER_ROWS).reduce((s, [, q]) => s + toUnits(q, qd), 0n);
  const bidTotal = sum(bids);
  const askTotal = sum(asks);
  const maxTotal = bidTotal > askTotal ? bidTotal : askTotal;
  const mine = myLevels();
  fillSide(askRows, asks, "ask", mine, maxTotal, true);
  fillSide(bidRows, bids, "bid", mine, maxTotal, false);
  const spread = $("ladder-spread");
  if (bids.length && asks.length) {
    const pd = priceDecimals();
    const diff = toUnits(asks[0][0], pd) - toUnits(bids[0][0], pd);
    setText(spread, `spread ${fromUnits(diff, pd)}`);
  } else {
    setText(spread, book && book.synced ? "spread –" : "waiting for book…");
  }
  setText($("book-seq"), book && book.synced ? `seq ${book.seq}` : "");
  $("ladder").dataset.seq = book && book.synced ? String(book.seq) : "";
  drawDepthChart($("depth-chart"), bids, asks, priceDecimals());
}

// ---- ticker --------------------------------------------------------------------

function renderTicker() {
  const book = feed.book;
  const t = feed.ticker;
  const synced = book && book.synced;
  const bid = synced ? book.bids[0] : t && t.best_bid ? [t.best_bid, t.best_bid_qty] : null;
  const ask = synced ? book.asks[0] : t && t.best_ask ? [t.best_ask, t.best_ask_qty] : null;
  setText($("ticker-bid"), bid ? bid[0] : "–");
  setText($("ticker-bid-qty"), bid ? bid[1] : "");
  setText($("ticker-ask"), ask ? ask[0] : "–");
  setText($("ticker-ask-qty"), ask ? ask[1] : "");
  if (bid && ask) {
    const pd = priceDecimals();
    setText($("ticker-spread"), fromUnits(toUnits(ask[0], pd) - toUnits(bid[0], pd), pd));
  } else {
    setText($("ticker-spread"), "–");
  }
  // The last trade: the newer of the ticker's and the tape's.
  let last = t && t.last_price ? { price: t.last_price, qty: t.last_qty, side: null } : null;
  const newest = feed.trades[0];
  if (newest && (!last || feed.lastTradeSeq >= t.seq)) {
    last = { price: newest.price, qty: newest.qty, side: newest.taker_side };
  }
  setText($("ticker-last"), last ? last.price : "–");
  setText($("ticker-last-qty"), last ? last.qty : "");
  $("ticker-last").className = last && last.side ? last.side : "";
  renderDay(t, last);
}

/** The rolling 24-hour fields of the ticker, and the change from its open to the last price. */
function renderDay(t, last) {
  const m = feed.market();
  setText($("ticker-open-24h"), t && t.open_24h ? t.open_24h : "–");
  setText($("ticker-high-24h"), t && t.high_24h ? t.high_24h : "–");
  setText($("ticker-low-24h"), t && t.low_24h ? t.low_24h : "–");
  setText($("ticker-volume-24h"), t && t.volume_24h ? `${t.volume_24h}${m ? ` ${m.base}` : ""}` : "–");
  setText($("ticker-quote-volume-24h"),
    t && t.quote_volume_24h ? `${t.quote_volume_24h}${m ? ` ${m.quote}` : ""}` : "");
  const change = $("ticker-change-24h");
  if (t && t.open_24h && last) {
    const pd = priceDecimals();
    const diff = toUnits(last.price, pd) - toUnits(t.open_24h, pd);
    const open = toUnits(t.open_24h, pd);
    const pct = open > 0n ? Number((diff * 1000000n) / open) / 10000 : 0;
    setText(change, `${diff >= 0n ? "+" : ""}${fromUnits(diff, pd)} (${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%)`);
    change.className = diff > 0n ? "up" : diff < 0n ? "down" : "";
  } else {
    setText(change, "–");
    change.className = "";
  }
}

// ---- candles -------------------------------------------------------------------

function renderCandles() {
  const canvas = $("candle-chart");
  canvas.dataset.interval = feed.interval;
  canvas.dataset.symbol = feed.symbol || "";
  drawCandleChart(canvas, feed.candles, INTERVAL_MS[feed.interval], priceDecimals());
  for (const button of $("candle-intervals").querySelectorAll("button")) {
    button.setAttribute("role", "radio");
    button.setAttribute("aria-checked", String(button.dataset.interval === feed.interval));
  }
  const n = feed.candles.length;
  setText($("candles-state"), `${feed.symbol || ""} ${feed.interval}${n ? "" : " · no trades yet"}`);
}

$("candle-intervals").addEventListener("click", (event) => {
  const interval = event.target.dataset && event.target.dataset.interval;
  if (!interval || !INTERVALS.includes(interval)) return;
  feed.selectInterval(interval);
  const url = new URL(location.href);
  url.searchParams.set("interval", interval);
  history.replaceState(null, "", url);
});

// ---- trades --------------------------------------------------------------------

function renderTape() {
  const rows = feed.trades.map((t) => el("tr", {
    class: `trade ${t.taker_side}`, "data-testid": "trade-row",
    "data-trade-id": String(t.trade_id), "data-price": t.price, "data-qty": t.qty,
    "data-side": t.taker_side,
  }, [el("td", { text: timeOf(t.ts) }), el("td", { class: "price", text: t.price }),
    el("td", { text: t.qty }), el("td", { text: t.taker_side })]));
  $("tape-body").replaceChildren(...rows);
}

// ---- states --------------------------------------------------------------------

function renderStates() {
  const md = $("md-state");
  md.dataset.state = feed.state;
  setText(md, `feed: ${feed.state}${feed.stateDetail ? ` (${feed.stateDetail})` : ""}`);
  const gw = $("gw-state");
  gw.dataset.state = gateway.state;
  const label = gateway.state === "logged_on" ? `logged on as ${gateway.account}` : gateway.state;
  const detail = gateway.state === "logged_on" ? "" : gateway.stateDetail;
  setText(gw, `orders: ${label}${detail ? ` (${detail})` : ""}`);
  setText($("account"), gateway.account ? `Account ${gateway.account}` : "");
  $("account").dataset.account = gateway.account || "";
  $("logoff-btn").disabled = gateway.state === "disconnected";
}

// ---- connections: banner, greyed-out data, order entry on or off ------------------

/** What is down and whether orders can be sent; `blocked` says why not. */
function connectionState() {
  const feedDown = feed.down;
  const ordersDown = gateway.down;
  const reasons = [];
  if (feedDown) reasons.push("the market data feed is down");
  if (ordersDown) reasons.push("the order entry connection is down");
  if (!ordersDown && gateway.state !== "logged_on") reasons.push("log on to trade");
  return { feedDown, ordersDown, canTrade: reasons.length === 0, blocked: reasons.join("; ") };
}

function describe(state, detail) {
  return `${state}${detail ? ` (${detail})` : ""}`;
}

/** Cancels sent and not answered yet, by orderKey: their buttons stay disabled. */
const pendingCancels = new Set();

function renderConnection() {
  const c = connectionState();
  document.body.classList.toggle("feed-down", c.feedDown);
  document.body.classList.toggle("orders-down", c.ordersDown);
  const banner = $("conn-banner");
  banner.hidden = !(c.feedDown || c.ordersDown);
  banner.dataset.feed = c.feedDown ? "down" : "up";
  banner.dataset.orders = c.ordersDown ? "down" : gateway.session ? "up" : "off";
  const feedLine = $("conn-feed");
  feedLine.hidden = !c.feedDown;
  setText(feedLine, c.feedDown
    ? `Market data feed connection is down: ${describe(feed.state, feed.stateDetail)}. `
      + "The book, ticker and trades shown are stale." : "");
  const ordersLine = $("conn-orders");
  ordersLine.hidden = !c.ordersDown;
  setText(ordersLine, c.ordersDown
    ? `Order entry connection is down: ${describe(gateway.state, gateway.stateDetail)}. `
      + "Order entry is paused; the open orders shown are the last known." : "");

  const feedLive = feed.state === "live";
  for (const id of ["ladder", "ticker", "tape", "depth-chart", "candle-chart"]) {
    $(id).dataset.stale = String(!feedLive);
  }
  $("open-orders").dataset.stale = String(c.ordersDown);
  $("balances").dataset.stale = String(c.ordersDown);

  const place = $("place-btn");
  place.disabled = !c.canTrade;
  place.title = c.blocked ? `Cannot place orders: ${c.blocked}` : "";
  setText($("ticket-hint"), c.blocked ? `Order entry off: ${c.blocked}.` : "");
  $("cancel-all-btn").disabled = !c.canTrade;
  $("amend-btn").disabled = !c.canTrade;
  for (const button of $("open-orders-body").querySelectorAll("button")) {
    button.disabled = !c.canTrade
      || (button.classList.contains("cancel") && pendingCancels.has(button.dataset.key));
  }
}

// ---- orders and executions -----------------------------------------------------

function renderOpenOrders() {
  const orders = [...gateway.openOrders.values()].sort((a, b) =>
    a.symbol.localeCompare(b.symbol) || a.side.localeCompare(b.side)
    || (a.price && b.price ? compareDecimal(b.price, a.price) : 0));
  const keys = new Set(orders.map((o) => orderKey(o.symbol, o.order_id)));
  for (const key of pendingCancels) if (!keys.has(key)) pendingCancels.delete(key);
  const form = $("amend-form");
  if (!form.hidden && !keys.has(orderKey(form.dataset.symbol, form.dataset.orderId))) {
    form.hidden = true; // the order is gone (filled, canceled, or the session was rebuilt)
  }
  const rows = orders.map((o) => {
    const key = orderKey(o.symbol, o.order_id);
    const amend = el("button", {
      type: "button", class: "amend", text: "Amend", "data-testid": "amend-order",
      "data-order-id": o.order_id, "data-symbol": o.symbol, "data-key": key,
      title: `Amend order ${o.order_id}`,
    });
    amend.addEventListener("click", () => openAmend(o));
    const cancel = el("button", {
      type: "button", class: "cancel", text: "Cancel", "data-testid": "cancel-order",
      "data-order-id": o.order_id, "data-symbol": o.symbol, "data-key": key,
      title: `Cancel order ${o.order_id}`,
    });
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      pendingCancels.add(key);
      clearOrdersError();
      gateway.cancel(o.symbol, o.order_id).catch((err) => {
        pendingCancels.delete(key);
        invalidate("orders");
        showOrdersError(err);
      });
    });
    // An iceberg's quantity is the whole order; the book shows only its display qty.
    const qty = o.display_qty != null ? `${o.qty} (shows ${o.display_qty})` : o.qty;
    const tif = o.tif === "GTD" && o.expire_time != null
      ? `GTD ${localDateTime(o.expire_time).replace("T", " ")}` : o.tif;
    return el("tr", {
      class: `order ${o.side} ${o.status}`, "data-testid": "open-order-row",
      "data-order-id": o.order_id, "data-symbol": o.symbol, "data-side": o.side,
      "data-type": o.type, "data-price": o.price ?? "", "data-stop-price": o.stop_price ?? "",
      "data-qty": o.qty, "data-display-qty": o.display_qty ?? "", "data-leaves": o.leaves_qty,
      "data-tif": o.tif, "data-expire-time": o.expire_time != null ? String(o.expire_time) : "",
      "data-status": o.status,
    }, [el("td", { text: o.symbol }), el("td", { class: "side", text: o.side }),
      el("td", { class: "type", text: o.type.replaceAll("_", " ") }),
      el("td", { text: o.price ?? "market" }),
      el("td", { class: "stop", text: o.stop_price ?? "" }), el("td", { class: "qty", text: qty }),
      el("td", { text: o.cum_qty }), el("td", { class: "tif", text: tif }),
      el("td", { class: "status", text: o.status }),
      el("td", { class: "id", text: o.order_id }), el("td", { class: "actions" }, [amend, cancel])]);
  });
  $("open-orders-body").replaceChildren(...rows);
  setText($("open-count"), orders.length ? `(${orders.length})` : "");
}

function renderExecutions() {
  const rows = gateway.executions.map((r) => {
    // Only a trade fills anything; the other reports' qty/price are the order's, not a fill.
    const fill = r.exec_type === "trade" ? `${r.last_qty} @ ${r.last_price}` : "";
    // A fill's fee (in fee_asset, the quote); the other reports' fee is zero: not shown.
    const fee = r.exec_type === "trade" && r.fee != null
      ? `${r.fee}${r.fee_asset ? ` ${r.fee_asset}` : ""}` : "";
    return el("tr", {
      class: `exec ${r.exec_type}`, "data-testid": "exec-row", "data-exec-type": r.exec_type,
      "data-order-id": r.order_id, "data-status": r.status, "data-fee": fee,
    }, [el("td", { text: r.ts ? timeOf(r.ts) : "" }), el("td", { text: r.symbol }),
      el("td", { text: r.exec_type }), el("td", { class: "side", text: r.side }),
      el("td", { class: "fill", text: fill }), el("td", { class: "fee", text: fee }),
      el("td", { text: r.status }),
      el("td", { class: "reason", text: r.reason ?? "" }), el("td", { class: "id", text: r.order_id })]);
  });
  $("exec-log-body").replaceChildren(...rows);
}

function renderBalances() {
  const panel = $("balances-panel");
  // Risk off: the exchange keeps no balances (account.balances is UNKNOWN_METHOD).
  panel.hidden = gateway.risk === false;
  const rows = [...gateway.balances.values()]
    .sort((a, b) => a.asset.localeCompare(b.asset))
    .map((b) => el("tr", {
      class: "balance", "data-testid": "balance-row", "data-asset": b.asset,
      "data-available": b.available, "data-held": b.held,
    }, [el("td", { class: "asset", text: b.asset }),
      el("td", { class: "available", text: b.available }),
      el("td", { class: "held", text: b.held })]));
  $("balances-body").replaceChildren(...rows);
  let state = "";
  if (!gateway.session && gateway.state !== "logged_on") state = "(log on to see them)";
  else if (gateway.down) state = "(last known)";
  else if (gateway.risk === null) state = "(loading…)";
  else if (!rows.length) state = "(none)";
  setText($("balances-state"), state);
  $("balances").dataset.risk = gateway.risk === null ? "unknown" : String(gateway.risk);
}

function renderHistory() {
  const rows = orderHistory.orders.map((o) => el("tr", {
    class: `history-order ${o.side.toLowerCase()}`, "data-testid": "history-row",
    "data-order-id": o.streamexId, "data-rest-order-id": o.orderId, "data-status": o.status,
    "data-type": o.type, "data-side": o.side, "data-price": o.price, "data-qty": o.origQty,
    "data-filled": o.executedQty, "data-quote": o.cummulativeQuoteQty,
  }, [el("td", { text: timeOf(o.time) }), el("td", { class: "side", text: o.side }),
    el("td", { text: o.type }), el("td", { text: o.type === "MARKET" ? "market" : o.price }),
    el("td", { text: o.origQty }), el("td", { text: o.executedQty }),
    el("td", { text: o.cummulativeQuoteQty }), el("td", { text: o.timeInForce }),
    el("td", { text: o.status }), el("td", { class: "id", text: o.streamexId })]));
  $("order-history-body").replaceChildren(...rows);
  const h = orderHistory;
  let state = "";
  if (h.state === "off") state = "(log on to see it)";
  else if (h.state === "loading" && !rows.length) state = "(loading…)";
  else if (h.state === "ok" && !rows.length) state = `(no orders in ${h.symbol})`;
  else if (rows.length) state = `(latest ${rows.length} in ${h.symbol})`;
  setText($("history-state"), state);
  $("order-history").dataset.state = h.state;
  $("history-refresh").disabled = h.state === "off";
  const box = $("history-error");
  box.hidden = h.state !== "error";
  box.dataset.code = h.error ? h.error.code : "";
  setText(box, h.error ? `${h.error.code}: ${h.error.msg}` : "");
}

function renderErrors() {
  const all = [...feed.errors.map((e) => ({ ...e, source: "feed" })),
    ...gateway.errors.map((e) => ({ ...e, source: "orders" }))].sort((a, b) => b.ts - a.ts);
  const items = all.slice(0, 20).map((e) => el("li", {
    "data-testid": "error-item", "data-code": e.code,
  }, [el("span", { class: "when", text: timeOf(e.ts) }),
    el("code", { class: "code", text: e.code }),
    el("span", { text: ` ${e.message}` }),
    el("span", { class: "src", text: ` (${e.source}${e.method ? ` ${e.method}` : ""})` })]));
  $("errors").replaceChildren(...items);
}

function renderStats() {
  const s = feed.stats;
  setText($("stats"), `feed messages ${s.messages} · book ${s.bookMessages} · resyncs ${s.resyncs}`
    + ` (gaps ${s.gaps}, checksum ${s.checksumFailures}) · reconnects ${s.reconnects}`
    + ` · frames ${frameStats.frames}`);
}

// ---- market selector -----------------------------------------------------------

function renderMarkets() {
  const select = $("market-select");
  const options = feed.markets.map((m) => el("option", { value: m.symbol, text: m.symbol }));
  select.replaceChildren(...options);
  if (!feed.symbol || !marketOf(feed.symbol)) {
    const wanted = query.get("symbol");
    const first = feed.markets.find((m) => m.symbol === wanted) || feed.markets[0];
    if (first) feed.select(first.symbol);
  }
  if (feed.symbol) select.value = feed.symbol;
  renderTicketLabels();
}

function renderTicketLabels() {
  const m = feed.market();
  $("order-qty").placeholder = m ? `${m.base}, step ${m.lot_size}` : "";
  $("order-price").placeholder = m ? `${m.quote}, step ${m.tick_size}` : "";
  $("order-stop-price").placeholder = m ? `${m.quote}, the trigger, step ${m.tick_size}` : "";
  setText($("order-quote-qty-text"), m ? `Spend (${m.quote})` : "Spend");
  $("order-quote-qty").placeholder = m
    ? `${m.quote}, fees included${m.quote_decimals != null ? `, ≤ ${m.quote_decimals} decimals` : ""}`
    : "";
  setText($("cancel-all-market"), feed.symbol ? `${feed.symbol} only` : "Selected market");
}

$("market-select").addEventListener("change", (event) => {
  feed.select(event.target.value);
  const url = new URL(location.href);
  url.searchParams.set("symbol", event.target.value);
  history.replaceState(null, "", url);
  renderTicketLabels();
  invalidate("orders");
  if (orderHistory.active) orderHistory.select(event.target.value);
});

// ---- the render pass -----------------------------------------------------------

function render() {
  frameRequested = false;
  frameStats.frames += 1;
  const what = new Set(dirty);
  dirty.clear();
  if (what.has("markets")) {
    renderMarkets();
    if (orderHistory.active && feed.symbol && orderHistory.symbol !== feed.symbol) {
      orderHistory.select(feed.symbol); // logged on before the markets were known
    }
  }
  if (what.has("book") || what.has("orders") || what.has("markets")) renderLadder();
  if (what.has("book") || what.has("ticker") || what.has("trades")) renderTicker();
  if (what.has("trades")) renderTape();
  if (what.has("candles") || what.has("markets")) renderCandles();
  if (what.has("state")) renderStates();
  if (what.has("orders")) renderOpenOrders();
  if (what.has("state") || what.has("orders")) renderConnection();
  if (what.has("state") || what.has("balances")) renderBalances();
  if (what.has("executions")) renderExecutions();
  if (what.has("history")) renderHistory();
  if (what.has("error")) renderErrors();
  renderStats();
}

window.addEventListener("resize", () => {
  invalidate("book");
  invalidate("candles");
});

// ---- forms ---------------------------------------------------------------------

function showOrderError(err) {
  const box = $("order-error");
  box.hidden = false;
  box.dataset.code = err.code || "ERROR";
  box.textContent = `${err.code || "ERROR"}: ${err.detail || err.message}`;
}

function clearOrderError() {
  const box = $("order-error");
  box.hidden = true;
  box.dataset.code = "";
  box.textContent = "";
}

/** Replies and errors of the open-orders actions (amend, cancel, cancel all). */
function showOrdersError(err) {
  const box = $("orders-error");
  box.hidden = false;
  box.dataset.code = err.code || "ERROR";
  box.textContent = `${err.code || "ERROR"}: ${err.detail || err.message}`;
}

function clearOrdersError() {
  const box = $("orders-error");
  box.hidden = true;
  box.dataset.code = "";
  box.textContent = "";
}

function showOrdersResult(action, text, orderId = "") {
  const result = $("orders-result");
  result.textContent = text;
  result.dataset.action = action;
  result.dataset.orderId = orderId;
}

$("gateway-url").value = defaultGateway;
$("api-url").value = defaultApi;
$("history-refresh").addEventListener("click", () => orderHistory.refresh());

$("logon-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const secretInput = $("api-secret");
  const secret = secretInput.value;
  secretInput.value = ""; // the signer holds it now, nothing else does
  const button = $("logon-btn");
  button.disabled = true;
  try {
    const apiKey = $("api-key").value.trim();
    await gateway.logon($("gateway-url").value.trim(), apiKey, secret,
      $("cancel-on-disconnect").checked);
    await orderHistory.start($("api-url").value.trim(), apiKey, secret, feed.symbol);
  } catch (err) {
    showOrderError(err);
  } finally {
    button.disabled = false;
  }
});

$("logoff-btn").addEventListener("click", () => gateway.logoff());

function orderSide() {
  return document.querySelector("input[name=side]:checked").value;
}

/**
 * Whether the ticket's order is a market buy that spends a quote amount: under the risk
 * stage (known only once account.balances answered) a market buy carries `quote_qty`,
 * the most it may spend fees included, instead of `qty`.
 */
function spendsQuote() {
  return !LIMIT_TYPES.has($("order-type").value) && orderSide() === "buy" && gateway.risk === true;
}

/**
 * Which inputs the ticket's type and time in force take: a price for the limit types, a
 * stop price for the stop and take-profit types, post only for a plain limit order, a
 * display qty for an order that can rest with a limit price, an expiry for GTD (one hour
 * ahead until the user sets one). A market order's time in force is not asked for.
 */
function syncTicketInputs() {
  const type = $("order-type").value;
  const limit = LIMIT_TYPES.has(type);
  const tif = $("order-tif").value;
  $("order-price").disabled = !limit;
  $("order-tif").disabled = type === "market";
  $("order-post-only").disabled = type !== "limit";
  $("order-stop-price-label").hidden = !STOP_TYPES.has(type);
  $("order-display-qty").disabled = !limit || !RESTING_TIFS.has(tif);
  const gtd = type !== "market" && tif === "GTD";
  $("order-expire-label").hidden = !gtd;
  if (gtd && !$("order-expire").value) {
    $("order-expire").value = localDateTime(Date.now() + DEFAULT_GTD_MS);
  }
  const spend = spendsQuote();
  $("order-qty-label").hidden = spend;
  $("order-quote-qty-label").hidden = !spend;
}
$("order-type").addEventListener("change", syncTicketInputs);
$("order-tif").addEventListener("change", syncTicketInputs);
for (const radio of document.querySelectorAll("input[name=side]")) {
  radio.addEventListener("change", syncTicketInputs);
}
syncTicketInputs();

/** Whether orders can be sent now; if not, `show` the reason (the buttons are off too). */
function tradingOrSay(show) {
  const c = connectionState();
  if (!c.canTrade) show({ code: "DISCONNECTED", detail: `order entry is off: ${c.blocked}` });
  return c.canTrade;
}

$("order-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearOrderError();
  if (!tradingOrSay(showOrderError)) return;
  const type = $("order-type").value;
  const params = { symbol: feed.symbol, side: orderSide(), type };
  if (spendsQuote()) params.quote_qty = $("order-quote-qty").value.trim();
  else params.qty = $("order-qty").value.trim();
  // What is left out (a stop price, an expiry) the gateway names in its refusal.
  if (STOP_TYPES.has(type)) {
    const stop = $("order-stop-price").value.trim();
    if (stop !== "") params.stop_price = stop;
  }
  const tif = $("order-tif").value;
  if (LIMIT_TYPES.has(type)) {
    const price = $("order-price").value.trim();
    if (price !== "") params.price = price;
    params.tif = tif;
    if (type === "limit" && $("order-post-only").checked) params.post_only = true;
    const display = $("order-display-qty").value.trim();
    if (display !== "" && RESTING_TIFS.has(tif)) params.display_qty = display;
  } else if (type !== "market" && (tif === "GTD" || tif === "FOK")) {
    params.tif = tif; // a stop market's untriggered life, or all-or-nothing once triggered
  }
  if (params.tif === "GTD") {
    const expires = epochMsOf($("order-expire").value);
    if (expires !== null) params.expire_time = expires;
  }
  const result = $("order-result");
  result.textContent = "sending…";
  try {
    const reply = await gateway.place(params);
    result.textContent = `order ${reply.order_id} ${reply.status}`;
    result.dataset.orderId = reply.order_id;
  } catch (err) {
    result.textContent = "";
    showOrderError(err);
  }
});

// ---- amend and cancel all --------------------------------------------------------

const PLAIN_DECIMAL = /^\d+(\.\d+)?$/;

/** True when `text` is the same decimal as `value` (so not a change to send). */
function sameDecimal(text, value) {
  return value != null && PLAIN_DECIMAL.test(text) && compareDecimal(text, value) === 0;
}

function openAmend(o) {
  const form = $("amend-form");
  form.hidden = false;
  form.dataset.symbol = o.symbol;
  form.dataset.orderId = o.order_id;
  const stop = o.stop_price != null ? ` stop ${o.stop_price}` : "";
  setText($("amend-order"),
    `${o.side} ${o.symbol} ${o.qty} @ ${o.price ?? "market"}${stop} (${o.order_id})`);
  const price = $("amend-price");
  price.value = o.price ?? "";
  price.disabled = o.price == null;
  // Only a stop still waiting for its trigger can move it.
  $("amend-stop-price-label").hidden = o.stop_price == null;
  const stopPrice = $("amend-stop-price");
  stopPrice.value = o.stop_price ?? "";
  stopPrice.disabled = o.status !== "untriggered";
  const qty = $("amend-qty");
  qty.value = o.qty;
  qty.title = `The new total quantity, the ${o.cum_qty} already filled included`;
  clearOrdersError();
  price.focus();
}

$("amend-close").addEventListener("click", () => {
  $("amend-form").hidden = true;
});

$("amend-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearOrdersError();
  if (!tradingOrSay(showOrdersError)) return;
  const form = $("amend-form");
  const { symbol, orderId } = form.dataset;
  const order = gateway.openOrders.get(orderKey(symbol, orderId));
  if (!order) {
    showOrdersError({ code: "UNKNOWN_ORDER", detail: `order ${orderId} is not open` });
    return;
  }
  const changes = {};
  const price = $("amend-price").value.trim();
  const qty = $("amend-qty").value.trim();
  const stop = $("amend-stop-price").value.trim();
  if (price !== "" && order.price != null && !sameDecimal(price, order.price)) changes.price = price;
  if (qty !== "" && !sameDecimal(qty, order.qty)) changes.qty = qty;
  if (stop !== "" && order.status === "untriggered" && !sameDecimal(stop, order.stop_price)) {
    changes.stop_price = stop;
  }
  if (Object.keys(changes).length === 0) {
    showOrdersError({ code: "NO_CHANGE",
      detail: "enter a new price, stop price or total quantity" });
    return;
  }
  showOrdersResult("amend", "sending amend…", orderId);
  try {
    const reply = await gateway.amend(symbol, orderId, changes);
    showOrdersResult("amend", `amend of order ${orderId} ${reply.status}`, orderId);
    form.hidden = true;
  } catch (err) {
    showOrdersResult("amend", "", orderId);
    showOrdersError(err);
  }
});

$("cancel-all-btn").addEventListener("click", async () => {
  clearOrdersError();
  if (!tradingOrSay(showOrdersError)) return;
  const all = $("cancel-all-scope").value === "all";
  const symbol = all ? null : feed.symbol;
  if (!all && !symbol) {
    showOrdersError({ code: "UNKNOWN_SYMBOL", detail: "no market selected" });
    return;
  }
  const scope = symbol || "all markets";
  showOrdersResult("cancel_all", `cancel all (${scope}): sending…`);
  try {
    const reply = await gateway.cancelAll(symbol);
    showOrdersResult("cancel_all", `cancel all (${scope}) ${reply.status}`);
  } catch (err) {
    showOrdersResult("cancel_all", "");
    showOrdersError(err);
  }
});

// ---- start ---------------------------------------------------------------------

window.streamexApp = { feed, gateway, orderHistory, frameStats };
for (const what of ["state", "orders", "balances", "executions", "error", "book", "candles",
  "history"]) {
  invalidate(what);
}
feed.start();
