// Presigned GET URLs of S3 objects, signed by Plinth's own presigner (the endpoint resolved once).
// s3rver does not check SigV4 signatures, so each URL is checked here against an independent
// SigV4 verifier, which must also accept what the SDK's getSignedUrl makes for the same object.
import { createHash, createHmac } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { describe, expect, test } from 'vitest';
import type { Config } from '../sidecar/core/config.ts';
import { s3Client } from '../sidecar/storage/backends/s3.ts';
import { presignedGets } from '../sidecar/storage/backends/s3-urls.ts';

const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const KEY = 'objects/3f0c5a54-8d56-4c39-9f55-0b7f0f4f7d21';
const answer = {
  contentType: 'text/plain; charset=utf-8',
  contentDisposition: `attachment; filename="r\u00e9sum\u00e9 (1).txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20(1).txt`,
  cacheControl: 'private, no-cache',
};

const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

/** Whether `url` carries a valid SigV4 query signature made with `secret` (as S3 checks it). */
function signatureValid(url: URL, secret: string): boolean {
  const params = url.search
    .slice(1)
    .split('&')
    .map((pair) => pair.split('=').map(decodeURIComponent) as [string, string]);
  const get = (name: string) => params.find(([k]) => k === name)?.[1] ?? '';
  const [, date, region, service] = get('X-Amz-Credential').split('/');
  const signed = get('X-Amz-SignedHeaders').split(';');
  const headers: Record<string, string> = { host: url.host };
  const canonicalQuery = params
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [rfc3986(k), rfc3986(v)])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalRequest = ['GET', url.pathname, canonicalQuery, ...signed.map((h) => `${h}:${headers[h]}`), '', signed.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', get('X-Amz-Date'), scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  return get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256' && hmac(key, toSign).toString('hex') === get('X-Amz-Signature');
}

function settings(over: Partial<Config['storage']['s3']>): Config['storage']['s3'] {
  return {
    endpoint: undefined,
    region: 'us-east-1',
    bucket: 'plinth-files',
    accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    secretAccessKey: SECRET,
    forcePathStyle: false,
    downloads: 'proxy',
    publicEndpoint: undefined,
    redirectExpiry: 60,
    ...over,
  };
}

const stores: [string, Config['storage']['s3'], string][] = [
  ['AWS, virtual-hosted', settings({ region: 'eu-west-1' }), 'https://plinth-files.s3.eu-west-1.amazonaws.com/'],
  ['a local S3 on a port, path-style', settings({ endpoint: 'http://127.0.0.1:9000', forcePathStyle: true }), 'http://127.0.0.1:9000/plinth-files/'],
  ['MinIO over TLS on a port, path-style', settings({ endpoint: 'https://minio.internal:9443', forcePathStyle: true }), 'https://minio.internal:9443/plinth-files/'],
  ['R2 (region auto)', settings({ endpoint: 'https://0123456789abcdef.r2.cloudflarestorage.com', region: 'auto', forcePathStyle: true }), 'https://0123456789abcdef.r2.cloudflarestorage.com/plinth-files/'],
];

describe('presigned GET URLs', () => {
  for (const [name, cfg, prefix] of stores) {
    test(`${name}: signed as S3 checks it, for the object the SDK would name`, async () => {
      const client = s3Client(cfg, cfg.endpoint);
      const presign = presignedGets(client, cfg.bucket);
      const sdk = new URL(await getSignedUrl(client, new GetObjectCommand({ Bucket: cfg.bucket, Key: KEY }), { expiresIn: 900 }));
      expect(signatureValid(sdk, SECRET)).toBe(true);

      for (const withAnswer of [false, true]) {
        const url = await presign(KEY, withAnswer ? 60 : 900, withAnswer ? answer : undefined);
        expect(url.origin + url.pathname).toBe(prefix + KEY);
        expect(url.origin + url.pathname).toBe(sdk.origin + sdk.pathname);
        expect(url.searchParams.get('X-Amz-Credential')).toBe(sdk.searchParams.get('X-Amz-Credential'));
        expect(url.searchParams.get('X-Amz-Expires')).toBe(withAnswer ? '60' : '900');
        expect(url.searchParams.get('response-content-disposition')).toBe(withAnswer ? answer.contentDisposition : null);
        expect(url.searchParams.get('response-content-type')).toBe(withAnswer ? answer.contentType : null);
        expect(url.searchParams.get('response-cache-control')).toBe(withAnswer ? answer.cacheControl : null);
        expect(signatureValid(url, SECRET)).toBe(true);
        // The check can fail: another object, or another secret, does not verify.
        expect(signatureValid(new URL(url.toString().replace(KEY, `${KEY.slice(0, -1)}0`)), SECRET)).toBe(false);
        expect(signatureValid(url, `${SECRET}x`)).toBe(false);
      }
      client.destroy();
    });
  }
});
