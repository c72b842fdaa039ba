// Reading the form of POST /storage/upload as a stream: `entity` (and optionally `metadata`)
// first, then `file`, last. The entity must be known before the file's first byte arrives, so
// the caller's right to update the row is checked before anything is written.
import type { Multipart, MultipartFile } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { PlinthError } from '../core/errors.js';
import { parseContentType } from './content-types.js';
import { recoverUtf8 } from './paths.js';
import { refusedUnread } from './upload.js';

const MAX_FIELD_BYTES = 64 * 1024;
/** Room for the form's other parts and boundaries next to a file at the size limit. */
export const FORM_OVERHEAD = 2 * MAX_FIELD_BYTES + 64 * 1024;

export interface EntityRef {
  table: string;
  id: string;
  field: string;
}

export interface UploadForm {
  entity: EntityRef;
  metadata: unknown;
  file: { filename: string; contentType: string; stream: Readable };
  /** Resolves once the form is over; a 400 if anything follows the file. */
  end(): Promise<void>;
}

function invalid(message: string): PlinthError {
  return new PlinthError(400, message);
}

function jsonField(name: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw invalid(`The "${name}" form field is not valid JSON`);
  }
}

function toEntity(value: unknown): EntityRef {
  const v = value as Record<string, unknown>;
  const ok =
    v && typeof v === 'object' && !Array.isArray(v) &&
    typeof v.table === 'string' && typeof v.field === 'string' &&
    (typeof v.id === 'string' || typeof v.id === 'number') &&
    Object.keys(v).every((k) => ['table', 'id', 'field'].includes(k));
  if (!ok) throw invalid('The "entity" form field must be JSON {"table": "...", "id": "...", "field": "..."}');
  return { table: v.table as string, id: String(v.id), field: v.field as string };
}

/** @fastify/multipart's limit errors, in Plinth's words. */
function formError(err: unknown): unknown {
  if (err instanceof PlinthError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return invalid('Too many form parts: send one "entity", optionally one "metadata", then one "file"');
  }
  if (code === 'FST_INVALID_JSON_FIELD_ERROR') return invalid('A form field declared as JSON is not valid JSON');
  if (code === 'FST_PROTO_VIOLATION') return invalid('Invalid form field name');
  return err;
}

/** Reads the form up to the start of the file part; the file's bytes are left to stream. */
export async function readUploadForm(request: FastifyRequest, maxFileSize: number): Promise<UploadForm> {
  if (!request.isMultipart()) throw new PlinthError(415, 'POST /storage/upload takes multipart/form-data with "entity" and "file" parts');
  const declared = Number(request.headers['content-length']);
  if (declared > maxFileSize + FORM_OVERHEAD) {
    throw new PlinthError(413, `The file is larger than the limit of ${maxFileSize} bytes (PLINTH_MAX_FILE_SIZE)`, 'PLINTH413');
  }
  const parts = request.parts({
    limits: { files: 1, fields: 2, parts: 3, fieldSize: MAX_FIELD_BYTES, fileSize: maxFileSize + 1 },
    throwFileSizeLimit: false,
  } as never) as AsyncIterableIterator<Multipart>;
  const next = async () => {
    try {
      return await parts.next();
    } catch (err) {
      throw formError(err);
    }
  };

  let entity: EntityRef | undefined;
  let metadata: unknown;
  for (;;) {
    const { value: part, done } = await next();
    if (done) {
      if (!entity) throw invalid('The form has no "entity" part: JSON {"table","id","field"}');
      throw invalid('The form has no "file" part');
    }
    if (part.type === 'file') {
      const refuse = (message: string) => refusedUnread(invalid(message), part.file, request.raw);
      if (part.fieldname !== 'file') throw refuse(`Unexpected file part "${part.fieldname}"; the file goes in the "file" part`);
      if (!entity) {
        throw refuse('The "file" part came before the "entity" part: send "entity" (and "metadata") first, so your right to update the row is checked before the file is stored');
      }
      return { entity, metadata, file: fileOf(part as MultipartFile), end: () => expectEnd(next) };
    }
    if (part.fieldname === 'entity') {
      entity = toEntity(jsonField('entity', part.value));
    } else if (part.fieldname === 'metadata') {
      metadata = jsonField('metadata', part.value);
      if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw invalid('The "metadata" form field must be a JSON object');
    } else {
      throw invalid(`Unexpected form field "${part.fieldname}"; expected entity, optionally metadata, then file`);
    }
  }
}

function fileOf(part: MultipartFile): UploadForm['file'] {
  return { filename: recoverUtf8(part.filename ?? ''), contentType: parseContentType(part.mimetype), stream: part.file };
}

async function expectEnd(next: () => Promise<IteratorResult<Multipart>>): Promise<void> {
  const { done } = await next();
  if (!done) throw invalid('The "file" part must be the last part of the form: send "entity" and "metadata" before it');
}
