// Every open socket of this sidecar, and what ends one before its token expires. A socket can
// outlive the credential it was opened with by hours, so each is checked again whenever that
// credential may have been withdrawn anywhere:
// - a signing key retired (`plinth keys retire`): the KeyRing reloads in every sidecar, and every
//   socket's token is verified again against the remaining keys;
// - a session ended (logout, logout everywhere, refresh-token reuse, anything that revokes or
//   deletes a session): auth.sessions' trigger announces it on `plinth_sessions` to every sidecar,
//   and the sockets whose token names that session are closed.
// Both close with 4001, and nothing more is delivered to the socket.
import type { Claims, Sql } from '../core/db.js';
import { PlinthError, unauthorized } from '../core/errors.js';
import type { KeyRing } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import { CLOSE_UNAUTHORIZED, type Client } from './client.js';

export const SESSIONS_CHANNEL = 'plinth_sessions';
const SESSION_ENDED = 'The session of this token has ended (signed out, or its refresh token was reused): sign in again';

export class Clients {
  private readonly open = new Set<Client>();
  private stopFollowingKeys?: () => void;
  private unlisten?: () => Promise<void>;

  constructor(
    private readonly sql: Sql,
    private readonly keys: KeyRing,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.open.size;
  }

  [Symbol.iterator](): IterableIterator<Client> {
    return this.open.values();
  }

  add(client: Client): void {
    this.open.add(client);
  }

  delete(client: Client): void {
    this.open.delete(client);
  }

  async start(): Promise<void> {
    this.stopFollowingKeys = this.keys.onReload(() => void this.verifyAll());
    let listening = false;
    const listened = await this.sql.listen(
      SESSIONS_CHANNEL,
      (payload) => this.closeSessions(new Set(payload.split(','))),
      // Back after a reconnect: what was announced meanwhile is lost, so ask about every socket.
      () => {
        if (listening) void this.checkAllSessions();
        listening = true;
      },
    );
    this.unlisten = listened.unlisten;
  }

  async stop(): Promise<void> {
    this.stopFollowingKeys?.();
    await this.unlisten?.().catch(() => {});
  }

  /**
   * Makes `token` (already verified as `claims`) the client's credential, then confirms that it
   * still holds: its key was not retired and its session has not ended meanwhile. The client is
   * registered first, so a retirement or logout from then on finds it, and one from before is
   * caught by these checks. False when the client was refused (and closed).
   */
  async admit(client: Client, token: string, claims: Claims, onExpired: () => void): Promise<boolean> {
    client.authenticate(token, claims, onExpired);
    try {
      await this.keys.verify(token);
      const session = client.sessionId;
      if (session !== undefined && (await this.endedSessions([session])).size > 0) {
        this.refuse(client, unauthorized(SESSION_ENDED), 'session ended');
      }
    } catch (err) {
      if (err instanceof PlinthError) {
        this.refuse(client, err, 'unauthorized');
      } else {
        // Not knowing whether the session still stands, the socket is not kept.
        this.log.warn(`realtime: checking a socket's session failed: ${(err as Error).message}`);
        client.error('PLINTH503', 'The session could not be checked; reconnect in a moment');
        client.close(1011, 'try again');
      }
    }
    return !client.closed;
  }

  /** After a key reload: every token verified again; each distinct token once. */
  private async verifyAll(): Promise<void> {
    const verdicts = new Map<string, Promise<PlinthError | null>>();
    for (const client of [...this.open]) {
      const token = client.token;
      if (token === null || client.closed) continue;
      let verdict = verdicts.get(token);
      if (!verdict) {
        verdict = this.keys.verify(token).then(
          () => null,
          (err) => (err instanceof PlinthError ? err : unauthorized('JWT invalid')),
        );
        verdicts.set(token, verdict);
      }
      const refusal = await verdict;
      // A client that sent a new token meanwhile had it verified against the new keys already.
      if (refusal && client.token === token) this.refuse(client, refusal, 'token no longer valid');
    }
  }

  private closeSessions(ended: Set<string>): void {
    for (const client of this.open) {
      const session = client.sessionId;
      if (session !== undefined && ended.has(session)) this.refuse(client, unauthorized(SESSION_ENDED), 'session ended');
    }
  }

  private async checkAllSessions(): Promise<void> {
    const sessions = new Set<string>();
    for (const client of this.open) if (client.sessionId !== undefined) sessions.add(client.sessionId);
    if (sessions.size === 0) return;
    try {
      this.closeSessions(await this.endedSessions([...sessions]));
    } catch (err) {
      this.log.warn(`realtime: checking open sockets' sessions failed: ${(err as Error).message}`);
    }
  }

  private async endedSessions(ids: string[]): Promise<Set<string>> {
    const rows = await this.sql<{ id: string }[]>`select id from auth.ended_sessions(${ids}::text[]) as id`;
    return new Set(rows.map((r) => r.id));
  }

  private refuse(client: Client, err: PlinthError, reason: string): void {
    if (client.closed) return;
    client.error(err.code, err.message);
    client.close(CLOSE_UNAUTHORIZED, reason);
  }
}
