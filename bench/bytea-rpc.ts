// 5. A bytea RPC (an SQL function taking the file as one bytea, called through PostgREST with an
// octet-stream body), the design Plinth's streaming store_file replaces, against store_file, for the same sizes: time and
// the peak RSS of the process holding the bytes (PostgREST there, the sidecar here). Then each
// side is tried with growing sizes, within a time budget, to find the largest it handles.
import type { Stack } from '../tests/harness.ts';
import type { DirectPostgrest } from './direct-postgrest.ts';
import { ratioRow, type Row } from './report.ts';
import { sampleRss } from './rss.ts';
import { MiB, timed, upload } from './streams.ts';

export interface ByteaRpcOptions {
  sizesMiB: number[];
  ladderMiB: number[];
  /** Seconds the size ladder may spend, per side. */
  budgetSeconds: number;
  /** Sizes Plinth already stored in this run (the 1 GiB upload), not repeated here. */
  plinthKnownMiB?: number[];
}

interface Attempt {
  sizeMiB: number;
  ok: boolean;
  seconds: number;
  peakRssMiB: number;
  growthMiB: number;
  error?: string;
}

async function attempt(url: string, headers: Record<string, string>, pid: number, sizeMiB: number, timeoutSeconds = 90): Promise<Attempt> {
  const rss = sampleRss(pid);
  try {
    const { seconds } = await timed(() => upload(url, headers, sizeMiB * MiB, timeoutSeconds));
    const { start, peak } = rss.stop();
    return { sizeMiB, ok: true, seconds, peakRssMiB: peak / MiB, growthMiB: (peak - start) / MiB };
  } catch (err) {
    const { start, peak } = rss.stop();
    const message = String((err as Error).message);
    return { sizeMiB, ok: false, seconds: 0, peakRssMiB: peak / MiB, growthMiB: (peak - start) / MiB, error: /aborted due to timeout/.test(message) ? `no answer within ${timeoutSeconds} s` : message.slice(0, 160) };
  }
}

export async function benchByteaRpc(stack: Stack, direct: DirectPostgrest, token: string, opts: ByteaRpcOptions): Promise<{ rows: Row[]; attempts: Record<string, Attempt[]> }> {
  const auth = { authorization: `Bearer ${token}` };
  const rpc = (sizeMiB: number, timeout?: number) => attempt(`${direct.url}/rpc/bytea_rpc_store_file`, { ...auth, 'file-path': `bytea-rpc/${sizeMiB}.bin` }, direct.pid, sizeMiB, timeout);
  const plinth = (sizeMiB: number, timeout?: number) => attempt(`${stack.url}/rpc/store_file`, { ...auth, 'file-path': `bytea-rpc/${sizeMiB}.bin` }, stack.proc.pid!, sizeMiB, timeout);
  const rows: Row[] = [];
  const attempts: Record<string, Attempt[]> = { byteaRpc: [], plinth: [] };

  for (const sizeMiB of opts.sizesMiB) {
    const p = await plinth(sizeMiB);
    const s = await rpc(sizeMiB);
    attempts.plinth.push(p);
    attempts.byteaRpc.push(s);
    rows.push(
      ratioRow({ section: '5 vs bytea RPC', metric: `${sizeMiB} MiB upload time`, unit: 's', plinth: p.ok ? p.seconds : null, baseline: s.ok ? s.seconds : null, target: '', lowerIsBetter: true, note: s.ok ? 'baseline: bytea RPC via PostgREST' : `bytea RPC failed: ${s.error}` }),
      {
        section: '5 vs bytea RPC',
        metric: `${sizeMiB} MiB peak RSS growth`,
        unit: 'MiB',
        plinth: p.growthMiB,
        baseline: s.growthMiB,
        // A ratio against a growth near zero says nothing; the two numbers do.
        ratio: null,
        target: '',
        met: null,
        note: `sidecar vs PostgREST process; absolute peaks ${Math.round(p.peakRssMiB)} vs ${Math.round(s.peakRssMiB)} MiB`,
      },
    );
  }

  for (const sizeMiB of opts.plinthKnownMiB ?? []) attempts.plinth.push({ sizeMiB, ok: true, seconds: NaN, peakRssMiB: NaN, growthMiB: NaN });

  // The size ladder: stop at the first failure or when the budget is spent.
  const largest: Record<string, number> = {};
  for (const [name, run] of [['byteaRpc', rpc], ['plinth', plinth]] as const) {
    const deadline = Date.now() + opts.budgetSeconds * 1000;
    largest[name] = Math.max(0, ...attempts[name].filter((a) => a.ok).map((a) => a.sizeMiB));
    for (const sizeMiB of opts.ladderMiB) {
      if (sizeMiB <= largest[name]) continue;
      const left = Math.floor((deadline - Date.now()) / 1000);
      if (left < 5) break;
      const a = await run(sizeMiB, left);
      attempts[name].push(a);
      if (!a.ok) break;
      largest[name] = sizeMiB;
    }
  }
  const tried = (name: string) =>
    attempts[name]
      .map((a) => `${a.sizeMiB} MiB ${!a.ok ? `failed (${a.error})` : Number.isNaN(a.seconds) ? 'ok (section 2)' : `${a.seconds.toFixed(1)} s, +${Math.round(a.growthMiB)} MiB RSS`}`)
      .join('; ');
  rows.push(
    ratioRow({
      section: '5 vs bytea RPC',
      metric: 'largest upload handled',
      unit: 'MiB',
      plinth: largest.plinth,
      baseline: largest.byteaRpc,
      target: '',
      note: `ladder ${opts.ladderMiB.join('/')} MiB, ${opts.budgetSeconds} s per side. Plinth: ${tried('plinth')}. bytea RPC: ${tried('byteaRpc')}`,
    }),
  );
  return { rows, attempts };
}
