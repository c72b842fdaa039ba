// Presigned GetObject URLs: AWS's published example, and the SDK's own signer on the same inputs.
import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { presignGetObject, uriEncode } from '../sidecar/storage/backends/presign.js';

// The SDK signer's hash interface over node:crypto (HMAC when given a secret).
class Sha256 {
  private h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array));
  }
  update(data: string | ArrayBuffer | ArrayBufferView) {
    this.h.update(typeof data === 'string' ? data : Buffer.from(data as Uint8Array));
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
}

const example = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

describe('presignGetObject', () => {
  it('reproduces the example in AWS\'s query-string authentication documentation', () => {
    const url = presignGetObject(
      { endpoint: 'https://s3.amazonaws.com', region: 'us-east-1', bucket: 'examplebucket', key: 'test.txt', pathStyle: false, expiresIn: 86400, now: new Date('2013-05-24T00:00:00Z') },
      example,
    );
    expect(url).toBe(
      'https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
    );
  });

  const cases: { name: string; endpoint: string; pathStyle: boolean; bucket?: string; sessionToken?: string; overrides: Record<string, string> }[] = [
    { name: 'path style with a port, response overrides', endpoint: 'http://127.0.0.1:9000', pathStyle: true, overrides: { 'response-content-type': 'text/plain; charset=utf-8', 'response-content-disposition': 'attachment; filename="a b(1).txt"; filename*=UTF-8\'\'a%20b%281%29.txt' } },
    { name: 'virtual-hosted style with a session token', endpoint: 'https://s3.eu-west-1.amazonaws.com', pathStyle: false, sessionToken: 'token/with+odd=chars', overrides: {} },
    { name: 'a bucket with dots goes path style', endpoint: 'https://s3.eu-west-1.amazonaws.com', pathStyle: false, bucket: 'my.bucket', overrides: { 'response-cache-control': 'max-age=3600' } },
  ];
  for (const c of cases) {
    it(`matches the SDK's signer: ${c.name}`, async () => {
      const bucket = c.bucket ?? 'plinth-files';
      const now = new Date('2026-11-27T12:34:56Z');
      const creds = { ...example, sessionToken: c.sessionToken };
      const ours = new URL(presignGetObject({ endpoint: c.endpoint, region: 'eu-west-1', bucket, key: 'objects/5f0c4c8e-1d1e-4a57-9a55-8d1f0b1e2c3d', pathStyle: c.pathStyle, expiresIn: 60, now, overrides: c.overrides }, creds));
      const signer = new SignatureV4({ service: 's3', region: 'eu-west-1', credentials: creds, sha256: Sha256, uriEscapePath: false, applyChecksum: false });
      const query: Record<string, string> = { ...c.overrides };
      const signed = await signer.presign(
        { method: 'GET', protocol: ours.protocol, hostname: ours.hostname, port: ours.port ? Number(ours.port) : undefined, path: ours.pathname, query, headers: { host: ours.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
        // As the SDK's request presigner calls it: payload unsigned, that header neither signed nor hoisted.
        { expiresIn: 60, signingDate: now, unhoistableHeaders: new Set(['x-amz-content-sha256']), unsignableHeaders: new Set(['x-amz-content-sha256']) },
      );
      expect(ours.searchParams.get('X-Amz-Signature')).toBe(signed.query?.['X-Amz-Signature']);
      expect(Object.fromEntries(ours.searchParams)).toEqual(signed.query);
    });
  }

  it('percent-encodes as SigV4 wants', () => {
    expect(uriEncode("a b/c!'()*~._-")).toBe('a%20b%2Fc%21%27%28%29%2A~._-');
  });
});
