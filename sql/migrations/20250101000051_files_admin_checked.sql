-- An admin sees every row of public.files only while the account is still an admin: the token's
-- app_role claim alone would keep a demoted admin's unexpired token seeing everyone's files.

-- migrate:up
-- True when the token says admin and the account still is one. SECURITY DEFINER: policies run as
-- the caller, who cannot read auth.users.
CREATE FUNCTION auth.is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT coalesce(auth.app_role() = 'admin', false)
     AND EXISTS (SELECT FROM auth.users WHERE id = auth.uid() AND app_role = 'admin')
$$;
REVOKE ALL ON FUNCTION auth.is_admin() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.is_admin() TO anon, authenticated, service_role;

-- (SELECT …): evaluated once per statement, not once per row.
DROP POLICY files_select ON public.files;
CREATE POLICY files_select ON public.files FOR SELECT TO authenticated
  USING (owner_id = auth.uid() OR (SELECT auth.is_admin()));

-- migrate:down
DROP POLICY files_select ON public.files;
CREATE POLICY files_select ON public.files FOR SELECT TO authenticated
  USING (owner_id = auth.uid() OR auth.app_role() = 'admin');
DROP FUNCTION auth.is_admin();
