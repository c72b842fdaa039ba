// A WebSocket client for the realtime tests: records every message and waits for conditions.
import WebSocket from 'ws';

export interface Message {
  type: string;
  id?: string;
  event?: string;
  table?: string;
  position?: number;
  new?: Record<string, unknown>;
  old?: Record<string, unknown>;
  code?: string;
  message?: string;
  [k: string]: unknown;
}

export class RealtimeClient {
  readonly messages: Message[] = [];
  closed: { code: number; reason: string } | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => this.messages.push(JSON.parse(data.toString())));
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  /** Connects; `query` is appended to /realtime (e.g. { apikey }). Resolves once open. */
  static async connect(baseUrl: string, query: Record<string, string> = {}): Promise<RealtimeClient> {
    const url = new URL('/realtime', baseUrl.replace(/^http/, 'ws'));
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const ws = new WebSocket(url);
    const client = new RealtimeClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  /** Connects with a token and waits for the ready message. */
  static async open(baseUrl: string, token: string): Promise<RealtimeClient> {
    const c = await RealtimeClient.connect(baseUrl, { access_token: token });
    await c.waitFor((m) => m.type === 'ready');
    return c;
  }

  send(msg: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** Subscribes and waits for the acknowledgement (or the error); returns that message. */
  async subscribe(sub: { id: string; table: string; filter?: string; events?: string[]; from?: number }): Promise<Message> {
    this.send({ type: 'subscribe', ...sub });
    return this.waitFor((m) => (m.type === 'subscribed' || m.type === 'error') && m.id === sub.id);
  }

  changes(id?: string): Message[] {
    return this.messages.filter((m) => m.type === 'change' && (id === undefined || m.id === id));
  }

  async waitFor(pred: (m: Message) => boolean, timeoutMs = 20_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`timed out; messages so far: ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async waitUntil(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last messages: ${JSON.stringify(this.messages.slice(-3))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async waitClosed(timeoutMs = 30_000): Promise<{ code: number; reason: string }> {
    await this.waitUntil(() => this.closed !== null, timeoutMs, 'close');
    return this.closed!;
  }

  close(): void {
    this.ws.close();
  }
}
