// The storage feature's HTTP face: POST /rpc/store_file, GET /rpc/retrieve_file (files owned by
// users) and /storage/upload, /storage/download, /storage/delete (files linked to rows). Handlers
// are thin: they parse and validate, then call files.ts / entities.ts; bytes stream straight through.
import multipart, { type Multipart } from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { callerOf, type Caller } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { ObjectNotFound } from './backends/adapter.js';
import { checkFilename, commitUpload, deleteEntityFile, describeEntity, findEntityFile, precheckUpload, type Entity } from './entities.js';
import { FILE_NOT_FOUND, findFile, storeFile } from './files.js';
import { discardObject, fileTooLarge, release, reserveObject, writeObject, type WrittenObject } from './objects.js';
import { basename, decodePathHeader, InvalidName, recoverUtf8, validateFilePath } from './paths.js';
import { sendObject } from './send.js';
import type { StorageService } from './service.js';

const CONTENT_TYPE = /^[A-Za-z0-9!#$&^_.+-]{1,127}\/[A-Za-z0-9!#$&^_.+-]{1,127}(\s*;[\x20-\x7e]*)?$/;
const MAX_FIELD_BYTES = 64 * 1024;

function invalid(message: string): PlinthError {
  return new PlinthError(400, message);
}

function filePath(raw: string, header: string): string {
  try {
    return validateFilePath(header === 'File-Path' ? decodePathHeader(raw) : raw);
  } catch (err) {
    if (err instanceof InvalidName) throw invalid(`Invalid ${header}: ${err.message}`);
    throw err;
  }
}

/** A header as text: raw UTF-8 bytes are accepted (Node reads header bytes as latin1). */
function headerText(raw: string | undefined): string | null {
  return raw === undefined ? null : recoverUtf8(raw);
}

function contentType(raw: string | undefined, fallback = 'application/octet-stream'): string {
  if (raw === undefined || raw === '') return fallback;
  if (!CONTENT_TYPE.test(raw)) throw invalid(`Invalid content type ${JSON.stringify(raw)}: expected type/subtype, e.g. image/png`);
  return raw;
}

function caller(request: FastifyRequest): Caller {
  return callerOf(request);
}

function jsonField(name: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw invalid(`The "${name}" form field is not valid JSON`);
  }
}

function toEntity(value: unknown): Entity {
  const v = value as Record<string, unknown>;
  const ok =
    v && typeof v === 'object' && !Array.isArray(v) &&
    typeof v.table === 'string' && typeof v.field === 'string' &&
    (typeof v.id === 'string' || typeof v.id === 'number') &&
    Object.keys(v).every((k) => ['table', 'id', 'field'].includes(k));
  if (!ok) throw invalid('The "entity" form field must be JSON {"table": "...", "id": "...", "field": "..."}');
  return { table: v.table as string, id: String(v.id), field: v.field as string };
}

const entityParams = {
  type: 'object',
  additionalProperties: false,
  required: ['table', 'id', 'field', 'filename'],
  properties: {
    table: { type: 'string', minLength: 1, maxLength: 63 },
    id: { type: 'string', minLength: 1, maxLength: 200 },
    field: { type: 'string', minLength: 1, maxLength: 63 },
    filename: { type: 'string', minLength: 1, maxLength: 1024 },
  },
} as const;

// Every storage route acts for a caller. `<img src>` cannot send headers, so downloads also take
// the anon key as ?apikey= (and only the anon key: a user token in a URL leaks into logs).
const withCaller = { caller: {} };
const withCallerOrAnonInQuery = { caller: { query: ['apikey'], queryRoles: ['anon'] } } as const;

