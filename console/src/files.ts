// The files API as the console uses it: metadata from GET /files (RLS decides which rows), bytes
// through POST /rpc/store_file and GET /rpc/retrieve_file, deletion with DELETE /files.
import { ApiError, call, callJson, failureMessage } from './api';
import { freshToken, refresh, session } from './session';

export interface FileRow {
  id: string;
  path: string;
  description: string;
  size: number | null;
  contentType: string;
  changedAt: string;
  ownerId: string;
}

type Raw = Record<string, unknown>;

const pick = (o: Raw, ...names: string[]) => names.map((n) => o[n]).find((v) => v !== undefined && v !== null);

export function fileRow(o: Raw): FileRow {
  return {
    id: String(pick(o, 'id') ?? ''),
    path: String(pick(o, 'path', 'file_path', 'name') ?? ''),
    description: String(pick(o, 'description') ?? ''),
    size: (() => {
      const v = pick(o, 'size', 'size_bytes', 'bytes', 'byte_size');
      return v === undefined ? null : Number(v);
    })(),
    contentType: String(pick(o, 'content_type', 'mime_type', 'type') ?? ''),
    changedAt: String(pick(o, 'updated_at', 'modified_at', 'created_at') ?? ''),
    ownerId: String(pick(o, 'owner_id', 'user_id', 'owner') ?? ''),
  };
}

/** PostgREST filter value for eq: percent-encoded, so `&`, `,` and `.` in a path stay literal. */
const eq = (v: string) => `eq.${encodeURIComponent(v)}`;

/** File metadata, newest first; `ownerId` narrows an admin's view (who sees every row) to their own. */
export async function listFiles(ownerId?: string): Promise<FileRow[]> {
  const filter = ownerId ? `&owner_id=${eq(ownerId)}` : '';
  const rows = await callJson<Raw[]>(`/files?order=path.asc&limit=5000${filter}`);
  return rows.map(fileRow);
}

/** Deletes one of the caller's files; refused (no row removed) when RLS does not allow it. */
export async function deleteFile(file: FileRow): Promise<void> {
  const rows = await callJson<Raw[]>(`/files?id=${eq(file.id)}`, { method: 'DELETE', headers: { prefer: 'return=representation' } });
  if (!rows || rows.length === 0) throw new ApiError(403, 'Not deleted: the file is gone, or your account may not delete it.');
}

/** Downloads the bytes with the bearer token and hands them to the browser as a saved file. */
export async function downloadFile(file: FileRow): Promise<void> {
  const res = await call(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(file.path)}`, { headers: { accept: '*/*' } });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = file.path.split('/').pop() || 'download';
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The browser has started reading the blob; give it time before the URL goes away.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * File-Path travels percent-encoded (the server decodes it, so any name, `%` included, arrives
 * exactly); Description as raw UTF-8 bytes, which XHR sends unchanged as a "byte string".
 */
const pathHeader = (path: string) => encodeURIComponent(path);
const utf8Header = (text: string) => String.fromCharCode(...new TextEncoder().encode(text));

/**
 * Uploads one file with XMLHttpRequest, the one browser API that reports upload progress.
 * Resolves with the file's id; rejects with an ApiError carrying the message to show.
 */
export async function uploadFile(file: File, path: string, description: string, onProgress: (loaded: number, total: number) => void): Promise<string> {
  try {
    return await sendFile(await freshToken(), file, path, description, onProgress);
  } catch (err) {
    // A token refused mid-session (e.g. keys rotated): refresh once and send the file again.
    if (!(err instanceof ApiError && err.status === 401 && session()?.refreshToken)) throw err;
    const next = await refresh().catch(() => null);
    if (!next) throw err;
    return sendFile(next.token, file, path, description, onProgress);
  }
}

function sendFile(token: string | null, file: File, path: string, description: string, onProgress: (loaded: number, total: number) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/rpc/store_file');
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('File-Path', pathHeader(path));
    if (description) xhr.setRequestHeader('Description', utf8Header(description));
    xhr.setRequestHeader('File-Content-Type', file.type || 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size, file.size);
        let id = xhr.responseText;
        try {
          id = JSON.parse(xhr.responseText) as string;
        } catch {
          /* a bare id */
        }
        resolve(String(id));
        return;
      }
      let message: string | undefined;
      try {
        message = (JSON.parse(xhr.responseText) as { message?: string }).message;
      } catch {
        /* not JSON */
      }
      reject(new ApiError(xhr.status, failureMessage(xhr.status, message)));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, failureMessage(0))));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'Upload cancelled.')));
    xhr.send(file);
  });
}
