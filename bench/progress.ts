// A progress bar on stderr, redrawn at most every 200 ms. On a terminal it redraws one
// line in place; otherwise it prints a line at each 25% step so logs stay short.

const INTERVAL_MS = 200;
const WIDTH = 30;

export function createProgress(label: string, total: number, capSeconds: number) {
  const tty = process.stderr.isTTY === true;
  const start = Date.now();
  let lastDraw = 0;
  let lastQuarter = -1;
  const line = (done: number) => {
    const elapsed = (Date.now() - start) / 1000;
    const byCount = done / total;
    const byTime = elapsed / capSeconds;
    const fraction = Math.min(1, Math.max(byCount, byTime));
    const filled = Math.round(fraction * WIDTH);
    return `${label.padEnd(16)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${String(done).padStart(6)}/${total} cycles  ${elapsed.toFixed(1)}s`;
  };
  return {
    update(done: number) {
      const now = Date.now();
      if (now - lastDraw < INTERVAL_MS) return;
      lastDraw = now;
      if (tty) {
        process.stderr.write(`\r${line(done)}`);
      } else {
        const quarter = Math.floor(Math.min(done / total, (now - start) / 1000 / capSeconds) * 4);
        if (quarter > lastQuarter) { lastQuarter = quarter; process.stderr.write(`${line(done)}\n`); }
      }
    },
    finish(done: number) {
      process.stderr.write(tty ? `\r${line(done)}\n` : `${line(done)} done\n`);
    },
  };
}
