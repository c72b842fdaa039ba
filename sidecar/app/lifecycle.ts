// One start/stop lifecycle for everything Plinth runs: child processes, connections and each
// feature's service. Started in order; stopped once, in reverse, whatever made it stop (a signal,
// a failed start, a test's stop()). A step that fails to stop is logged and the rest still stop.
import type { Logger } from '../core/log.js';

export class Lifecycle {
  private readonly steps: Array<{ name: string; stop: () => Promise<void> | void }> = [];
  private stopping: Promise<void> | null = null;

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

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.stop();
        } catch (err) {
          this.log.warn(`while stopping ${step.name}: ${(err as Error).message}`);
        }
      }
      this.steps.length = 0;
    })();
    return this.stopping;
  }
}
