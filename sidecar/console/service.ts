// The console's one long-lived job: building console/dist in the background when it is missing or
// older than its sources, so `plinth start` serves a current console without a separate step.
import type { Plinth, Service } from '../core/context.js';
import { buildConsole, buildNeed, type RunningBuild } from './build.js';

export interface ConsoleService extends Service {
  /** True while a build runs. */
  readonly building: boolean;
  /** Why the last build failed, if it did. */
  readonly error: string | null;
}

export function startConsoleBuild(plinth: Plinth): ConsoleService {
  let build: RunningBuild | null = null;
  let error: string | null = null;
  const need = buildNeed();
  if (need !== 'none') {
    plinth.log.info(`console: ${need === 'missing' ? 'console/dist is missing' : 'console sources changed'}; building it in the background`);
    build = buildConsole();
    build.done
      .then((built) => built && plinth.log.info('console: built'))
      .catch((err: Error) => {
        error = err.message;
        plinth.log.warn(`console: build failed: ${err.message}`);
      })
      .finally(() => (build = null));
  }
  return {
    get building() {
      return build !== null;
    },
    get error() {
      return error;
    },
    stop: () => build?.cancel(),
  };
}
