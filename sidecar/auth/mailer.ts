// Outgoing mail over SMTP (nodemailer, SMTP_URL). Without SMTP_URL the message is written to the
// log instead: for development only, and said loudly at start.
import nodemailer from 'nodemailer';
import type { Plinth } from '../core/context.js';

export interface Mail {
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  close(): void;
}

export function createMailer(plinth: Plinth): Mailer {
  const { smtpUrl, mailFrom } = plinth.config.auth;
  if (!smtpUrl) {
    plinth.log.warn(
      '!!! SMTP_URL is not set: magic-link emails are NOT sent; each link is written to this log instead. ' +
        'Anyone who can read the log can sign in as those users. Development only: set SMTP_URL in production. !!!',
    );
    return {
      async send(mail) {
        plinth.log.warn(`[no SMTP_URL, development only] mail to ${mail.to}: ${mail.subject}\n${mail.text}`);
      },
      close() {},
    };
  }
  const transport = nodemailer.createTransport(smtpUrl);
  return {
    async send(mail) {
      await transport.sendMail({ from: mailFrom, ...mail });
    },
    close: () => transport.close(),
  };
}
