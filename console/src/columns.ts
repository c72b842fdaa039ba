// What the row editor knows of a table's columns, read from PostgREST's OpenAPI document (the
// same one that lists the tables), and how a form input's text becomes a JSON value. Pure.

export interface OpenApiProperty {
  type?: string;
  format?: string;
  description?: string;
  default?: unknown;
  enum?: string[];
}

export interface OpenApiDefinition {
  properties?: Record<string, OpenApiProperty>;
  required?: string[];
}

export type InputKind = 'boolean' | 'integer' | 'number' | 'date' | 'datetime' | 'time' | 'json' | 'enum' | 'fk' | 'text';

export interface Column {
  name: string;
  format: string;
  kind: InputKind;
  nullable: boolean;
  hasDefault: boolean;
  pk: boolean;
  fk: { table: string; column: string } | null;
  options: string[];
}

export function inputKind(p: OpenApiProperty, fk: boolean): InputKind {
  const format = p.format ?? '';
  if (fk) return 'fk';
  if (p.enum && p.enum.length > 0) return 'enum';
  if (p.type === 'boolean') return 'boolean';
  if (p.type === 'integer') return 'integer';
  if (p.type === 'number') return 'number';
  if (format === 'json' || format === 'jsonb' || format.endsWith('[]')) return 'json';
  if (format === 'date') return 'date';
  if (format.startsWith('timestamp')) return 'datetime';
  if (format.startsWith('time')) return 'time';
  return 'text';
}

export function columnsOf(def: OpenApiDefinition | undefined): Column[] {
  const required = new Set(def?.required ?? []);
  return Object.entries(def?.properties ?? {}).map(([name, p]) => {
    const m = /<fk table='([^']+)' column='([^']+)'\/>/.exec(p.description ?? '');
    const fk = m ? { table: m[1], column: m[2] } : null;
    return {
      name,
      format: p.format ?? '',
      kind: inputKind(p, fk !== null),
      nullable: !required.has(name),
      hasDefault: p.default !== undefined,
      pk: (p.description ?? '').includes('<pk/>'),
      fk,
      options: p.enum ?? [],
    };
  });
}

/** The text an input starts with for a stored value. */
export function inputText(c: Column, v: unknown): string {
  if (v === null || v === undefined) return '';
  if (c.kind === 'json') return JSON.stringify(v, null, 2);
  if (c.kind === 'datetime' && typeof v === 'string') {
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) return v;
    // datetime-local wants local wall-clock time without a zone.
    const pad = (n: number) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  return String(v);
}

export type FieldValue = { omit: true } | { omit: false; value: unknown };

/**
 * An input's text as the value to send. Empty means "the default" when inserting, and null (or
 * the empty string for a text column that cannot be null) when editing. Throws with a sentence
 * when the text cannot be that column's value.
 */
export function fieldValue(c: Column, text: string, mode: 'insert' | 'edit'): FieldValue {
  if (text === '') {
    if (mode === 'insert') return { omit: true };
    if (c.nullable) return { omit: false, value: null };
    if (c.kind === 'text') return { omit: false, value: '' };
    throw new Error(`${c.name} needs a value`);
  }
  switch (c.kind) {
    case 'boolean':
      return { omit: false, value: text === 'true' };
    case 'integer':
      if (!/^-?\d+$/.test(text.trim())) throw new Error(`${c.name} must be a whole number`);
      return { omit: false, value: text.trim() };
    case 'number':
      if (!Number.isFinite(Number(text))) throw new Error(`${c.name} must be a number`);
      return { omit: false, value: text.trim() };
    case 'json':
      try {
        return { omit: false, value: JSON.parse(text) };
      } catch {
        throw new Error(`${c.name} must be valid JSON`);
      }
    case 'datetime': {
      const d = new Date(text);
      if (Number.isNaN(d.getTime())) throw new Error(`${c.name} must be a date and time`);
      return { omit: false, value: d.toISOString() };
    }
    default:
      return { omit: false, value: text };
  }
}
