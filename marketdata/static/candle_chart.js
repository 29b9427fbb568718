// The candle chart: the feed's candles of one interval (PROTOCOL.md section C) on a
// canvas. Each candle sits in its interval's slot of a time axis, so intervals without
// trades (which have no candle) show as gaps; wicks span low to high, bodies open to
// close (green when close >= open, red below; the current, unclosed candle hollow),
// volume bars along the bottom, a price axis on the right with the last close marked,
// times along the bottom. Float arithmetic only decides pixels: the candles' decimal
// strings are shown as they came, and the test hook (`data-candles` on the canvas)
// carries them unchanged.

const UP = "#16a34a";
const DOWN = "#dc2626";
const GRID = "rgba(139, 149, 167, 0.15)";
const MUTED = "#8b95a7";
const MIN_SLOT_PX = 6; // CSS pixels per interval slot at the most zoomed out
const MIN_SLOTS = 40; // a few candles are drawn this wide at most
const RIGHT_SLOTS = 2; // empty slots after the last candle

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return ratio;
}

/** A readable time for a slot's label: dates for daily candles, else hours and minutes. */
function timeLabel(ms, widthMs) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  if (widthMs >= 86_400_000) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A step for about `count` grid lines over `span`: 1, 2 or 5 times a power of ten. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

/**
 * Redraw `canvas` with `candles` (the feed's objects, oldest first) of an interval
 * `widthMs` wide; prices are shown with `priceDecimals`. Sets `data-candles` (the candles
 * drawn, as JSON), `data-interval-ms` and `data-count`. O(candles drawn).
 */
export function drawCandleChart(canvas, candles, widthMs, priceDecimals) {
  const ratio = fitCanvas(canvas);
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  const axisW = 64 * ratio;
  const timeH = 16 * ratio;
  const plotW = Math.max(1, w - axisW);
  const last = candles.length ? candles[candles.length - 1].open_time : 0;
  const span = candles.length ? (last - candles[0].open_time) / widthMs + 1 + RIGHT_SLOTS : 0;
  const most = Math.max(MIN_SLOTS, Math.floor(plotW / (MIN_SLOT_PX * ratio)));
  const slots = Math.min(most, Math.max(MIN_SLOTS, span));
  const first = last - (slots - 1 - RIGHT_SLOTS) * widthMs;
  const shown = candles.filter((c) => c.open_time >= first);
  canvas.dataset.candles = JSON.stringify(shown);
  canvas.dataset.count = String(shown.length);
  canvas.dataset.intervalMs = String(widthMs);
  if (!shown.length) {
    ctx.fillStyle = MUTED;
    ctx.textAlign = "center";
    ctx.fillText("no trades yet", w / 2, h / 2);
    return;
  }
  let lo = Infinity;
  let hi = -Infinity;
  let maxVol = 0;
  for (const c of shown) {
    lo = Math.min(lo, Number(c.low));
    hi = Math.max(hi, Number(c.high));
    maxVol = Math.max(maxVol, Number(c.volume));
  }
  if (hi === lo) {
    const pad = Math.max(hi * 0.001, 10 ** -priceDecimals);
    lo -= pad;
    hi += pad;
  }
  const pad = (hi - lo) * 0.06;
  lo -= pad;
  hi += pad;
  const top = 6 * ratio;
  const bottom = h - timeH;
  const volH = (bottom - top) * 0.18;
  const priceBottom = bottom - volH - 4 * ratio;
  const y = (p) => priceBottom - ((p - lo) / (hi - lo)) * (priceBottom - top);
  const x = (openTime) => ((openTime - first) / widthMs + 0.5) * (plotW / slots);
  const bodyW = Math.max(1, (plotW / slots) * 0.7);

  // Price grid and axis.
  ctx.strokeStyle = GRID;
  ctx.lineWidth = ratio;
  ctx.fillStyle = MUTED;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const step = niceStep(hi - lo, 5);
  for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
    const py = Math.round(y(p)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, py);
    ctx.lineTo(plotW, py);
    ctx.stroke();
    ctx.fillText(p.toFixed(priceDecimals), plotW + 4 * ratio, py);
  }

  // Time labels, every few slots, on slot boundaries of the interval.
  ctx.textAlign = "center";
  ctx.textBaseline = "alphabetic";
  const every = Math.max(1, Math.ceil((70 * ratio) / (plotW / slots)));
  const half = 18 * ratio;
  for (let i = 0; i < slots; i += every) {
    const t = first + i * widthMs;
    const tx = x(t);
    if (tx >= half && tx <= plotW - half) ctx.fillText(timeLabel(t, widthMs), tx, h - 4 * ratio);
  }

  // Volume bars, wicks and bodies.
  for (const c of shown) {
    const open = Number(c.open);
    const close = Number(c.close);
    const color = close >= open ? UP : DOWN;
    const cx = x(c.open_time);
    const vol = maxVol > 0 ? (Number(c.volume) / maxVol) * volH : 0;
    ctx.fillStyle = color === UP ? "rgba(22, 163, 74, 0.35)" : "rgba(220, 38, 38, 0.35)";
    ctx.fillRect(cx - bodyW / 2, bottom - vol, bodyW, vol);
    ctx.strokeStyle = color;
    ctx.lineWidth = Math.max(1, ratio);
    ctx.beginPath();
    ctx.moveTo(Math.round(cx) + 0.5, y(Number(c.high)));
    ctx.lineTo(Math.round(cx) + 0.5, y(Number(c.low)));
    ctx.stroke();
    const yTop = y(Math.max(open, close));
    const bodyH = Math.max(ratio, y(Math.min(open, close)) - yTop);
    if (c.closed) {
      ctx.fillStyle = color;
      ctx.fillRect(cx - bodyW / 2, yTop, bodyW, bodyH);
    } else {
      ctx.fillStyle = "#151b24";
      ctx.fillRect(cx - bodyW / 2, yTop, bodyW, bodyH);
      ctx.strokeRect(cx - bodyW / 2, yTop, bodyW, bodyH);
    }
  }

  // The last close on the axis.
  const lastClose = shown[shown.length - 1];
  const ly = Math.round(y(Number(lastClose.close))) + 0.5;
  ctx.setLineDash([3 * ratio, 3 * ratio]);
  ctx.strokeStyle = "rgba(96, 165, 250, 0.7)";
  ctx.beginPath();
  ctx.moveTo(0, ly);
  ctx.lineTo(plotW, ly);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#1d4ed8";
  ctx.fillRect(plotW, ly - 8 * ratio, axisW, 16 * ratio);
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText(lastClose.close, plotW + 4 * ratio, ly);
}
