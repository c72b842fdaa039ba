// What the functions feature runs: the Deno workers of every function in PLINTH_FUNCTIONS_DIR (the
// registry), the invocation log, the scheduler and the change-trigger consumers. Each deployed
// function's triggers are (re)armed when it is (re)deployed and disarmed when it goes away.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plinth, Service } from '../core/context.js';
import { currentApiKeys } from '../core/keys.js';
import { ChangeTriggers } from './changes.js';
import { denoBinary } from './deno.js';
import { callEvent, type CallLimits } from './invoke.js';
import { Invocations } from './invocations.js';
import { Registry } from './registry.js';
import { Schedules } from './schedule.js';
import { secretsKey } from './secrets.js';

export interface FunctionsService extends Service {
  registry: Registry;
  invocations: Invocations;
  limits: CallLimits;
}

const BOOTSTRAP = path.join(path.dirname(fileURLToPath(import.meta.url)), 'deno-bootstrap.js');

/** How a function reaches this sidecar: loopback when it listens on every interface. */
function plinthAddress(host: string, port: number): { url: string; hosts: string[] } {
  const any = host === '0.0.0.0' || host === '::' || host === '';
  const h = any || host === 'localhost' ? '127.0.0.1' : host;
  const shown = h.includes(':') ? `[${h}]` : h;
  return { url: `http://${shown}:${port}`, hosts: [`${shown}:${port}`, `localhost:${port}`] };
}

export async function startFunctions(plinth: Plinth): Promise<FunctionsService> {
  const { config } = plinth;
  const limits: CallLimits = { timeoutMs: config.functions.timeoutMs, maxBody: config.functions.maxBody };
  fs.mkdirSync(config.functions.denoDir, { recursive: true, mode: 0o700 });
  // Sockets live in a short private path (a unix socket path is limited to ~100 bytes).
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-fn-'));
  fs.chmodSync(runDir, 0o700);
  const keys = await currentApiKeys(plinth.sql);
  const address = plinthAddress(config.host, config.port);
  const invocations = new Invocations(plinth);

  let registry!: Registry;
  const run = (name: string, trigger: 'schedule' | 'change', event: unknown) => {
    const fn = registry.get(name);
    if (!fn) return Promise.resolve({ ok: false, status: 404, error: 'not deployed' });
    return callEvent(fn, trigger, event, limits, invocations);
  };
  const schedules = new Schedules(plinth, async (name, event) => {
    const r = await run(name, 'schedule', event);
    if (!r.ok) plinth.log.warn(`function ${name}: scheduled run at ${event.scheduled_at} failed (${r.error})`);
  });
  const changes = new ChangeTriggers(plinth, (name, event) => run(name, 'change', event));
  await changes.start();

  registry = new Registry(plinth, {
    deno: denoBinary(),
    bootstrap: BOOTSTRAP,
    runDir,
    secretsKey: secretsKey(config.functions),
    apiKeys: { anon: keys.anonKey, service: keys.serviceKey },
    plinthUrl: address.url,
    plinthHosts: address.hosts,
    onChange(name, now) {
      schedules.set(name, now?.declared.schedule);
      void changes.set(name, now?.declared.on);
    },
  });
  await registry.start();

  plinth.audit?.gauge('plinth_functions_deployed', 'Functions running', () => registry.names().length);
  plinth.audit?.gauge('plinth_functions_broken', 'Functions whose module does not load', () => registry.broken.size);

  return {
    registry,
    invocations,
    limits,
    async stop() {
      await schedules.stop();
      await changes.stop();
      await registry.stop();
      await invocations.stop();
      fs.rmSync(runDir, { recursive: true, force: true });
    },
  };
}
