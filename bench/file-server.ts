// The download baseline, run as its own process (as the sidecar is): Node's plain http server
// answering every GET with fs.createReadStream of one file. Prints its port when listening.
import fs from 'node:fs';
import http from 'node:http';

const file = process.argv[2];
const server = http.createServer((req, res) => {
  const size = fs.statSync(file).size;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  fs.createReadStream(file).pipe(res);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
process.on('SIGTERM', () => process.exit(0));
