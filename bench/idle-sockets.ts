// 11. Idle WebSockets: how many authenticated, subscribed-to-nothing realtime sockets one sidecar
// holds, its resident memory while holding them, and whether its heartbeats (a ws ping and a
// "heartbeat" message every 25 s per socket) still arrive on time. No baseline: absolute targets.
import WebSocket from 'ws';
import { startStack, type StackOptions } from '../tests/harness.ts';
import { withLoad } from './machine-load.ts';
import type { Row } from './report.ts';
import { rssBytes } from './rss.ts';
import { MiB } from './streams.ts';

const SECTION = '11 idle sockets';
const HEARTBEAT_MS = 25_000;

export interface IdleSocketOptions {
  sockets: number;
  /** Sockets being opened at once. */
  parallel: number;
}

interface Idle {
  ws: WebSocket;
  opened: number;
  heartbeats: number[];
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}

function open(url: string): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const idle: Idle = { ws, opened: 0, heartbeats: [] };
    ws.once('open', () => (idle.opened = performance.now()));
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === 'ready') resolve(idle);
      else if (m.type === 'heartbeat') idle.heartbeats.push(performance.now());
      else if (m.type === 'error') reject(new Error(`socket refused: ${m.message}`));
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

export async function benchIdleSockets(stackOptions: StackOptions, opts: IdleSocketOptions): Promise<Row[]> {
  const stack = await startStack({ ...stackOptions, env: { ...stackOptions.env, PLINTH_REALTIME_MAX_CLIENTS: String(opts.sockets + 100), PLINTH_MAX_CONNECTIONS_PER_ADDRESS: '0' } });
  const sockets: Idle[] = [];
  try {
    const url = `${stack.url.replace(/^http/, 'ws')}/realtime?apikey=${encodeURIComponent(stack.anonKey)}`;
    const pid = stack.proc.pid!;
    // One socket first, so the realtime machinery's own memory is in the starting figure.
    sockets.push(await open(url));
    await new Promise((r) => setTimeout(r, 1000));
    const rssBefore = rssBytes(pid);
    const t0 = performance.now();
    await withLoad(`open ${opts.sockets} sockets`, async () => {
      while (sockets.length < opts.sockets) {
        const n = Math.min(opts.parallel, opts.sockets - sockets.length);
        sockets.push(...(await Promise.all(Array.from({ length: n }, () => open(url)))));
      }
    });
    const openSeconds = (performance.now() - t0) / 1000;
    // Every socket's first heartbeat is due 25 s after it opened; wait for the last one's, plus slack.
    const lastOpened = Math.max(...sockets.map((s) => s.opened));
    let rssPeak = rssBytes(pid);
    await withLoad(`hold ${opts.sockets} idle sockets`, async () => {
      while (performance.now() < lastOpened + HEARTBEAT_MS + 5_000) {
        await new Promise((r) => setTimeout(r, 500));
        rssPeak = Math.max(rssPeak, rssBytes(pid));
      }
    });
    const late = sockets.filter((s) => s.heartbeats.length > 0).map((s) => s.heartbeats[0] - s.opened - HEARTBEAT_MS);
    const missing = sockets.filter((s) => s.heartbeats.length === 0).length;
    const closed = sockets.filter((s) => s.ws.readyState !== WebSocket.OPEN).length;
    const p99 = percentile(late, 99);
    process.stderr.write(`  ${sockets.length} sockets open in ${openSeconds.toFixed(1)} s; RSS ${Math.round(rssBefore / MiB)} → ${Math.round(rssPeak / MiB)} MiB; heartbeat lateness p50 ${percentile(late, 50).toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, ${missing} missing, ${closed} closed\n`);
    const held = sockets.length - closed;
    return [
      { section: SECTION, metric: 'idle WebSockets held by one sidecar', unit: 'sockets', plinth: held, baseline: null, ratio: null, target: `≥ ${opts.sockets}`, met: held >= opts.sockets, note: `anon key, no subscriptions; opened ${opts.parallel} at a time in ${openSeconds.toFixed(0)} s` },
      { section: SECTION, metric: `sidecar RSS holding ${opts.sockets} sockets`, unit: 'MiB', plinth: rssPeak / MiB, baseline: null, ratio: null, target: '≤ 1024 MiB', met: rssPeak <= 1024 * MiB, note: `peak VmRSS; ${Math.round(rssBefore / MiB)} MiB with one socket, ${(((rssPeak - rssBefore) / opts.sockets) / 1024).toFixed(1)} KiB per socket` },
      { section: SECTION, metric: 'first heartbeat lateness p99', unit: 'ms', plinth: p99, baseline: null, ratio: null, target: '< 1000 ms, none missing', met: missing === 0 && p99 < 1000, note: `heartbeat due ${HEARTBEAT_MS / 1000} s after open; p50 ${percentile(late, 50).toFixed(0)} ms, max ${Math.max(...late).toFixed(0)} ms; ${missing} missing` },
    ];
  } finally {
    for (const s of sockets) s.ws.terminate();
    await stack.destroy();
  }
}
