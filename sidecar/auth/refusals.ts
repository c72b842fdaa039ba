// Refusals of the account rules, tagged with why: Plinth's routes render them as they always did
// (PostgREST's shape), and the GoTrue-shaped routes turn the reason into GoTrue's error code,
// without either face deciding anything of its own.
import { PlinthError } from '../core/errors.js';

export type RefusalReason =
  | 'signup_closed'
  | 'signup_invite_only'
  | 'weak_password'
  | 'password_too_long'
  | 'email_taken'
  | 'invalid_credentials'
  | 'account_disabled'
  | 'email_not_confirmed'
  | 'current_password_required'
  | 'current_password_wrong';

export class AccountRefusal extends PlinthError {
  constructor(
    readonly reason: RefusalReason,
    status: number,
    message: string,
    code?: string,
    hint: string | null = null,
  ) {
    super(status, message, code, null, hint);
  }
}
