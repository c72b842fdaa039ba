// A mail catcher for the tests that read what Plinth sends: a real SMTP server on loopback, plain
// SMTP with no STARTTLS and no login, like a development mail catcher. Each message lands in `inbox`.
import { SMTPServer } from 'smtp-server';

export interface Received {
  to: string[];
  raw: string;
}

export function mailCatcher(): { inbox: Received[]; smtp: SMTPServer } {
  const inbox: Received[] = [];
  const smtp = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        done();
      });
    },
  });
  return { inbox, smtp };
}
