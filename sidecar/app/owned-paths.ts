// Which request paths the sidecar serves itself, learned from the routes as they register: a
// static route owns its exact path; a route with parameters or a wildcard owns every path under
// its static prefix. Everything else belongs to PostgREST.

export class OwnedPaths {
  private readonly exact = new Set<string>();
  private prefixes: string[] = [];

  /** Records a route's URL pattern (fastify syntax: `/a/:id`, `/a/*`). */
  add(pattern: string): void {
    const dynamic = pattern.search(/[:*]/);
    if (dynamic === -1) {
      this.exact.add(pattern);
      return;
    }
    const prefix = pattern.slice(0, pattern.lastIndexOf('/', dynamic) + 1);
    if (prefix === '/') throw new Error(`route ${pattern} would take every path from the REST API`);
    if (!this.prefixes.includes(prefix)) this.prefixes = [...this.prefixes, prefix].sort((a, b) => b.length - a.length);
  }

  /** True when a request target (path and optional query) goes to the sidecar's own routes. */
  owns(url: string): boolean {
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (this.exact.has(path)) return true;
    for (const p of this.prefixes) if (path.startsWith(p)) return true;
    return false;
  }
}
