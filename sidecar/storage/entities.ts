// Entity-linked files: the file in column `field` of row `id` of public.`table`.
// PostgreSQL decides access by running the very statement as the caller: an UPDATE of the row for
// an upload, a SELECT for a download, a DELETE (rolled back) and an UPDATE clearing the field for
// a delete. RLS and grants apply as they would through PostgREST; nothing here re-implements them. Even the catalog is read as
// the caller, so a table or column the caller has no privilege on looks exactly like one that
// does not exist.
import type { IncomingMessage } from 'node:http';
import type { Claims, Tx } from '../core/db.js';
import { asCaller } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import type { EntityRef, UploadForm } from './multipart.js';
import { InvalidName, validateFilename, validateIdentifier } from './paths.js';
import type { Storage, StoredObject } from './types.js';
import { upload } from './upload.js';

export type Entity = EntityRef;

function checkEntity(entity: Entity): Entity {
  try {
    validateIdentifier(entity.table, 'entity.table');
    validateIdentifier(entity.field, 'entity.field');
  } catch (err) {
    throw new PlinthError(400, (err as Error).message);
  }
  if (entity.id.length === 0 || entity.id.length > 200) throw new PlinthError(400, 'entity.id must be 1 to 200 characters');
  return entity;
}

export function checkFilename(name: string): string {
  try {
    return validateFilename(name);
  } catch (err) {
    if (err instanceof InvalidName) throw new PlinthError(400, `Invalid filename: ${err.message}`);
    throw err;
  }
}

/**
 * As the caller: the SQL type of the entity's id column, once the table is known to be one the
 * caller holds some privilege on, and the field a text column they hold some privilege on.
 * "Absent" and "not yours to see" give the same answer.
 */
async function describeEntity(tx: Tx, entity: Entity): Promise<{ idType: string }> {
  const [table] = await tx<{ id_type: string | null; field_type: string | null }[]>`
    select
      (select format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a
        where a.attrelid = c.oid and a.attname = 'id' and a.attnum > 0 and not a.attisdropped) as id_type,
      (select format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a
        where a.attrelid = c.oid and a.attname = ${entity.field} and a.attnum > 0 and not a.attisdropped
          and pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE')) as field_type
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relname = ${entity.table} and c.relkind in ('r', 'p')
      and (pg_catalog.has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE') or pg_catalog.has_table_privilege(c.oid, 'DELETE'))`;
  if (!table) {
    // Names nothing the caller did not send: the answer must not differ between the two cases.
    throw new PlinthError(404, 'No such table that you can use: it does not exist in the public schema, or your role has no privilege on it', 'PGRST205', null,
      'Files can be linked to tables in the public schema');
  }
  if (!table.field_type) throw new PlinthError(400, `Table public.${entity.table} has no column ${entity.field} that you can use`, 'PGRST204');
  if (!table.id_type) throw new PlinthError(400, `Table public.${entity.table} has no id column; files link to rows by id`);
  if (!/^(text|character varying(\(\d+\))?)$/.test(table.field_type)) {
    throw new PlinthError(400, `Column ${entity.table}.${entity.field} is ${table.field_type}; a file field must be text`);
  }
  return { idType: table.id_type };
}

function cannot(action: string, entity: Entity): PlinthError {
  return new PlinthError(
    403,
    `You may not ${action} row ${entity.id} of ${entity.table}: it does not exist, or row-level security refuses it`,
    '42501',
  );
}

/** As the caller: set the field to the filename. True if the caller may (a row was updated). */
async function updateField(tx: Tx, entity: Entity, idType: string, filename: string): Promise<boolean> {
  const rows = await tx`
    update public.${tx(entity.table)} set ${tx(entity.field)} = ${filename}
    where id = ${entity.id}::${tx.unsafe(idType)} returning 1 as ok`;
  return rows.length > 0;
}

class Rollback extends Error {}