export async function storageRoutes(app: FastifyInstance, { plinth, storage }: { plinth: Plinth; storage: StorageService }) {
  const { backend } = storage;

  // Bodies of these routes are file bytes: never parsed or size-limited by fastify, streamed by
  // the handler (multipart/form-data is parsed, as a stream, by @fastify/multipart).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  await app.register(multipart, { defParamCharset: 'utf8' } as never);

  app.post(
    '/rpc/store_file',
    {
      config: withCaller,
      schema: {
        headers: {
          type: 'object',
          required: ['file-path'],
          properties: {
            'file-path': { type: 'string', minLength: 1 },
            description: { type: 'string', maxLength: 4096 },
            'file-content-type': { type: 'string' },
          },
        },
        querystring: { type: 'object', additionalProperties: false, properties: {} },
      },
    },
    async (request, reply) => {
      const path = filePath(request.headers['file-path'] as string, 'File-Path');
      const declared = Number(request.headers['content-length']);
      if (declared > plinth.config.storage.maxFileSize) throw fileTooLarge(plinth.config.storage.maxFileSize);
      const requestType = request.headers['content-type'];
      const type = contentType(
        (request.headers['file-content-type'] as string | undefined) ??
          (requestType && !/^application\/octet-stream\b/i.test(requestType) ? requestType : undefined),
      );
    const id = await storeFile(storage, caller(request).claims, { path, description: headerText(request.headers.description as string | undefined), contentType: type }, request.raw);
      return reply.code(200).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(id));
    },
  );

  app.get(
    '/rpc/retrieve_file',
    {
      config: withCaller,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['p_file_path'],
          properties: { p_file_path: { type: 'string', minLength: 1 } },
        },
      },
    },
    async (request, reply) => {
      const path = filePath((request.query as { p_file_path: string }).p_file_path, 'p_file_path');
      // An overwrite can commit, and its old bytes be removed, between our lookup and our read:
      // then the lookup is repeated and finds the new version.
      for (let attempt = 1; ; attempt++) {
        const file = await findFile(storage, caller(request).claims, path);
        if (!file) return reply.code(400).send(FILE_NOT_FOUND);
        try {
          return await sendObject(request, reply, backend, file, { kind: 'attachment', filename: basename(file.path) });
        } catch (err) {
          if (!(err instanceof ObjectNotFound) || attempt === 3) throw err;
        }
      }
    },
  );

  app.post('/storage/upload', { config: withCaller, schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (request, reply) => {
    if (!request.isMultipart()) throw new PlinthError(415, 'POST /storage/upload takes multipart/form-data with "file" and "entity" parts');
    const { claims } = caller(request);
    const limit = plinth.config.storage.maxFileSize;
    const declared = Number(request.headers['content-length']);
    if (declared > limit + 2 * MAX_FIELD_BYTES + 64 * 1024) throw fileTooLarge(limit);

    let entity: Entity | undefined;
    let idType = '';
    let metadata: unknown;
    let file: { filename: string; contentType: string } | undefined;
    let written: WrittenObject | undefined;
    try {
      const parts = request.parts({
        limits: { files: 1, fields: 2, parts: 3, fieldSize: MAX_FIELD_BYTES, fileSize: limit + 1 },
        throwFileSizeLimit: false,
      } as never) as AsyncIterableIterator<Multipart>;
      for await (const part of parts) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') throw invalid(`Unexpected file part "${part.fieldname}"; the file goes in the "file" part`);
          file = { filename: checkFilename(recoverUtf8(part.filename ?? '')), contentType: contentType(part.mimetype) };
          // The entity part came first: refuse before storing anything if the caller may not update it.
          if (entity) await precheckUpload(storage, claims, entity, idType, file.filename);
          written = await writeObject(storage, await reserveObject(storage), part.file, request.raw);
        } else if (part.fieldname === 'entity') {
          entity = toEntity(jsonField('entity', part.value));
          ({ idType } = await describeEntity(storage, entity));
        } else if (part.fieldname === 'metadata') {
          metadata = jsonField('metadata', part.value);
          if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw invalid('The "metadata" form field must be a JSON object');
        } else {
          throw invalid(`Unexpected form field "${part.fieldname}"; expected file, entity and optionally metadata`);
        }
      }
      if (!written || !file) throw invalid('The form has no "file" part');
      if (!entity) throw invalid('The form has no "entity" part: JSON {"table","id","field"}');
    } catch (err) {
      if (written) {
        // Not committed: drop the bytes now rather than leave them to the sweeper.
        await discardObject(storage, written);
        release(storage, written.key);
      }
      throw multipartError(err);
    }
    await commitUpload(storage, claims, entity, idType, { ...file, metadata }, written);
    return reply.code(200).send({
      table: entity.table,
      id: entity.id,
      field: entity.field,
      filename: file.filename,
      size: written.size,
      sha256: written.sha256,
      content_type: file.contentType,
      metadata: metadata ?? null,
      url: `/storage/download/${[entity.table, entity.id, entity.field, file.filename].map(encodeURIComponent).join('/')}`,
    });
  });

  app.get(
    '/storage/download/:table/:id/:field/:filename',
    { config: withCallerOrAnonInQuery, schema: { params: entityParams, querystring: { type: 'object', additionalProperties: false, properties: { apikey: { type: 'string' } } } } },
    async (request, reply) => {
      const { table, id, field, filename } = request.params as Entity & { filename: string };
      const entity = { table, id, field };
      const { idType } = await describeEntity(storage, entity);
      for (let attempt = 1; ; attempt++) {
        const obj = await findEntityFile(storage, caller(request).claims, entity, idType, checkFilename(filename));
        if (!obj) throw new PlinthError(404, 'File not found.');
        try {
          return await sendObject(request, reply, backend, obj, { kind: 'inline', filename });
        } catch (err) {
          if (!(err instanceof ObjectNotFound) || attempt === 3) throw err;
        }
      }
    },
  );

  app.delete(
    '/storage/delete/:table/:id/:field/:filename',
    { config: withCaller, schema: { params: entityParams, querystring: { type: 'object', additionalProperties: false, properties: {} } } },
    async (request, reply) => {
      const { table, id, field, filename } = request.params as Entity & { filename: string };
      const entity = { table, id, field };
      const { idType } = await describeEntity(storage, entity);
      const deleted = await deleteEntityFile(storage, caller(request).claims, entity, idType, checkFilename(filename));
      if (!deleted) throw new PlinthError(404, 'File not found.');
      return reply.code(204).send();
    },
  );

  // Every other path under /storage/ is the sidecar's too: a clear 404, never the REST API.
  app.all('/storage/*', async (request) => {
    throw new PlinthError(404, `No route ${request.method} ${request.url.split('?')[0]}`);
  });
}

/** @fastify/multipart's limit errors, in Plinth's words. */
function multipartError(err: unknown): unknown {
  if (err instanceof PlinthError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return invalid('Too many form parts: send one "file", one "entity" and optionally one "metadata"');
  }
  if (code === 'FST_INVALID_JSON_FIELD_ERROR') return invalid('A form field declared as JSON is not valid JSON');
  if (code === 'FST_PROTO_VIOLATION') return invalid('Invalid form field name');
  return err;
}
