// How the CLI and the browser example show a speed: one helper, so that none of them prints
// "Infinity tokens/s" for a span too short for the clock (browsers coarsen performance.now()).

/**
 * `count` per second over `ms` milliseconds, as text with its unit: "1234 tok/s", "2.5 tok/s";
 * "– tok/s" when the time is zero, negative or not finite (nothing measurable to divide by).
 */
export function formatRate(count: number, ms: number, unit = 'tok/s'): string {
  const perSecond = (count / ms) * 1000;
  if (!(ms > 0) || !Number.isFinite(ms) || !Number.isFinite(perSecond) || perSecond < 0) return `– ${unit}`;
  return `${perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1)} ${unit}`;
}
