// Backups (admins): the backup runs recorded in plinth.backup_runs, newest first, through
// GET /console/api/backups (console.backup_runs() in SQL decides who may read them). The sidecar
// runs backups only on its schedule, so a backup now is the `plinth backup` command, shown here.
import { ApiError, callJson } from '../api';
import { h, replace } from '../dom';
import { humanSize, shortDate } from '../format';
import { copyBlock } from './tables';

interface BackupRun {
  started_at: string;
  finished_at: string | null;
  kind: 'scheduled' | 'manual';
  status: 'running' | 'ok' | 'failed';
  bytes: number | null;
  duration_ms: number | null;
  location: string | null;
  error: string | null;
}

function duration(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function backupsView(root: HTMLElement): void {
  const holder = h('div', {}, h('p', { class: 'muted' }, 'Loading backup runs…'));
  const head = ['when', 'kind', 'status', 'size', 'duration', 'where', 'error'];
  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Backups')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'backup-runs-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'backup-runs-title' }, 'Backup runs'), h('button', { type: 'button', class: 'secondary', onclick: () => void load() }, 'Refresh')),
      h('p', { class: 'muted' }, 'Scheduled backups (PLINTH_BACKUP_SCHEDULE, written to PLINTH_BACKUP_TO, the newest PLINTH_BACKUP_KEEP kept), newest first.'),
      holder,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'backup-now-title' },
      h('h2', { id: 'backup-now-title' }, 'Back up now'),
      h('p', {}, 'A backup on demand runs on the server, with Plinth running or stopped. With PLINTH_BACKUP_PASSPHRASE set the archive is encrypted; keep the passphrase apart from the archives.'),
      copyBlock('Command', 'npx plinth backup --out plinth.tar.enc'),
      copyBlock('With docker-compose', 'docker compose exec sidecar npx plinth backup --out /backups/plinth-$(date +%F).tar.enc'),
    ),
  );

  async function load(): Promise<void> {
    try {
      const runs = await callJson<BackupRun[]>('/console/api/backups');
      if (runs.length === 0) return replace(holder, h('p', { class: 'empty' }, 'No backup run recorded. Set PLINTH_BACKUP_SCHEDULE and PLINTH_BACKUP_TO for scheduled backups.'));
      replace(
        holder,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'rows backups' },
            h('caption', { class: 'visually-hidden' }, 'Backup runs, newest first'),
            h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              {},
              runs.map((r) => {
                const cells: Array<string | Node> = [
                  h('time', { datetime: r.started_at }, shortDate(r.started_at)),
                  r.kind,
                  h('span', { class: `badge backup-${r.status}` }, r.status),
                  r.bytes === null ? '—' : h('span', { title: `${r.bytes} bytes` }, humanSize(r.bytes)),
                  duration(r.duration_ms),
                  r.location ?? '—',
                  r.error ?? '',
                ];
                return h('tr', { 'data-status': r.status, 'data-kind': r.kind }, cells.map((c, i) => h('td', { 'data-label': head[i], title: typeof c === 'string' && c ? c : null }, c)));
              }),
            ),
          ),
        ),
      );
    } catch (err) {
      replace(holder, h('p', { class: 'alert', role: 'alert' }, `The backup runs could not be loaded. ${err instanceof ApiError ? err.message : String(err)}`));
    }
  }
  void load();
}
