// The front door's pure rules, table-driven: whose address a request is, which proxies are trusted,
// which request targets route where, which headers a Connection header makes hop-by-hop.
import type { IncomingMessage } from 'node:http';
import { describe, expect, test } from 'vitest';
import { connectionListed } from '../sidecar/app/proxy.ts';
import { originForm } from '../sidecar/app/request-target.ts';
import { clientAddress, proxyTrust, type TrustProxy } from '../sidecar/core/client-address.ts';
import { ConfigError, loadConfig } from '../sidecar/core/config.ts';

const request = (peer: string, xff?: string) => ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

describe('clientAddress', () => {
  const cases: [string, TrustProxy, string, string | undefined, string][] = [
    ['no trust: the peer, whatever the header says', false, '203.0.113.9', '1.2.3.4', '203.0.113.9'],
    ['one hop: the entry the proxy appended', 1, '10.0.0.2', '6.6.6.6, 203.0.113.7', '203.0.113.7'],
    ['one hop, no header: the peer', 1, '10.0.0.2', undefined, '10.0.0.2'],
    ['two hops: the second entry from the right', 2, '10.0.0.2', '6.6.6.6, 203.0.113.7, 10.0.0.3', '203.0.113.7'],
    ['more hops than entries: the left-most entry', 3, '10.0.0.2', '203.0.113.7', '203.0.113.7'],
    ['empty entries are skipped', 1, '10.0.0.2', '6.6.6.6,, 203.0.113.7 ,', '203.0.113.7'],
    ['listed proxy: past it to the client', ['10.0.0.0/8'], '10.1.2.3', '6.6.6.6, 203.0.113.7', '203.0.113.7'],
    ['listed proxies chained', ['10.0.0.0/8', '192.168.1.7'], '10.1.2.3', '6.6.6.6, 203.0.113.7, 192.168.1.7', '203.0.113.7'],
    ['a peer that is not a listed proxy: the peer', ['10.0.0.0/8'], '203.0.113.9', '1.2.3.4', '203.0.113.9'],
    ['an IPv4-mapped peer matches its IPv4 block', ['10.0.0.0/8'], '::ffff:10.0.0.5', '203.0.113.7', '203.0.113.7'],
    ['IPv6 blocks', ['fd00::/8'], 'fd00::1', '2001:db8::5', '2001:db8::5'],
    ['a garbage entry is not a proxy: it is the client', ['10.0.0.0/8'], '10.0.0.5', 'garbage', 'garbage'],
  ];
  test.each(cases)('%s', (_name, setting, peer, xff, expected) => {
    expect(clientAddress(request(peer, xff), proxyTrust(setting))).toBe(expected);
  });
});

describe('PLINTH_TRUST_PROXY', () => {
  const trustProxy = (value: string) => loadConfig({ PLINTH_TRUST_PROXY: value }, '/tmp').trustProxy;

  test.each([
    ['', false],
    ['false', false],
    ['0', false],
    ['1', 1],
    ['2', 2],
    ['10.0.0.0/8', ['10.0.0.0/8']],
    ['10.0.0.0/8, 192.168.1.7 ,fd00::/8', ['10.0.0.0/8', '192.168.1.7', 'fd00::/8']],
  ] as const)('%j is %j', (value, expected) => {
    expect(trustProxy(value)).toEqual(expected);
  });

  test('true is refused, with what to set instead', () => {
    expect(() => trustProxy('true')).toThrow(ConfigError);
    expect(() => trustProxy('true')).toThrow(/number of proxies.*PLINTH_TRUST_PROXY=1.*addresses/);
  });

  test.each(['10.0.0.0/33', 'proxy.example', '10.0.0.1/', '11', '10.0.0.0/8,nope'])('%j is refused', (value) => {
    expect(() => trustProxy(value)).toThrow(ConfigError);
  });
});

describe('originForm', () => {
  test.each([
    ['/todos?select=id', '/todos?select=id'],
    ['http://plinth.example/todos?select=id', '/todos?select=id'],
    ['HTTPS://plinth.example:8443/health', '/health'],
    ['http://plinth.example', '/'],
    ['http://plinth.example?x=1', '/?x=1'],
    ['http://user@plinth.example/a/../b', '/a/../b'],
    ['todos', null],
    ['ftp://plinth.example/todos', null],
    ['http://plinth.example#frag', null],
    ['*', null],
  ])('%j → %j', (target, expected) => {
    expect(originForm(target)).toBe(expected);
  });
});

describe('connectionListed', () => {
  test.each([
    [undefined, null],
    ['keep-alive', null],
    ['close', null],
    ['Keep-Alive', null],
    ['close, X-Secret-Hop', ['x-secret-hop']],
    ['keep-alive,  Foo ,bar,', ['foo', 'bar']],
    ['Upgrade', ['upgrade']],
  ])('%j → %j', (value, expected) => {
    expect(connectionListed(value)).toEqual(expected);
  });
});
