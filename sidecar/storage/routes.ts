// The storage feature's HTTP face: POST /rpc/store_file, GET /rpc/retrieve_file (files owned by
// users) and /storage/upload, /storage/download, /storage/delete (files linked to rows). Handlers
// are thin: they read the request, then call files.ts / entities.ts; bytes stream straight through.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../core/caller.js';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import { parseContentType } from './content-types.js';
import { deleteEntityFile, findEntityFile, uploadEntityFile, type Entity } from './entities.js';
import { FILE_NOT_FOUND, findFile, storeFile } from './files.js';
import { readUploadForm } from './multipart.js';
import { basename, decodePathHeader, InvalidName, recoverUtf8, validateFilePath } from './paths.js';
import { sendCurrent, sendObject } from './send.js';
import type { StorageService } from './service.js';
import { admitUpload, fileTooLarge } from './upload.js';

function filePath(raw: string, header: string): string {
  try {
    return validateFilePath(header === 'File-Path' ? decodePathHeader(raw) : raw);
  } catch (err) {
    if (err instanceof InvalidName) throw new PlinthError(400, `Invalid ${header}: ${err.message}`);
    throw err;
  }
}

/** A header as text: raw UTF-8 bytes are accepted (Node reads header bytes as latin1). */
function headerText(raw: string | undefined): string | null {
  return raw === undefined ? null : recoverUtf8(raw);
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
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

// Every storage route acts for a caller. `<img src>` cannot send headers, so downloads also take
// the anon key as ?apikey= (and only the anon key: a user token in a URL leaks into logs).
const withCaller = { caller: {} };
const withCallerOrAnonInQuery = { caller: { query: ['apikey'], queryRoles: ['anon'] } } as const;

export async function storageRoutes(app: FastifyInstance, { plinth, storage }: { plinth: Plinth; storage: StorageService }) {
  const { backend } = storage;
  const { maxFileSize, filesOrigin } = plinth.config.storage;
  const filesHost = filesOrigin === undefined ? undefined : new URL(filesOrigin).host;

  // Bodies of these routes are file bytes: never parsed or size-limited by fastify, streamed by
  // the handler (multipart/form-data is parsed, as a stream, by @fastify/multipart).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  await app.register(multipart, { defParamCharset: 'utf8' } as never);

  /** Holds one of the client address's upload slots until the response is over. */
  async function uploadSlot(request: FastifyRequest, reply: FastifyReply) {
    reply.raw.once('close', admitUpload(storage, request.ip));
  }

  /** Passive files render in the browser only on the files origin, when there is one. */
  const mayRenderHere = (request: FastifyRequest) => filesHost === undefined || request.host === filesHost;

  app.post(
    '/rpc/store_file',
    {
      config: withCaller,
      preHandler: uploadSlot,
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
        querystring: noQuery,
      },
    },
    async (request, reply) => {
      const path = filePath(request.headers['file-path'] as string, 'File-Path');
      if (Number(request.headers['content-length']) > maxFileSize) throw fileTooLarge(maxFileSize);
      const requestType = request.headers['content-type'];
      const contentType = parseContentType(
        (request.headers['file-content-type'] as string | undefined) ??
          (requestType && !/^application\/octet-stream\b/i.test(requestType) ? requestType : undefined),
      );
      const description = headerText(request.headers.description as string | undefined);
      const id = await storeFile(storage, callerOf(request).claims, { path, description, contentType }, request.raw);
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
      return sendCurrent(
        () => findFile(storage, callerOf(request).claims, path),
        (file) => file?.key ?? null,
        (file) => (file ? sendObject(request, reply, backend, file, { filename: basename(file.path), inline: false }, plinth.log) : reply.code(400).send(FILE_NOT_FOUND)),
      );
    },
  );

  app.post('/storage/upload', { config: withCaller, preHandler: uploadSlot, schema: { querystring: noQuery } }, async (request, reply) => {
    const form = await readUploadForm(request, maxFileSize);
    return reply.code(200).send(await uploadEntityFile(storage, callerOf(request).claims, form, request.raw));
  });

  app.get(
    '/storage/download/:table/:id/:field/:filename',
    { config: withCallerOrAnonInQuery, schema: { params: entityParams, querystring: { type: 'object', additionalProperties: false, properties: { apikey: { type: 'string' } } } } },
    async (request, reply) => {
      const { table, id, field, filename } = request.params as Entity & { filename: string };
      return sendCurrent(
        async () => {
          const obj = await findEntityFile(storage, callerOf(request).claims, { table, id, field }, filename);
          if (!obj) throw new PlinthError(404, 'File not found.');
          return obj;
        },
        (obj) => obj.key,
        (obj) => sendObject(request, reply, backend, obj, { filename, inline: mayRenderHere(request) }, plinth.log),
      );
    },
  );

  app.delete(
    '/storage/delete/:table/:id/:field/:filename',
    { config: withCaller, schema: { params: entityParams, querystring: noQuery } },
    async (request, reply) => {
      const { table, id, field, filename } = request.params as Entity & { filename: string };
      const deleted = await deleteEntityFile(storage, callerOf(request).claims, { table, id, field }, filename);
      if (!deleted) throw new PlinthError(404, 'File not found.');
      return reply.code(204).send();
    },
  );

  // Every other path under /storage/ is the sidecar's too: a clear 404, never the REST API.
  app.all('/storage/*', async (request) => {
    throw new PlinthError(404, `No route ${request.method} ${request.url.split('?')[0]}`);
  });
}
