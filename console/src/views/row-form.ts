// The row editor: a modal form with an input that fits each column (a yes/no list for booleans,
// number fields, date and time pickers, a JSON text area, the enum's values, a picker of the rows a
// foreign key may point to). It saves through PostgREST under the user's own RLS and stays open,
// with the server's reason, when the save is refused.
import { ApiError, call, callJson } from '../api';
import { fieldValue, inputText, type Column } from '../columns';
import { h, uid } from '../dom';

type Row = Record<string, unknown>;

/** Up to 200 rows of the referenced table, labelled by their key and a text column, for the picker. */
async function fkOptions(c: Column): Promise<Array<{ value: string; label: string }>> {
  const rows = await callJson<Row[]>(`/${encodeURIComponent(c.fk!.table)}?limit=200&order=${encodeURIComponent(c.fk!.column)}`);
  return rows.map((r) => {
    const key = String(r[c.fk!.column]);
    const text = Object.entries(r).find(([k, v]) => k !== c.fk!.column && typeof v === 'string' && !/^[0-9a-f-]{36}$/.test(v))?.[1];
    return { value: key, label: text ? `${key} · ${text}` : key };
  });
}

function inputFor(c: Column, text: string, mode: 'insert' | 'edit', id: string): HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement {
  const blank = mode === 'insert' ? (c.hasDefault ? '(default)' : c.nullable ? '(null)' : '(default)') : c.nullable ? '(null)' : null;
  const select = (values: Array<{ value: string; label: string }>) =>
    h('select', { id, name: c.name }, blank === null ? null : h('option', { value: '', selected: text === '' }, blank), values.map((v) => h('option', { value: v.value, selected: v.value === text }, v.label)));
  switch (c.kind) {
    case 'boolean':
      return select([
        { value: 'true', label: 'true' },
        { value: 'false', label: 'false' },
      ]);
    case 'enum':
      return select(c.options.map((o) => ({ value: o, label: o })));
    case 'fk': {
      const s = select(text === '' ? [] : [{ value: text, label: text }]);
      void fkOptions(c)
        .then((opts) => {
          for (const o of opts) if (o.value !== text) s.append(h('option', { value: o.value }, o.label));
          for (const o of s.options) if (o.value === text && text !== '') o.textContent = opts.find((x) => x.value === text)?.label ?? text;
        })
        .catch(() => {});
      return s;
    }
    case 'json':
      return h('textarea', { id, name: c.name, rows: 4, spellcheck: 'false', value: text }) as HTMLTextAreaElement;
    case 'integer':
      return h('input', { id, name: c.name, type: 'number', step: '1', value: text });
    case 'number':
      return h('input', { id, name: c.name, type: 'number', step: 'any', value: text });
    case 'date':
      return h('input', { id, name: c.name, type: 'date', value: text });
    case 'datetime':
      return h('input', { id, name: c.name, type: 'datetime-local', step: '1', value: text });
    case 'time':
      return h('input', { id, name: c.name, type: 'time', step: '1', value: text });
    default:
      return h('input', { id, name: c.name, type: 'text', autocomplete: 'off', value: text });
  }
}

const KIND_HINT: Partial<Record<Column['kind'], string>> = { json: 'JSON', fk: 'a row of the other table', datetime: 'your local time' };

/**
 * Opens the editor for a new row (no `row`) or an existing one, saves it, and resolves with the
 * saved row, or null when cancelled. `where` is the PostgREST filter naming the existing row.
 */
export function rowFormDialog(table: string, columns: Column[], row?: Row, where?: string): Promise<Row | null> {
  const mode = row ? 'edit' : 'insert';
  return new Promise((resolve) => {
    const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
    const inputs = new Map<Column, { el: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement; start: string }>();
    const fields = columns.map((c) => {
      const id = uid('field');
      const start = row ? inputText(c, row[c.name]) : '';
      const el = inputFor(c, start, mode, id);
      if (mode === 'edit' && c.pk) el.disabled = true;
      inputs.set(c, { el, start });
      const hintText = [c.format, KIND_HINT[c.kind], c.fk ? `→ ${c.fk.table}.${c.fk.column}` : null, c.pk ? 'primary key' : null].filter(Boolean).join(' · ');
      const hint = h('small', { id: `${id}-hint` }, hintText);
      el.setAttribute('aria-describedby', hint.id);
      return h('div', { class: 'field' }, h('label', { for: id }, c.name), el, hint);
    });
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const save = h('button', { type: 'submit', class: 'primary' }, mode === 'insert' ? 'Insert row' : 'Save changes');
    const title = uid('row-form-title');
    const form = h('form', { class: 'row-form', method: 'dialog' }, h('h2', { id: title }, mode === 'insert' ? `New row in ${table}` : `Edit row of ${table}`), h('div', { class: 'row-fields' }, fields), alert, h('div', { class: 'actions' }, cancel, save));
    const dialog = h('dialog', { class: 'confirm wide', 'aria-labelledby': title }, form);
    const finish = (saved: Row | null) => {
      dialog.close();
      dialog.remove();
      resolve(saved);
    };
    cancel.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      finish(null);
    });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      alert.hidden = true;
      const body: Row = {};
      try {
        for (const [c, { el, start }] of inputs) {
          if (mode === 'edit' && (c.pk || el.value === start)) continue;
          const v = fieldValue(c, el.value, mode);
          if (!v.omit) body[c.name] = v.value;
        }
      } catch (err) {
        alert.textContent = (err as Error).message;
        alert.hidden = false;
        return;
      }
      if (mode === 'edit' && Object.keys(body).length === 0) return finish(null);
      save.disabled = true;
      void (async () => {
        try {
          const path = mode === 'insert' ? `/${encodeURIComponent(table)}` : `/${encodeURIComponent(table)}?${where}`;
          const res = await call(path, { method: mode === 'insert' ? 'POST' : 'PATCH', json: body, headers: { prefer: 'return=representation' } });
          const saved = (await res.json()) as Row[];
          // RLS may let a write through and hide its result (a policy for UPDATE but not SELECT): say so.
          if (saved.length === 0 && mode === 'edit') throw new ApiError(404, 'No row was changed: it no longer exists, or your policies do not let you change it.');
          finish(saved[0] ?? body);
        } catch (err) {
          alert.textContent = err instanceof ApiError ? err.message : String(err);
          alert.hidden = false;
          save.disabled = false;
        }
      })();
    });
    document.body.append(dialog);
    dialog.showModal();
    (form.querySelector('input:not([disabled]), select:not([disabled]), textarea:not([disabled])') as HTMLElement | null)?.focus();
  });
}
