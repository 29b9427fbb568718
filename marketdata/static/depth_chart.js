// The depth chart: cumulative size against price, bids stepping down to the
// left of the mid price and asks up to the right, drawn on a canvas.
// Float arithmetic is fine here: it only decides pixels.

const BID_LINE = "#16a34a";
const BID_FILL = "rgba(22, 163, 74, 0.22)";
const ASK_LINE = "#dc2626";
const ASK_FILL = "rgba(220, 38, 38, 0.22)";

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

function cumulative(levels) {
  let total = 0;
  return levels.map(([price, qty]) => {
    total += Number(qty);
    return [Number(price), total];
  });
}

/** Redraw the chart for sides `bids` and `asks` ([[price, qty]], best first). O(levels). */
export function drawDepthChart(canvas, bids, asks, priceDecimals) {
  const ratio = fitCanvas(canvas);
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.font = font;
  ctx.fillStyle = "#8b95a7";
  if (!bids.length && !asks.length) {
    ctx.textAlign = "center";
    ctx.fillText("no orders", w / 2, h / 2);
    return;
  }
  const b = cumulative(bids);
  const a = cumulative(asks);
  const prices = [...b.map((p) => p[0]), ...a.map((p) => p[0])];
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (hi === lo) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.04;
  lo -= pad;
  hi += pad;
  const maxQty = Math.max(b.length ? b[b.length - 1][1] : 0, a.length ? a[a.length - 1][1] : 0) * 1.1;
  const bottom = h - 18 * ratio;
  const top = 8 * ratio;
  const x = (price) => ((price - lo) / (hi - lo)) * w;
  const y = (qty) => bottom - (qty / maxQty) * (bottom - top);

  const side = (points, edge, line, fill) => {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), bottom);
    let prevQty = 0;
    for (const [price, qty] of points) {
      ctx.lineTo(x(price), y(prevQty));
      ctx.lineTo(x(price), y(qty));
      prevQty = qty;
    }
    ctx.lineTo(x(edge), y(prevQty));
    ctx.lineTo(x(edge), bottom);
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
    ctx.strokeStyle = line;
    ctx.lineWidth = 1.5 * ratio;
    ctx.stroke();
  };
  side(b, lo, BID_LINE, BID_FILL);
  side(a, hi, ASK_LINE, ASK_FILL);

  ctx.fillStyle = "#8b95a7";
  ctx.textBaseline = "alphabetic";
  ctx.textAlign = "left";
  ctx.fillText(lo.toFixed(priceDecimals), 2 * ratio, h - 4 * ratio);
  ctx.textAlign = "right";
  ctx.fillText(hi.toFixed(priceDecimals), w - 2 * ratio, h - 4 * ratio);
  if (b.length && a.length) {
    const mid = (b[0][0] + a[0][0]) / 2;
    ctx.textAlign = "center";
    ctx.fillText(mid.toFixed(priceDecimals + 1), x(mid), h - 4 * ratio);
    ctx.strokeStyle = "rgba(139, 149, 167, 0.5)";
    ctx.lineWidth = ratio;
    ctx.setLineDash([3 * ratio, 3 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x(mid), top);
    ctx.lineTo(x(mid), bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  }
}
