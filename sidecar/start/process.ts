// Process helpers for `plinth start`: readable start errors, port checks, the data-dir lock.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** A failure to start, reported to the user as one line. */
export class StartError extends Error {}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function assertPortFree(port: number, host: string, message: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new StartError(message) : new StartError(`${message} (${err.code})`)),
    );
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/**
 * A free loopback port, chosen below the kernel's ephemeral range where it can: a port handed out
 * by `listen(0)` comes from that range, and between the probe closing and its real owner binding
 * it, any outgoing connection on the machine may take it as its source port.
 */
export async function freePort(): Promise<number> {
  const first = ephemeralRangeStart();
  if (first !== null && first > 11_000) {
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = 10_000 + Math.floor(Math.random() * (first - 10_000));
      if (await canListen(port)) return port;
    }
  }
  return listenOnAnyPort();
}

function ephemeralRangeStart(): number | null {
  try {
    const first = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) ? first : null;
  } catch {
    return null;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

function listenOnAnyPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * One Plinth per data directory. The lock names our pid; a lock whose pid is gone was left by
 * a killed process, and its children (postgres, PostgREST) are orphans we may stop.
 */
export function lockDataDir(dataDir: string): { release(): void; orphans: number[] } {
  const lockFile = path.join(dataDir, 'plinth.pid');
  let orphans: number[] = [];
  if (fs.existsSync(lockFile)) {
    const [pid, ...children] = fs.readFileSync(lockFile, 'utf8').trim().split(/\s+/).map(Number);
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new StartError(`another Plinth (pid ${pid}) is running on ${dataDir}: stop it first or set PLINTH_DATA_DIR`);
    }
    orphans = children.filter((c) => c > 0 && isAlive(c));
  }
  fs.writeFileSync(lockFile, `${process.pid}\n`);
  return {
    orphans,
    release: () => {
      try {
        if (fs.readFileSync(lockFile, 'utf8').split(/\s+/)[0] === String(process.pid)) fs.rmSync(lockFile);
      } catch {
        /* already gone */
      }
    },
  };
}

/** Records a child's pid in the lock, so a later start can stop it if we die without cleaning up. */
export function recordChild(dataDir: string, pid: number) {
  fs.appendFileSync(path.join(dataDir, 'plinth.pid'), `${pid}\n`);
}

export async function stopOrphans(pids: number[]) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < 50 && pids.some(isAlive); i++) await new Promise((r) => setTimeout(r, 100));
}
