// Bytes in an S3-compatible bucket (AWS, MinIO, R2, s3rver), under objects/<key>. lib-storage's
// Upload streams the body in parts (a few parts in memory at a time); S3 makes an object visible
// only when the upload completes, and an error aborts the multipart upload.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadBucketCommand,
  S3Client,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import fs from 'node:fs';
import { Agent } from 'undici';
import type { Config } from '../../core/config.js';
import { assertKey, type StorageBackend } from './adapter.js';
import { presignedGets } from './s3-urls.js';
import { S3ObjectBody } from './s3-body.js';

const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;
/** Connections kept to S3 for reads (the SDK's own default for its requests). */
const READ_CONNECTIONS = 50;
/** Seconds a read's presigned URL is valid: it never leaves the sidecar, and is used at once. */
const READ_URL_EXPIRY = 900;

export function s3Backend(cfg: Config['storage']['s3']): StorageBackend {
  const client = s3Client(cfg, cfg.endpoint);
  const Bucket = cfg.bucket;
  const objectKey = (key: string) => `objects/${assertKey(key)}`;
  // Reads are presigned GETs sent through undici (see S3ObjectBody), over connections of their own.
  const reads = new Agent({ connections: READ_CONNECTIONS });
  const presign = presignedGets(client, Bucket);

  const backend: StorageBackend = {
    name: 's3',

    async put(key, body) {
      const upload = new Upload({
        client,
        params: { Bucket, Key: objectKey(key), Body: body },
        partSize: PART_SIZE,
        queueSize: PARTS_IN_FLIGHT,
        // We abort ourselves: lib-storage's own abort replaces the real error with the abort's
        // (and some S3-compatible servers have no AbortMultipartUpload at all).
        leavePartsOnError: true,
      });
      // A failing body must stop the upload even if lib-storage is waiting on a part request.
      const onError = () => void upload.abort().catch(() => {});
      body.once('error', onError);
      try {
        await upload.done();
      } catch (err) {
        const uploadId = (upload as unknown as { uploadId?: string }).uploadId;
        if (uploadId) await client.send(new AbortMultipartUploadCommand({ Bucket, Key: objectKey(key), UploadId: uploadId })).catch(() => {});
        throw body.errored ?? err;
      } finally {
        body.off('error', onError);
      }
    },

    async get(key, range) {
      return S3ObjectBody.open(reads, await presign(objectKey(key), READ_URL_EXPIRY), key, range);
    },

    async delete(key) {
      await client.send(new DeleteObjectCommand({ Bucket, Key: objectKey(key) }));
    },

    async check() {
      await client.send(new HeadBucketCommand({ Bucket }), { abortSignal: AbortSignal.timeout(2000) });
      return { backend: 's3', bucket: Bucket };
    },

    async close() {
      client.destroy();
      await reads.destroy();
    },

    // Staged objects are multipart uploads: each piece a part (S3 wants 5 MiB but for the last),
    // readable only once completed.
    staged: {
      minPiece: 5 * 1024 * 1024,
      async begin(key) {
        const out = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: objectKey(key) }));
        return out.UploadId!;
      },
      async storePiece(key, handle, n, file, length) {
        const Body = fs.createReadStream(file, { start: 0, end: length - 1 });
        try {
          const out = await client.send(new UploadPartCommand({ Bucket, Key: objectKey(key), UploadId: handle!, PartNumber: n, Body, ContentLength: length }));
          return { n, tag: out.ETag!, size: length };
        } finally {
          Body.destroy();
        }
      },
      async finish(key, handle, pieces, file, length) {
        const all = [...pieces];
        if (length > 0) all.push(await this.storePiece(key, handle, all.length + 1, file, length));
        if (all.length === 0) {
          // An empty object: S3 completes no multipart upload without parts.
          await client.send(new PutObjectCommand({ Bucket, Key: objectKey(key), Body: Buffer.alloc(0) }));
          await this.abandon(key, handle);
          return;
        }
        await client.send(new CompleteMultipartUploadCommand({
          Bucket, Key: objectKey(key), UploadId: handle!,
          MultipartUpload: { Parts: all.map((p) => ({ PartNumber: p.n, ETag: p.tag })) },
        }));
      },
      async abandon(key, handle) {
        if (!handle) return;
        await client.send(new AbortMultipartUploadCommand({ Bucket, Key: objectKey(key), UploadId: handle })).catch(() => {});
      },
    },
  };
  if (cfg.downloads === 'redirect') {
    // Presigned URLs name the host clients use, which may differ from the one Plinth reaches.
    // Signing is local: this client never opens a connection.
    const presignPublic = presignedGets(s3Client(cfg, cfg.publicEndpoint ?? cfg.endpoint), Bucket);
    backend.downloadUrl = async (key, answer) => (await presignPublic(objectKey(key), cfg.redirectExpiry, answer)).toString();
  }
  return backend;
}

export function s3Client(cfg: Config['storage']['s3'], endpoint: string | undefined): S3Client {
  return new S3Client({
    endpoint,
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle,
    credentials: cfg.accessKeyId && cfg.secretAccessKey ? { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } : undefined,
    // Streamed bodies with the newer default checksums get their chunk framing stored as data on
    // several S3-compatible servers (s3rver among them); checksums only where an API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
