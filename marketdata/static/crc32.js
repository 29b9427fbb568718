// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), bit-identical to
// Python's zlib.crc32: the book checksum of PROTOCOL.md is defined with it.

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

const encoder = new TextEncoder();

/** Unsigned CRC-32 of a string (as UTF-8) or of bytes. O(length). */
export function crc32(input) {
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    crc = TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
