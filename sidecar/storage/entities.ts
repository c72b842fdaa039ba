// Entity-linked files: the file in column `field` of row `id` of public.`table`.
// PostgreSQL decides access by running the very statement as the caller: an UPDATE of the row for
// an upload, a SELECT for a download, a DELETE (rolled back) and an UPDATE clearing the field for a
// delete. RLS and grants apply as they would through PostgREST; nothing here re-implements them.
import type { Claims, Tx } from '../core/db.js';
import { asCaller } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import { InvalidName, validateFilename, validateIdentifier } from './paths.js';
import { release, type Storage, type WrittenObject } from './objects.js';
import type { StoredObject } from './send.js';

export interface Entity {
  table: string;
  id: string;
  field: string;
}

/** The SQL type of the entity's id column, after checking the table and column exist in public. */
export async function describeEntity(storage: Storage, entity: Entity): Promise<{ idType: string }> {
  try {
    validateIdentifier(entity.table, 'entity.table');
    validateIdentifier(entity.field, 'entity.field');
  } catch (err) {
    throw new PlinthError(400, (err as Error).message);
  }
  if (entity.id.length === 0 || entity.id.length > 200) throw new PlinthError(400, 'entity.id must be 1 to 200 characters');
  const { sql } = storage.plinth;
  const [table] = await sql<{ oid: number }[]>`
    select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relname = ${entity.table} and c.relkind in ('r', 'p')`;
  if (!table) throw new PlinthError(404, `No table public.${entity.table}`, 'PGRST205', null, 'Files can be linked to tables in the public schema');
  const columns = await sql<{ name: string; type: string }[]>`
    select attname as name, format_type(atttypid, atttypmod) as type from pg_catalog.pg_attribute
    where attrelid = ${table.oid} and attnum > 0 and not attisdropped and attname in ('id', ${entity.field})`;
  const id = columns.find((c) => c.name === 'id');
  const field = columns.find((c) => c.name === entity.field);
  if (!id) throw new PlinthError(400, `Table public.${entity.table} has no id column; files link to rows by id`);
  if (!field) throw new PlinthError(400, `Table public.${entity.table} has no column ${entity.field}`, 'PGRST204');
  if (!/^(text|character varying(\(\d+\))?)$/.test(field.type)) {
    throw new PlinthError(400, `Column ${entity.table}.${entity.field} is ${field.type}; a file field must be text`);
  }
  return { idType: id.type };
}

export function checkFilename(name: string): string {
  try {
    return validateFilename(name);
  } catch (err) {
    if (err instanceof InvalidName) throw new PlinthError(400, `Invalid filename: ${err.message}`);
    throw err;
  }
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

/** Refuses early (before bytes are stored) when the caller could not update the row anyway. */
export async function precheckUpload(storage: Storage, claims: Claims, entity: Entity, idType: string, filename: string): Promise<void> {
  let allowed = false;
  try {
    await asCaller(storage.plinth.callerSql, claims, async (tx) => {
      allowed = await updateField(tx, entity, idType, filename);
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  if (!allowed) throw cannot('update', entity);
}

/** Links a written object to the entity, in one transaction with the UPDATE that authorises it. */
export async function commitUpload(
  storage: Storage,
  claims: Claims,
  entity: Entity,
  idType: string,
  file: { filename: string; contentType: string; metadata: unknown },
  written: WrittenObject,
): Promise<void> {
  try {
    await asCaller(storage.plinth.callerSql, claims, async (tx) => {
      if (!(await updateField(tx, entity, idType, file.filename))) throw cannot('update', entity);
      await tx`
        select storage.commit_entity_file(${written.id}, ${entity.table}, ${entity.id}, ${entity.field}, ${file.filename},
          ${file.metadata === undefined ? null : tx.json(file.metadata as never)}, ${written.size}, ${written.sha256}, ${file.contentType})`;
    });
  } catch (err) {
    await storage.backend.delete(written.key).catch(() => {});
    await storage.plinth.sql`delete from storage.objects where id = ${written.id} and state = 'writing'`.catch(() => {});
    throw err;
  } finally {
    release(storage, written.key);
  }
}

/** As the caller: the row must be readable and its field must name the file. */
export async function findEntityFile(storage: Storage, claims: Claims, entity: Entity, idType: string, filename: string): Promise<StoredObject | null> {
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
      const [row] = await tx<{ value: string | null }[]>`
        select ${tx(entity.field)}::text as value from public.${tx(entity.table)} where id = ${entity.id}::${tx.unsafe(idType)}`;
      if (!row || row.value !== filename) return null;
      const [obj] = await tx<StoredObject[]>`select * from storage.find_entity_file(${entity.table}, ${entity.id}, ${entity.field}, ${filename})`;
      return obj ?? null;
    });
}

/**
 * As the caller: prove the row could be deleted (a DELETE in a savepoint, always rolled back),
 * then forget the file and clear the field. False when there is no such file.
 */
export async function deleteEntityFile(storage: Storage, claims: Claims, entity: Entity, idType: string, filename: string): Promise<boolean> {
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
      let allowed = false;
      try {
        await tx.savepoint(async (sp) => {
          const rows = await sp`delete from public.${sp(entity.table)} where id = ${entity.id}::${sp.unsafe(idType)} returning 1 as ok`;
          allowed = rows.length > 0;
          throw new Rollback();
        });
      } catch (err) {
        // A foreign key that forbids deleting the row is not a refusal of the caller's right to.
        if ((err as { code?: string }).code === '23503') allowed = true;
        else if (!(err instanceof Rollback)) throw err;
      }
      if (!allowed) throw cannot('delete', entity);
      // The field is cleared as the caller: storage.delete_entity_file refuses unless this
      // transaction's own UPDATE left the row no longer naming the file.
      await tx`
        update public.${tx(entity.table)}
           set ${tx(entity.field)} = case when ${tx(entity.field)} = ${filename} then null else ${tx(entity.field)} end
         where id = ${entity.id}::${tx.unsafe(idType)}`;
      const [{ deleted }] = await tx<{ deleted: boolean }[]>`
        select storage.delete_entity_file(${entity.table}, ${entity.id}, ${entity.field}, ${filename}) as deleted`;
      // Nothing was linked: undo the UPDATE above.
      if (!deleted) throw new Rollback();
      return deleted;
    }).catch((err) => {
      if (err instanceof Rollback) return false;
      throw err;
    });
}
