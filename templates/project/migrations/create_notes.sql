-- A first table: each signed-in user keeps private notes. Row-level security decides who sees
-- which row; the grant decides which role may use the table at all (anon gets nothing).

-- migrate:up
create table public.notes (
  id bigint generated always as identity primary key,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  body text not null,
  created_at timestamptz not null default now()
);
alter table public.notes enable row level security;
create policy notes_owner on public.notes to authenticated
  using (user_id = auth.uid()) with check (user_id = auth.uid());
grant select, insert, update, delete on public.notes to authenticated;

-- migrate:down
drop table public.notes;