/** Runs `statement` in a savepoint that is always rolled back; its result is kept. */
async function tryAndUndo<T>(tx: Tx, statement: (sp: Tx) => Promise<T>): Promise<T> {
  let result!: T;
  try {
    await tx.savepoint(async (sp) => {
      result = await statement(sp as unknown as Tx);
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  return result;
}

export interface EntityUpload {
  table: string;
  id: string;
  field: string;
  filename: string;
  size: number;
  sha256: string;
  content_type: string;
  metadata: unknown;
  url: string;
}

/**
 * The form's file becomes the file of the entity's field. The caller's right to update the row is
 * proven (by an UPDATE, rolled back) before the first byte is written, and again by the UPDATE that
 * commits the link.
 */
export async function uploadEntityFile(storage: Storage, claims: Claims, form: UploadForm, request: IncomingMessage): Promise<EntityUpload> {
  const entity = form.entity;
  let filename = '';
  let idType = '';
  const { written } = await upload(storage, claims, { source: form.file.stream, request, finish: form.end }, {
    reserve: async (tx) => {
      checkEntity(entity);
      filename = checkFilename(form.file.filename);
      ({ idType } = await describeEntity(tx, entity));
      if (!(await tryAndUndo(tx, (sp) => updateField(sp, entity, idType, filename)))) throw cannot('update', entity);
      return (await tx<{ id: string }[]>`select storage.begin_entity_upload(${storage.backend.name}) as id`)[0].id;
    },
    commit: async (tx, w) => {
      if (!(await updateField(tx, entity, idType, filename))) throw cannot('update', entity);
      await tx`
        select storage.commit_entity_file(${w.id}, ${entity.table}, ${entity.id}, ${entity.field}, ${filename},
          ${form.metadata === undefined ? null : tx.json(form.metadata as never)}, ${w.size}, ${w.sha256}, ${form.file.contentType})`;
    },
  });
  const path = `/storage/download/${[entity.table, entity.id, entity.field, filename].map(encodeURIComponent).join('/')}`;
  return {
    ...entity,
    filename,
    size: written.size,
    sha256: written.sha256,
    content_type: form.file.contentType,
    metadata: form.metadata ?? null,
    url: `${storage.plinth.config.storage.filesOrigin ?? ''}${path}`,
  };
}

/** As the caller: the row must be readable and its field must name the file. */
export async function findEntityFile(storage: Storage, claims: Claims, entity: Entity, filename: string): Promise<StoredObject | null> {
  checkEntity(entity);
  const name = checkFilename(filename);
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const { idType } = await describeEntity(tx, entity);
    const [row] = await tx<{ value: string | null }[]>`
      select ${tx(entity.field)}::text as value from public.${tx(entity.table)} where id = ${entity.id}::${tx.unsafe(idType)}`;
    if (!row || row.value !== name) return null;
    const [obj] = await tx<StoredObject[]>`select * from storage.find_entity_file(${entity.table}, ${entity.id}, ${entity.field}, ${name})`;
    return obj ?? null;
  });
}

/**
 * As the caller: prove the row could be deleted (a DELETE in a savepoint, always rolled back),
 * then forget the file and clear the field. False when there is no such file.
 */
export async function deleteEntityFile(storage: Storage, claims: Claims, entity: Entity, filename: string): Promise<boolean> {
  checkEntity(entity);
  const name = checkFilename(filename);
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const { idType } = await describeEntity(tx, entity);
    let allowed: boolean;
    try {
      allowed = await tryAndUndo(tx, async (sp) => {
        const rows = await sp`delete from public.${sp(entity.table)} where id = ${entity.id}::${sp.unsafe(idType)} returning 1 as ok`;
        return rows.length > 0;
      });
    } catch (err) {
      // A foreign key that forbids deleting the row is not a refusal of the caller's right to.
      if ((err as { code?: string }).code !== '23503') throw err;
      allowed = true;
    }
    if (!allowed) throw cannot('delete', entity);
    // The field is cleared as the caller: storage.delete_entity_file refuses unless this
    // transaction's own UPDATE left the row no longer naming the file.
    await tx`
      update public.${tx(entity.table)}
         set ${tx(entity.field)} = case when ${tx(entity.field)} = ${name} then null else ${tx(entity.field)} end
       where id = ${entity.id}::${tx.unsafe(idType)}`;
    const [{ deleted }] = await tx<{ deleted: boolean }[]>`
      select storage.delete_entity_file(${entity.table}, ${entity.id}, ${entity.field}, ${name}) as deleted`;
    // Nothing was linked: undo the UPDATE above.
    if (!deleted) throw new Rollback();
    return deleted;
  }).catch((err) => {
    if (err instanceof Rollback) return false;
    throw err;
  });
}
