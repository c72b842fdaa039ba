// Presigned GET URLs of S3 objects: what the store reads with (never handed out), and what a
// redirected download sends the client to.
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl, S3RequestPresigner } from '@aws-sdk/s3-request-presigner';
import type { DownloadAnswer } from './adapter.js';

/** Where the object URL's path is found in a presigned URL, to resolve the endpoint once. */
const PROBE_KEY = 'objects/00000000-0000-0000-0000-000000000000';

/** Signs a GET of object `key` valid for `expiresIn` seconds, answered with `answer`'s headers when given. */
export type PresignGet = (key: string, expiresIn: number, answer?: DownloadAnswer) => Promise<URL>;

/**
 * Presigned GET URLs of objects. The SDK's getSignedUrl resolves the endpoint and derives the
 * signing key on every call (0.86 ms of CPU here); an object's URL differs from another's only by
 * its key, so the endpoint (path-style or virtual-hosted, region and service) is taken once from a
 * URL the SDK presigns for a probe key, and one presigner, which keeps its signing key, signs each
 * URL (0.05 ms). Signing other than SigV4 (a multi-region access point) keeps getSignedUrl.
 */
export function presignedGets(client: S3Client, Bucket: string): PresignGet {
  const bySdk: PresignGet = async (Key, expiresIn, answer) => {
    const command = new GetObjectCommand({
      Bucket,
      Key,
      ResponseContentType: answer?.contentType,
      ResponseContentDisposition: answer?.contentDisposition,
      ResponseCacheControl: answer?.cacheControl,
    });
    return new URL(await getSignedUrl(client, command, { expiresIn }));
  };
  let resolving: Promise<{ probe: URL; presigner: S3RequestPresigner } | null> | undefined;
  const resolve = async () => {
    const probe = await bySdk(PROBE_KEY, 60);
    const [, , region, service] = (probe.searchParams.get('X-Amz-Credential') ?? '').split('/');
    if (probe.searchParams.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256' || !region || !service || !probe.pathname.endsWith(`/${PROBE_KEY}`)) return null;
    return { probe, presigner: new S3RequestPresigner({ ...client.config, region, signingName: service }) };
  };
  return async (key, expiresIn, answer) => {
    // A failure (credentials not found yet) is not kept: the next call resolves again.
    const resolved = await (resolving ??= resolve().catch((err) => {
      resolving = undefined;
      throw err;
    }));
    if (!resolved) return bySdk(key, expiresIn, answer);
    const { probe, presigner } = resolved;
    const path = probe.pathname.slice(0, -PROBE_KEY.length) + key;
    const port = probe.port ? Number(probe.port) : undefined;
    // S3's names for GetObject's Response* parameters.
    const overrides: Record<string, string> = answer
      ? { 'response-content-type': answer.contentType, 'response-content-disposition': answer.contentDisposition, 'response-cache-control': answer.cacheControl }
      : {};
    const request = { method: 'GET', protocol: probe.protocol, hostname: probe.hostname, port, path, query: overrides, headers: { host: probe.host } };
    const { query } = await presigner.presign(request as Parameters<S3RequestPresigner['presign']>[0], { expiresIn });
    const search = Object.entries(query as Record<string, string>).map(([k, v]) => `${uriEncode(k)}=${uriEncode(v)}`).join('&');
    return new URL(`${probe.origin}${path}?${search}`);
  };
}

/** RFC 3986 percent-encoding, as SigV4 canonicalizes a query. */
const uriEncode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
