// s3rver as its own process for the S3 bench (as an S3 service is for Plinth and for any SDK
// client): one bucket, named by argv[2]. Prints its endpoint and environment as one JSON line.
import { startS3rver } from '../tests/harness.ts';

const peer = await startS3rver(process.argv[2]);
process.stdout.write(`${JSON.stringify({ endpoint: peer.endpoint, env: peer.env })}\n`);
let stopping: Promise<void> | undefined;
const stop = () => (stopping ??= peer.stop().finally(() => process.exit(0)));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The bench holds our stdin open: when it ends (an interrupted bench too), so do we.
process.stdin.once('end', stop).resume();
