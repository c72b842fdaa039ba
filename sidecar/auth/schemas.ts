// JSON schemas of the account routes, and the wording of their validation errors. Every body is a
// closed object (additionalProperties: false): an unknown field such as "app_role" is refused
// before any handler runs.
import { Ajv } from 'ajv';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';

// No spaces or control characters (PostgreSQL text cannot even hold NUL), exactly one @.
const email = { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s@\\u0000-\\u001f\\u007f]+@[^\\s@\\u0000-\\u001f\\u007f]+$' } as const;
// Long enough for any acceptable password; the exact limits (characters and bytes) are checked
// with a clearer message in passwords.ts.
const password = { type: 'string', minLength: 1, maxLength: 4096 } as const;
const opaqueToken = { type: 'string', minLength: 1, maxLength: 256 } as const;
const uuid = { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' } as const;

function closed(properties: Record<string, unknown>, required: string[]) {
  return { type: 'object', properties, required, additionalProperties: false } as const;
}

export const credentialsSchema = { body: closed({ email, password }, ['email', 'password']) };
// refresh_token may be left out only in cookie mode (X-Plinth-Session: cookie); the handler says so.
export const refreshSchema = { body: closed({ refresh_token: opaqueToken }, []) };
export const logoutSchema = { body: closed({ scope: { type: 'string', enum: ['local', 'global'] } }, []) };
export const magicLinkSchema = { body: closed({ email }, ['email']) };
export const tokenBodySchema = { body: closed({ token: opaqueToken }, ['token']) };
export const verifyGetSchema = { querystring: closed({ token: opaqueToken }, ['token']) };
export const verifyPostSchema = {
  querystring: closed({ token: opaqueToken }, []),
  body: closed({ token: opaqueToken }, []),
};
export const noInputSchema = { querystring: closed({}, []) };
export const listUsersSchema = {
  querystring: closed(
    { q: { type: 'string', maxLength: 320 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, offset: { type: 'integer', minimum: 0, maximum: 2147483647, default: 0 } },
    [],
  ),
};
export const setAppRoleSchema = {
  params: closed({ id: uuid }, ['id']),
  body: closed({ app_role: { type: 'string', enum: ['editor', 'admin'] } }, ['app_role']),
};

export const recoverSchema = { body: closed({ email }, ['email']) };
export const resetPasswordSchema = { body: closed({ token: opaqueToken, password }, ['token', 'password']) };
export const changePasswordSchema = { body: closed({ current_password: password, new_password: password }, ['current_password', 'new_password']) };
export const changeEmailSchema = { body: closed({ email }, ['email']) };
export const acceptInviteSchema = resetPasswordSchema;
export const createUserSchema = {
  body: closed({ email, password, email_confirmed: { type: 'boolean', default: false } }, ['email']),
};
export const inviteSchema = { body: closed({ email }, ['email']) };
export const userIdSchema = { params: closed({ id: uuid }, ['id']) };
export const userIdEmptyBodySchema = { params: closed({ id: uuid }, ['id']), body: closed({}, []) };

/** Turns ajv's errors into one sentence naming the field: `body has an unknown field "app_role"`. */
export function describeSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0];
  const where = `${dataVar}${e.instancePath.replace(/\//g, '.')}`;
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return new Error(`${where} has an unknown field ${JSON.stringify(params.additionalProperty)}`);
    case 'required':
      return new Error(`${where} is missing the field ${JSON.stringify(params.missingProperty)}`);
    case 'type':
      return new Error(`${where} must be of type ${params.type}`);
    case 'pattern':
      return new Error(`${where} is not ${/email/.test(where) ? 'an email address' : /id$/.test(where) ? 'a UUID' : 'well formed'}`);
    case 'enum':
      return new Error(`${where} must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`);
    default:
      return new Error(`${where} ${e.message}`);
  }
}

// Fastify's shared validator coerces types (a JSON number 12345678 would pass as the string
// "12345678"). Bodies here are JSON and must already have the right types; only the query
// string and path, which are text by nature, are coerced.
const strictBodies = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false });
const coercedText = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: false });

export const accountValidatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strictBodies : coercedText).compile(schema);
