// Tokens minted with node:crypto are the ones jose writes: same header and claims, and they verify
// with jose against the public key, for every signing algorithm Plinth offers.
import * as jose from 'jose';
import { expect, test } from 'vitest';
import { JWT_ALGORITHMS } from '../sidecar/core/config.ts';
import { nodeSigner, sign, signWithNode } from '../sidecar/core/keys.ts';

const claims = { sub: '5f0c1c2e-8f7a-4a39-9d2a-3b6d1f0e9a11', aud: 'authenticated', role: 'authenticated', email: 'ünïcode@example.test', amr: [{ method: 'password', timestamp: 1 }] };

test.each(JWT_ALGORITHMS)('%s: the node:crypto token verifies and matches jose’s header and claims', async (alg) => {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  // As stored in auth.signing_keys: with its kid and alg.
  const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'k1', alg };
  const signer = nodeSigner(jwk, alg, 'k1');
  expect(signer).not.toBeNull();
  const iat = 1_700_000_000;
  const exp = 4_000_000_000;
  const ours = signWithNode(signer!, claims, iat, exp);
  const theirs = await sign(claims, privateKey, alg, 'k1', iat, exp);
  // Header and claims byte for byte; ECDSA and PSS signatures are randomised, so only they differ.
  expect(ours.split('.').slice(0, 2)).toEqual(theirs.split('.').slice(0, 2));
  const { payload, protectedHeader } = await jose.jwtVerify(ours, publicKey, { algorithms: [alg], audience: 'authenticated', currentDate: new Date(iat * 1000) });
  expect(protectedHeader).toEqual({ alg, kid: 'k1', typ: 'JWT' });
  expect(payload).toEqual({ ...claims, iat, exp });
  // A token whose signature was altered is refused.
  const bad = `${ours.slice(0, -4)}${ours.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  await expect(jose.jwtVerify(bad, publicKey, { algorithms: [alg], currentDate: new Date(iat * 1000) })).rejects.toThrow();
});

test('claims without an audience get Plinth’s, as jose’s builder gives them', async () => {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const signer = nodeSigner(await jose.exportJWK(privateKey), 'ES256', 'k2')!;
  const ours = signWithNode(signer, { role: 'anon' }, 1, 2);
  const theirs = await sign({ role: 'anon' }, privateKey, 'ES256', 'k2', 1, 2);
  expect(ours.split('.')[1]).toBe(theirs.split('.')[1]);
});
