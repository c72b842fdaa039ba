// A sortable table of file metadata, shared by the file manager and the admin view. On a narrow
// screen each row becomes a card (styles.css), with the column name beside each value.
import { h, replace } from '../dom';
import type { FileRow } from '../files';
import { humanSize, shortDate } from '../format';

type Key = 'path' | 'description' | 'size' | 'contentType' | 'changedAt' | 'owner';

interface Column {
  key: Key;
  label: string;
  value(f: FileRow): string | number;
  cell(f: FileRow): string | Node;
  className?: string;
}

export interface FileTableOptions {
  caption: string;
  empty: string;
  /** Buttons for a row (download, delete); none in the admin view. */
  actions?(f: FileRow): HTMLElement[];
  /** The owner's email, when the table shows other users' files. */
  owner?(f: FileRow): string;
}

export function fileTable(files: FileRow[], opts: FileTableOptions): HTMLElement {
  const columns: Column[] = [
    { key: 'path', label: 'Path', value: (f) => f.path, cell: (f) => h('span', { class: 'path' }, f.path) },
    ...(opts.owner ? [{ key: 'owner' as const, label: 'Owner', value: (f: FileRow) => opts.owner!(f), cell: (f: FileRow) => opts.owner!(f) }] : []),
    { key: 'description', label: 'Description', value: (f) => f.description, cell: (f) => f.description || h('span', { class: 'muted' }, '—') },
    { key: 'size', label: 'Size', value: (f) => f.size ?? -1, cell: (f) => h('span', { title: f.size === null ? '' : `${f.size} bytes` }, humanSize(f.size)), className: 'num' },
    { key: 'contentType', label: 'Type', value: (f) => f.contentType, cell: (f) => f.contentType || '—' },
    { key: 'changedAt', label: 'Last changed', value: (f) => f.changedAt, cell: (f) => h('time', { datetime: f.changedAt }, shortDate(f.changedAt)) },
  ];
  let sortKey: Key = 'path';
  let ascending = true;
  const holder = h('div', { class: 'table-wrap' });

  const render = () => {
    if (files.length === 0) {
      replace(holder, h('p', { class: 'empty' }, opts.empty));
      return;
    }
    const col = columns.find((c) => c.key === sortKey)!;
    const sorted = [...files].sort((a, b) => {
      const x = col.value(a);
      const y = col.value(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return ascending ? c : -c;
    });
    const head = h(
      'tr',
      {},
      columns.map((c) =>
        h(
          'th',
          { scope: 'col', class: c.className, 'aria-sort': c.key === sortKey ? (ascending ? 'ascending' : 'descending') : 'none' },
          h(
            'button',
            {
              type: 'button',
              class: 'sort',
              onclick: () => {
                if (sortKey === c.key) ascending = !ascending;
                else {
                  sortKey = c.key;
                  ascending = c.key !== 'changedAt' && c.key !== 'size';
                }
                render();
                (holder.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`) as HTMLButtonElement | null)?.focus();
              },
            },
            c.label,
            h('span', { class: 'arrow', 'aria-hidden': 'true' }, c.key === sortKey ? (ascending ? ' ▲' : ' ▼') : ''),
          ),
        ),
      ),
      opts.actions ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')) : null,
    );
    const body = sorted.map((f) =>
      h(
        'tr',
        { 'data-path': f.path },
        columns.map((c) => h(c.key === 'path' ? 'th' : 'td', { 'data-label': c.label, class: c.className, scope: c.key === 'path' ? 'row' : null }, c.cell(f))),
        opts.actions ? h('td', { class: 'actions-cell' }, opts.actions(f)) : null,
      ),
    );
    replace(holder, h('table', { class: 'files' }, h('caption', { class: 'visually-hidden' }, opts.caption), h('thead', {}, head), h('tbody', {}, body)));
  };
  render();
  return holder;
}
