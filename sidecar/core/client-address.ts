// Who the client is, by address: the connection's peer, or, behind proxies the operator declared
// (PLINTH_TRUST_PROXY), the right-most X-Forwarded-For entry that no trusted proxy wrote. Rate
// limits, connection caps and fastify's request.ip all use this one rule.
import type { IncomingMessage } from 'node:http';
import net from 'node:net';

/** `false`: clients connect directly; a number: that many proxies in front; a list: the proxies' addresses or CIDR blocks. */
export type TrustProxy = false | number | readonly string[];

/** Whether the address at `hop` (0 = the connection's peer, 1 = the right-most forwarded entry, …) is a proxy to look past. */
export type ProxyTrust = (address: string, hop: number) => boolean;

const trustNone: ProxyTrust = () => false;

/** Parses one entry of a PLINTH_TRUST_PROXY list: an address or a CIDR block; null when it is neither. */
export function parseProxyEntry(entry: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const version = net.isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = slash === -1 ? max : Number(entry.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash !== -1 && !/^\d+$/.test(entry.slice(slash + 1)))) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** The trust function for a PLINTH_TRUST_PROXY setting (validated by the config reader). */
export function proxyTrust(setting: TrustProxy): ProxyTrust {
  if (setting === false) return trustNone;
  if (typeof setting === 'number') {
    const hops = setting;
    return (_address, hop) => hop < hops;
  }
  const proxies = new net.BlockList();
  for (const entry of setting) {
    const parsed = parseProxyEntry(entry);
    if (!parsed) throw new Error(`not an address or CIDR block: ${entry}`);
    proxies.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return (address) => {
    const version = net.isIP(address);
    if (version === 0) return false;
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    if (version === 6 && address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) return proxies.check(address.slice(7), 'ipv4');
    return proxies.check(address, version === 4 ? 'ipv4' : 'ipv6');
  };
}

/**
 * The client's address for a raw request: walk from the connection's peer leftwards through
 * X-Forwarded-For while each address is a trusted proxy; the first one that is not is the client
 * (the left-most entry if every one is). The same walk fastify does for request.ip.
 */
export function clientAddress(req: IncomingMessage, trust: ProxyTrust): string {
  const peer = req.socket.remoteAddress ?? '';
  if (trust === trustNone || !trust(peer, 0)) return peer;
  const header = req.headers['x-forwarded-for'];
  if (typeof header !== 'string') return peer;
  let client = peer;
  let hop = 1;
  let end = header.length;
  for (let i = header.length - 1; i >= -1; i--) {
    if (i !== -1 && header.charCodeAt(i) !== 44 /* , */) continue;
    const entry = header.slice(i + 1, end).trim();
    end = i;
    if (entry === '') continue;
    client = entry;
    if (!trust(entry, hop++)) break;
  }
  return client;
}
