// What the accounts feature runs beside its routes: the admin account from the environment, the
// mail transport, and the periodic sweep of finished rate-limit windows and dead tokens.
import type { Plinth, Service } from '../core/context.js';
import { createMailer, type Mailer } from './mailer.js';
import { sweepPeriodically } from './rate-limit.js';
import { bootstrapAdmin } from './users.js';

export interface AccountsService extends Service {
  mailer: Mailer;
}

export async function startAccounts(plinth: Plinth): Promise<AccountsService> {
  await bootstrapAdmin(plinth);
  const mailer = createMailer(plinth);
  const stopSweeping = sweepPeriodically(plinth);
  return {
    mailer,
    stop() {
      stopSweeping();
      mailer.close();
    },
  };
}
