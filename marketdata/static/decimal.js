// Exact arithmetic on the protocol's plain decimal strings ("101.25", "0.5").
// Prices and quantities are never turned into floats where exactness matters:
// comparison works on the digits, sums on BigInt units.

function split(s) {
  const dot = s.indexOf(".");
  let whole = dot < 0 ? s : s.slice(0, dot);
  const frac = dot < 0 ? "" : s.slice(dot + 1);
  let i = 0;
  while (i < whole.length - 1 && whole[i] === "0") i++;
  whole = whole.slice(i);
  return [whole, frac];
}

/** -1, 0 or 1 as a < b, a == b, a > b, for plain non-negative decimal strings. */
export function compareDecimal(a, b) {
  if (a === b) return 0;
  const [aw, af] = split(a);
  const [bw, bf] = split(b);
  if (aw.length !== bw.length) return aw.length < bw.length ? -1 : 1;
  if (aw !== bw) return aw < bw ? -1 : 1;
  const n = Math.max(af.length, bf.length);
  const ap = af.padEnd(n, "0");
  const bp = bf.padEnd(n, "0");
  if (ap === bp) return 0;
  return ap < bp ? -1 : 1;
}

/** Number of fraction digits of a step such as "0.0001" (-> 4). */
export function decimalsOf(step) {
  const dot = step.indexOf(".");
  return dot < 0 ? 0 : step.length - dot - 1;
}

/** "1.25" with 4 decimals -> 12500n. Extra fraction digits are cut (display only). */
export function toUnits(s, decimals) {
  const [whole, frac] = split(s);
  return BigInt(whole + frac.slice(0, decimals).padEnd(decimals, "0"));
}

/** 12500n with 4 decimals -> "1.2500". */
export function fromUnits(units, decimals) {
  const negative = units < 0n;
  let digits = (negative ? -units : units).toString();
  if (decimals === 0) return (negative ? "-" : "") + digits;
  digits = digits.padStart(decimals + 1, "0");
  const sign = negative ? "-" : "";
  return `${sign}${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}

/** True for "0", "0.000" and the like. */
export function isZero(s) {
  return !/[1-9]/.test(s);
}
