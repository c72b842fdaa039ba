// The Supabase Storage API under /storage/v1: the paths, bodies and answers storage-js uses.
// Handlers are thin: read the request, one call into buckets.ts / objects.ts / signed.ts / tus.ts.
// Two scopes: JSON bodies for everything but uploads, whose bodies are streamed untouched.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import type { Claims } from '../core/db.js';
import { sendCurrent } from '../storage/send.js';
import { admitUpload, refusedUnread } from '../storage/upload.js';
import { readObjectBody } from './body.js';
import { createBucket, deleteBucket, emptyBucket, getBucket, listBuckets, updateBucket } from './buckets.js';
import { invalid, objectNotFound, renderError, StorageApiError } from './errors.js';
import { checkObjectName, copyObject, findObject, listObjects, moveObject, putObject, removeObjects, type WriteMode } from './objects.js';
import { sendBucketObject } from './send.js';
import { openSignedDownload, openSignedUpload, revokeSignedUrl, signDownloads, signUpload } from './signed.js';
import type { BucketsService } from './service.js';
import { appendUpload, cancelUpload, createUpload, parseUploadUrl, type Target, TUS_EXTENSIONS, TUS_VERSION, uploadNotFound, uploadStatus, uploadTarget } from './tus.js';

const PREFIX = '/storage/v1';
const ANON: Claims = { role: 'anon' };

const withCaller = { caller: {} };
// Public downloads need no key at all; a token, if sent, is still honoured.
const anyone = { caller: { optional: true } };

const claimsOf = (request: FastifyRequest): Claims => request.caller?.claims ?? ANON;

type Params = { bucket: string; '*': string; id: string };

function target(request: FastifyRequest) {
  const p = request.params as Params;
  return { bucket: p.bucket, name: checkObjectName(p['*']) };
}

const bucketBody = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    public: { type: 'boolean' },
    type: { type: 'string' },
    file_size_limit: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string' }, { type: 'null' }] },
    allowed_mime_types: { anyOf: [{ type: 'array', items: { type: 'string' } }, { type: 'null' }] },
  },
} as const;

const moveBody = {
  type: 'object',
  required: ['bucketId', 'sourceKey', 'destinationKey'],
  properties: {
    bucketId: { type: 'string', minLength: 1 },
    sourceKey: { type: 'string', minLength: 1 },
    destinationKey: { type: 'string', minLength: 1 },
    destinationBucket: { type: 'string' },
  },
} as const;

