// s3rver ships no types; the bench only constructs it, run()s and close()s it.
declare module 's3rver';
