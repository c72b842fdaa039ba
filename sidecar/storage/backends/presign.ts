// Presigned S3 GetObject URLs (Signature Version 4, query-string authentication): pure, no I/O.
// Written out here rather than through the SDK's request presigner, which is not a dependency;
// the algorithm is the one in AWS's "Authenticating Requests: Using Query Parameters".
import { createHash, createHmac } from 'node:crypto';

export interface PresignCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface PresignRequest {
  /** Where clients reach the S3 service, e.g. https://s3.eu-west-1.amazonaws.com or http://minio:9000. */
  endpoint: string;
  region: string;
  bucket: string;
  /** The object key (path segments separated by `/`). */
  key: string;
  /** Path style (endpoint/bucket/key) or virtual-hosted style (bucket.endpoint/key). */
  pathStyle: boolean;
  /** Seconds the URL stays valid (S3 allows 1 to 604800). */
  expiresIn: number;
  now: Date;
  /** `response-content-type` and the like: headers S3 sets on the answer from these parameters. */
  overrides?: Record<string, string>;
}

/** RFC 3986 percent-encoding, as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

export function presignGetObject(req: PresignRequest, creds: PresignCredentials): string {
  const base = new URL(req.endpoint);
  // A bucket name with dots breaks TLS wildcard certificates as a host name: such buckets go path style.
  const pathStyle = req.pathStyle || req.bucket.includes('.');
  const host = pathStyle ? base.host : `${req.bucket}.${base.host}`;
  const prefix = base.pathname.replace(/\/+$/, '');
  const keyPath = req.key.split('/').map(uriEncode).join('/');
  const path = pathStyle ? `${prefix}/${uriEncode(req.bucket)}/${keyPath}` : `${prefix}/${keyPath}`;

  const stamp = req.now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''); // 20130524T000000Z
  const day = stamp.slice(0, 8);
  const scope = `${day}/${req.region}/s3/aws4_request`;
  const params: Record<string, string> = {
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `${creds.accessKeyId}/${scope}`,
    'X-Amz-Date': stamp,
    'X-Amz-Expires': String(req.expiresIn),
    'X-Amz-SignedHeaders': 'host',
    ...(creds.sessionToken ? { 'X-Amz-Security-Token': creds.sessionToken } : {}),
    ...req.overrides,
  };
  const query = Object.entries(params)
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalRequest = ['GET', path, query, `host:${host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', stamp, scope, sha256(canonicalRequest)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), req.region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(stringToSign).digest('hex');
  return `${base.protocol}//${host}${path}?${query}&X-Amz-Signature=${signature}`;
}
