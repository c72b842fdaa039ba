// One start/stop lifecycle for everything Plinth runs: child processes, connections and each
// feature's service. Started in order; stopped once, in reverse, whatever made it stop (a signal,
// a failed start, a dead child, a test's stop()). Each step has its own deadline, so a stuck step
// cannot hold the others: it is reported, and the stop says it was incomplete.
import type { Logger } from '../core/log.js';

const STEP_DEADLINE_MS = 15_000;

export class Lifecycle {
  private readonly steps: Array<{ name: string; stop: () => Promise<void> | void }> = [];
  private stopping: Promise<boolean> | null = null;

  constructor(private readonly log: Logger) {}

  /** Registers how to stop something that has just started. */
  onStop(name: string, stop: () => Promise<void> | void): void {
    this.steps.push({ name, stop });
  }

  /** Starts a service and registers its stop; the service is returned to be handed to its routes. */
  async start<S extends { stop(): Promise<void> | void }>(name: string, start: () => Promise<S> | S): Promise<S> {
    const service = await start();
    this.onStop(name, () => service.stop());
    return service;
  }

  /** Stops every step in reverse order; true when each finished in time. */
  stop(): Promise<boolean> {
    this.stopping ??= (async () => {
      let complete = true;
      for (const step of this.steps.reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(step.stop),
            new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`did not finish within ${STEP_DEADLINE_MS / 1000} s`)), STEP_DEADLINE_MS))),
          ]);
        } catch (err) {
          complete = false;
          this.log.warn(`while stopping ${step.name}: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }
      this.steps.length = 0;
      return complete;
    })();
    return this.stopping;
  }
}
