// Reconnect delays: exponential from 250 ms, capped at 10 s, with jitter so
// many pages do not reconnect in lockstep after a restart.

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_MAX_MS = 10000;

/** Delay before reconnect attempt `attempt` (1-based). */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
