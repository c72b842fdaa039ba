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

/** A row of GET /files, as the `files` table defines it. */
interface FilesRow {
  id: string;
  owner_id: string;
  path: string;
  description: string | null;
  size: number;
  content_type: string;
  updated_at: string;
}

export function fileRow(o: FilesRow): FileRow {
  return {
    id: o.id,
    path: o.path,
    description: o.description ?? '',
    size: o.size,
    contentType: o.content_type,
    changedAt: o.updated_at,
    ownerId: o.owner_id,
  };
}

/** PostgREST filter value for eq: percent-encoded, so `&`, `,` and `.` in a path stay literal. */
const eq = (v: string) => `eq.${encodeURIComponent(v)}`;

/** File metadata, newest first; `ownerId` narrows an admin's view (who sees every row) to their own. */
export async function listFiles(ownerId?: string): Promise<FileRow[]> {
  const filter = ownerId ? `&owner_id=${eq(ownerId)}` : '';
  const rows = await callJson<FilesRow[]>(`/files?order=path.asc&limit=5000${filter}`);
  return rows.map(fileRow);
}

/** Deletes one of the caller's files; refused (no row removed) when RLS does not allow it. */
export async function deleteFile(file: FileRow): Promise<void> {
  const rows = await callJson<FilesRow[]>(`/files?id=${eq(file.id)}`, { method: 'DELETE', headers: { prefer: 'return=representation' } });
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
    if (!(err instanceof ApiError && err.status === 401 && session())) throw err;
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
        // The new file's id, as a JSON string.
        try {
          resolve(String(JSON.parse(xhr.responseText)));
        } catch {
          reject(new ApiError(502, 'The server answered the upload with something that is not a file id.'));
        }
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