export async function bucketsRoutes(app: FastifyInstance, { plinth, buckets }: { plinth: Plinth; buckets: BucketsService }) {
  const { storage, tus } = buckets;

  async function download(request: FastifyRequest, reply: FastifyReply, claims: Claims) {
    const { bucket, name } = target(request);
    const query = request.query as { download?: string };
    return sendCurrent(
      async () => {
        const found = await findObject(storage, claims, bucket, name);
        if (!found) throw objectNotFound();
        return found;
      },
      (found) => found.blob.key,
      (found) => sendBucketObject(request, reply, storage.backend, found.row, found.blob, { download: query.download, head: request.method === 'HEAD' }, plinth.log),
    );
  }

  async function info(request: FastifyRequest, claims: Claims) {
    const { bucket, name } = target(request);
    const found = await findObject(storage, claims, bucket, name);
    if (!found) throw objectNotFound();
    const { row, blob } = found;
    const meta = row.metadata ?? {};
    return {
      id: row.id,
      name: row.name,
      version: row.version,
      bucket_id: row.bucket_id,
      size: Number(blob.size),
      content_type: blob.content_type,
      cache_control: meta.cacheControl ?? null,
      etag: `"${blob.sha256}"`,
      metadata: row.user_metadata,
      last_modified: row.updated_at,
      created_at: row.created_at,
    };
  }

  await app.register(async (json) => {
    json.setErrorHandler(renderError(plinth.log));

    json.get(`${PREFIX}/bucket`, { config: withCaller }, async (request) => {
      const q = request.query as Record<string, string>;
      return listBuckets(storage, callerOf(request).claims, {
        limit: q.limit === undefined ? undefined : Number(q.limit) || 0,
        offset: Number(q.offset) || 0,
        search: q.search,
        sortColumn: q.sortColumn,
        sortOrder: q.sortOrder,
      });
    });
    json.get(`${PREFIX}/bucket/:id`, { config: withCaller }, async (request) => getBucket(storage, callerOf(request).claims, (request.params as Params).id));
    json.post(`${PREFIX}/bucket`, { config: withCaller, schema: { body: bucketBody } }, async (request) => {
      const body = request.body as { id?: string; name?: string; public?: boolean; file_size_limit?: unknown; allowed_mime_types?: string[] | null };
      const id = body.id ?? body.name;
      if (!id) throw invalid('A bucket needs an id (or a name)');
      if (body.name !== undefined && body.name !== id) throw invalid('A bucket\'s name is its id: send the same value, or only one of them');
      return createBucket(storage, callerOf(request).claims, id, body);
    });
    json.put(`${PREFIX}/bucket/:id`, { config: withCaller, schema: { body: bucketBody } }, async (request) =>
      updateBucket(storage, callerOf(request).claims, (request.params as Params).id, request.body as never),
    );
    json.post(`${PREFIX}/bucket/:id/empty`, { config: withCaller }, async (request) => emptyBucket(storage, callerOf(request).claims, (request.params as Params).id));
    json.delete(`${PREFIX}/bucket/:id`, { config: withCaller }, async (request) => deleteBucket(storage, callerOf(request).claims, (request.params as Params).id));

    json.post(`${PREFIX}/object/list/:bucket`, {
      config: withCaller,
      schema: {
        body: {
          type: 'object',
          properties: {
            prefix: { type: 'string' },
            limit: { type: 'integer', minimum: 0, maximum: 1000 },
            offset: { type: 'integer', minimum: 0 },
            search: { type: 'string' },
            sortBy: { type: 'object', properties: { column: { type: 'string' }, order: { type: 'string' } } },
          },
        },
      },
    }, async (request) => {
      const b = (request.body ?? {}) as { prefix?: string; limit?: number; offset?: number; search?: string; sortBy?: { column?: string; order?: string } };
      return listObjects(storage, callerOf(request).claims, (request.params as Params).bucket, {
        prefix: b.prefix ?? '',
        limit: b.limit ?? 100,
        offset: b.offset ?? 0,
        search: b.search ?? '',
        sortBy: { column: b.sortBy?.column ?? 'name', order: b.sortBy?.order ?? 'asc' },
      });
    });

    json.post(`${PREFIX}/object/move`, { config: withCaller, schema: { body: moveBody } }, async (request) => {
      const b = request.body as { bucketId: string; sourceKey: string; destinationKey: string; destinationBucket?: string };
      const to = { bucket: b.destinationBucket || b.bucketId, name: checkObjectName(b.destinationKey) };
      const id = await moveObject(storage, callerOf(request).claims, { bucket: b.bucketId, name: checkObjectName(b.sourceKey) }, to);
      return { message: 'Successfully moved', Id: id, Key: `${to.bucket}/${to.name}` };
    });
    json.post(`${PREFIX}/object/copy`, { config: withCaller, schema: { body: moveBody } }, async (request, reply) => {
      const b = request.body as { bucketId: string; sourceKey: string; destinationKey: string; destinationBucket?: string };
      const to = { bucket: b.destinationBucket || b.bucketId, name: checkObjectName(b.destinationKey) };
      const release = admitUpload(storage, request.ip);
      reply.raw.once('close', release);
      const upsert = request.headers['x-upsert'] === 'true';
      const out = await copyObject(storage, callerOf(request).claims, { bucket: b.bucketId, name: checkObjectName(b.sourceKey) }, to, upsert, request.raw);
      return { Id: out.id, Key: out.key };
    });

    json.delete(`${PREFIX}/object/:bucket`, {
      config: withCaller,
      schema: { body: { type: 'object', required: ['prefixes'], properties: { prefixes: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string' } } } } },
    }, async (request) => {
      const { prefixes } = request.body as { prefixes: string[] };
      return removeObjects(storage, callerOf(request).claims, (request.params as Params).bucket, prefixes);
    });
    json.delete(`${PREFIX}/object/:bucket/*`, { config: withCaller }, async (request) => {
      const { bucket, name } = target(request);
      const gone = await removeObjects(storage, callerOf(request).claims, bucket, [name]);
      if (gone.length === 0) throw objectNotFound();
      return { message: 'Successfully deleted' };
    });

    const expiresBody = { type: 'object', required: ['expiresIn'], properties: { expiresIn: { type: 'integer' } } } as const;
    json.post(`${PREFIX}/object/sign/:bucket/*`, { config: withCaller, schema: { body: expiresBody } }, async (request) => {
      const { bucket, name } = target(request);
      const [one] = await signDownloads(storage, callerOf(request).claims, bucket, [name], (request.body as { expiresIn: number }).expiresIn);
      if (!one.signedURL) throw objectNotFound();
      return { signedURL: one.signedURL, id: one.id };
    });
    json.post(`${PREFIX}/object/sign/:bucket`, {
      config: withCaller,
      schema: { body: { type: 'object', required: ['expiresIn', 'paths'], properties: { expiresIn: { type: 'integer' }, paths: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string' } } } } },
    }, async (request) => {
      const { expiresIn, paths } = request.body as { expiresIn: number; paths: string[] };
      return signDownloads(storage, callerOf(request).claims, (request.params as Params).bucket, paths, expiresIn);
    });
    json.get(`${PREFIX}/object/sign/:bucket/*`, async (request, reply) => {
      const { bucket, name } = target(request);
      const query = request.query as { token?: string; download?: string };
      return sendCurrent(
        () => openSignedDownload(storage, query.token, bucket, name),
        (found) => found.blob.key,
        (found) => sendBucketObject(request, reply, storage.backend, found.row, found.blob, { download: query.download, head: request.method === 'HEAD' }, plinth.log),
      );
    });
    json.post(`${PREFIX}/object/upload/sign/:bucket/*`, { config: withCaller }, async (request) => {
      const { bucket, name } = target(request);
      return signUpload(storage, callerOf(request).claims, bucket, name, request.headers['x-upsert'] === 'true');
    });
    // Beyond Supabase: a signed URL is revoked by the id returned when it was created.
    json.delete(`${PREFIX}/signed-url/:id`, { config: withCaller }, async (request) => {
      if (!(await revokeSignedUrl(storage, callerOf(request).claims, (request.params as Params).id))) {
        throw new StorageApiError(404, 'NotFound', 'No such signed URL among those you created');
      }
      return { message: 'Successfully revoked' };
    });

    json.get(`${PREFIX}/object/info/public/:bucket/*`, { config: anyone }, async (request) => info(request, claimsOf(request)));
    json.get(`${PREFIX}/object/info/authenticated/:bucket/*`, { config: withCaller }, async (request) => info(request, callerOf(request).claims));
    json.get(`${PREFIX}/object/info/:bucket/*`, { config: withCaller }, async (request) => info(request, callerOf(request).claims));
    json.get(`${PREFIX}/object/public/:bucket/*`, { config: anyone }, async (request, reply) => download(request, reply, claimsOf(request)));
    json.get(`${PREFIX}/object/authenticated/:bucket/*`, { config: withCaller }, async (request, reply) => download(request, reply, callerOf(request).claims));
    json.get(`${PREFIX}/object/:bucket/*`, { config: withCaller }, async (request, reply) => download(request, reply, callerOf(request).claims));

  });

  await app.register(async (raw) => {
    raw.setErrorHandler(renderError(plinth.log));
    // Upload bodies are the object's bytes: never parsed or size-limited by fastify.
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_req, _payload, done) => done(null));
    await raw.register(multipart, { defParamCharset: 'utf8' } as never);

    async function uploadSlot(request: FastifyRequest, reply: FastifyReply) {
      reply.raw.once('close', admitUpload(storage, request.ip));
    }

    async function uploadHandler(request: FastifyRequest, mode: WriteMode) {
      const { bucket, name } = target(request);
      const body = await readObjectBody(request);
      return putObject(storage, callerOf(request).claims, { bucket, name, mode, ...body, request: request.raw });
    }

    raw.post(`${PREFIX}/object/:bucket/*`, { config: withCaller, preHandler: uploadSlot }, async (request) => {
      const { id, key } = await uploadHandler(request, request.headers['x-upsert'] === 'true' ? 'upsert' : 'create');
      return { Id: id, Key: key };
    });
    raw.put(`${PREFIX}/object/upload/sign/:bucket/*`, { preHandler: uploadSlot }, async (request) => {
      const { bucket, name } = target(request);
      const { claims, mode } = await openSignedUpload(storage, (request.query as { token?: string }).token, bucket, name).catch((err) => {
        throw refusedUnread(err, request.raw, request.raw);
      });
      const body = await readObjectBody(request);
      const { id, key } = await putObject(storage, claims, { bucket, name, mode, ...body, request: request.raw });
      return { Id: id, Key: key };
    });
    raw.put(`${PREFIX}/object/:bucket/*`, { config: withCaller, preHandler: uploadSlot }, async (request) => {
      const { id, key } = await uploadHandler(request, 'update');
      return { Id: id, Key: key };
    });

  });
  // TUS 1.0 resumable uploads, at Supabase's paths; bodies are streamed untouched.
  await app.register(async (resumable) => {
    resumable.setErrorHandler(renderError(plinth.log));
    resumable.removeAllContentTypeParsers();
    resumable.addContentTypeParser('*', (_req, _payload, done) => done(null));
    resumable.addHook('onSend', async (_request, reply) => {
      reply.header('tus-resumable', TUS_VERSION);
    });
    // Every request but OPTIONS names the protocol version it speaks.
    resumable.addHook('preHandler', async (request, reply) => {
      if (request.method === 'OPTIONS' || request.headers['tus-resumable'] === TUS_VERSION) return;
      reply.header('tus-version', TUS_VERSION);
      throw new StorageApiError(412, 'PreconditionFailed', `Tus-Resumable: ${TUS_VERSION} is required (the only version served)`);
    });

    const base = `${PREFIX}/upload/resumable`;
    const origin = (request: FastifyRequest) => (plinth.config.publicUrlSet ? plinth.config.publicUrl : `${request.protocol}://${request.host}`);

    const discovery = async (_request: FastifyRequest, reply: FastifyReply) => {
      reply.code(204).headers({
        'tus-version': TUS_VERSION,
        'tus-extension': TUS_EXTENSIONS,
        'tus-max-size': String(plinth.config.storage.maxFileSize),
      });
    };

    // Two doors to the same uploads. At `base` the caller's own token decides. At `base/sign`
    // (as Supabase) a signed upload token in x-signature stands for its creator, for its one
    // object only: the upload is created, continued and written as the creator, under their RLS.
    type Uploader = { claims: Claims; upsert: boolean; only?: Target };
    const doors: { path: string; config: { caller?: object }; as: (request: FastifyRequest, target: Target) => Promise<Uploader> }[] = [
      {
        path: base,
        config: withCaller,
        as: async (request) => ({ claims: callerOf(request).claims, upsert: request.headers['x-upsert'] === 'true' }),
      },
      {
        path: `${base}/sign`,
        config: {},
        as: async (request, target) => {
          const signature = request.headers['x-signature'];
          if (typeof signature !== 'string' || signature === '') throw new StorageApiError(400, 'InvalidSignature', 'Missing x-signature header');
          const { claims, mode } = await openSignedUpload(storage, signature, target.bucket, target.name);
          return { claims, upsert: mode === 'upsert', only: target };
        },
      },
    ];

    for (const door of doors) {
      const uploadOf = (request: FastifyRequest) => {
        const parsed = parseUploadUrl((request.params as { uploadId: string }).uploadId);
        if (!parsed) throw uploadNotFound();
        return parsed;
      };

      resumable.options(door.path, discovery);
      resumable.options(`${door.path}/:uploadId`, discovery);

      resumable.post(door.path, { config: door.config }, async (request, reply) => {
        const metadata = request.headers['upload-metadata'] as string | undefined;
        let claims: Claims;
        let created: Awaited<ReturnType<typeof createUpload>>;
        try {
          const who = await door.as(request, uploadTarget(metadata));
          claims = who.claims;
          created = await createUpload(tus, claims, { length: request.headers['upload-length'] as string | undefined, metadata, upsert: who.upsert });
        } catch (err) {
          throw refusedUnread(err, request.raw, request.raw);
        }
        reply.code(201).headers({ location: `${origin(request)}${door.path}/${created.urlId}`, 'upload-expires': created.expiresAt.toUTCString() });
        // creation-with-upload: the first bytes may come with the POST.
        if (request.headers['content-type'] === 'application/offset+octet-stream' && Number(request.headers['content-length'] ?? 0) > 0) {
          reply.raw.once('close', admitUpload(storage, request.ip));
          const { offset } = await appendUpload(tus, claims, created.id, '0', request.raw);
          reply.header('upload-offset', String(offset));
        } else {
          request.raw.resume();
        }
        return reply.send();
      });

      resumable.head(`${door.path}/:uploadId`, { config: door.config }, async (request, reply) => {
        const upload = uploadOf(request);
        const who = await door.as(request, upload);
        const status = await uploadStatus(tus, who.claims, upload.id, who.only);
        reply.code(200).headers({
          'upload-offset': String(status.offset),
          'upload-length': String(status.length),
          'upload-expires': status.expiresAt.toUTCString(),
          'cache-control': 'no-store',
        });
        if (status.metadata) reply.header('upload-metadata', status.metadata);
        return reply.send();
      });

      resumable.patch(`${door.path}/:uploadId`, { config: door.config }, async (request, reply) => {
        if (request.headers['content-type'] !== 'application/offset+octet-stream') {
          throw refusedUnread(new StorageApiError(415, 'InvalidContentType', 'A PATCH body is Content-Type: application/offset+octet-stream'), request.raw, request.raw);
        }
        const upload = uploadOf(request);
        const who = await door.as(request, upload).catch((err) => {
          throw refusedUnread(err, request.raw, request.raw);
        });
        reply.raw.once('close', admitUpload(storage, request.ip));
        const { offset } = await appendUpload(tus, who.claims, upload.id, request.headers['upload-offset'] as string | undefined, request.raw, who.only)
          .catch((err) => {
            // Refused before its body was read (unknown upload, offset conflict): don't wait for it.
            throw request.raw.readableEnded || request.raw.destroyed ? err : refusedUnread(err, request.raw, request.raw);
          });
        return reply.code(204).header('upload-offset', String(offset)).send();
      });

      resumable.delete(`${door.path}/:uploadId`, { config: door.config }, async (request, reply) => {
        const upload = uploadOf(request);
        const who = await door.as(request, upload);
        await cancelUpload(tus, who.claims, upload.id, who.only);
        return reply.code(204).send();
      });
    }
  });
}
