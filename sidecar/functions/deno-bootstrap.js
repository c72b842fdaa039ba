// Runs inside each Deno worker (not in Node): serves one user function on a unix socket that only
// the sidecar reaches. Plain JavaScript with no imports, so it loads in any Deno without a build.
// The sidecar passes the socket path and a per-process token as arguments (reading them needs no
// permission); every request must carry the token. (The function may see its own worker's token:
// it opens nothing but this socket, which only this function may reach anyway.)

const TOKEN_HEADER = 'x-plinth-worker-token';
const ERROR_HEADER = 'x-plinth-function-error';

/** Prints the module's `config` export as JSON: how the sidecar learns triggers and permissions. */
export function describe(mod) {
  const problem = typeof mod.default === 'function' ? null : 'has no default export function (export default async function handler(req: Request) { … })';
  let config = mod.config ?? {};
  try {
    config = JSON.parse(JSON.stringify(config));
  } catch {
    config = {};
  }
  console.log(JSON.stringify({ config, problem }));
}

export function serve(mod, name) {
  const [socket, token] = Deno.args;
  const handler = mod.default;

  // The sidecar holds our stdin: when it goes away (even killed), so do we.
  (async () => {
    try {
      for await (const _ of Deno.stdin.readable) {
        /* nothing is ever sent */
      }
    } catch {
      /* closed */
    }
    Deno.exit(0);
  })();
  // A stray rejected promise is the function's bug, not a reason to drop every other call.
  globalThis.addEventListener('unhandledrejection', (e) => {
    e.preventDefault();
    console.error(`function ${name}: unhandled rejection: ${e.reason?.stack ?? e.reason}`);
  });

  Deno.serve({ path: socket, onListen() { console.log('plinth:ready'); } }, async (req) => {
    if (req.headers.get(TOKEN_HEADER) !== token) return new Response(null, { status: 403 });
    if (req.headers.has('x-plinth-ping')) return new Response('pong');
    // The request is handed over as Deno made it (copying it into a new Request halved the
    // throughput); only its URL is shown as the caller addressed it, not as the socket's http+unix:.
    const raw = req.url;
    const path = raw.slice(raw.indexOf('/', raw.indexOf('//') + 2));
    Object.defineProperty(req, 'url', { value: `http://${req.headers.get('host') ?? 'localhost'}${path}` });
    try {
      const out = await handler(req);
      if (out instanceof Response) return out;
      if (out === undefined) return new Response(null, { status: 204 });
      return Response.json(out);
    } catch (err) {
      // The stack goes to the log (the sidecar reads our stderr); the caller only learns that it failed.
      console.error(`function ${name} failed: ${err?.stack ?? err}`);
      const message = String(err?.message ?? err).slice(0, 500);
      return new Response(null, { status: 500, headers: { [ERROR_HEADER]: encodeURIComponent(message) } });
    }
  });
}
