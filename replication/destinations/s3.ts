import { createHash } from 'node:crypto';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { DestinationTarget } from '../../policy/schema.ts';
import { validateObjectKey, type Destination } from './destination.ts';

export type S3Target = Extract<DestinationTarget, { kind: 's3' }>;

/** Milliseconds to open a TCP connection, and of socket inactivity while waiting for a response; a stalled destination must not hold a batch forever. */
const CONNECTION_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 15_000;

/**
 * Creates a destination that stores each object in an S3 bucket under the
 * target's prefix. Credentials come from the default AWS provider chain
 * (environment, shared config files, web identity, container or instance role).
 */
export function createS3Destination(target: S3Target): Destination {
  const client = new S3Client({
    region: target.region,
    forcePathStyle: target.forcePathStyle,
    ...(target.endpoint === undefined ? {} : { endpoint: target.endpoint }),
    // By default the SDK sends a stream body as aws-chunked with a trailing
    // CRC32, and s3rver 3.7 stores that framing as part of the object. With
    // checksums only where an operation requires one, the body goes out plain.
    // `put` sends a SHA-256 checksum header of its own, which AWS S3 verifies.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // The outbox retries with backoff, so one retry inside the SDK is enough.
    maxAttempts: 2,
    requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  });
  const prefix = normalizePrefix(target.prefix);

  return {
    kind: 's3',

    async put(key: string, body: Buffer): Promise<void> {
      validateObjectKey(key);
      await client.send(
        new PutObjectCommand({
          Bucket: target.bucket,
          Key: prefix + key,
          Body: body,
          ContentLength: body.length,
          ContentType: 'application/json',
          ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
        }),
      );
    },

    async remove(key: string): Promise<void> {
      validateObjectKey(key);
      // S3 returns 204 for a key that does not exist, so removal is idempotent.
      await client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: prefix + key }));
    },

    async close(): Promise<void> {
      client.destroy();
    },
  };
}

/** Returns the prefix without leading slashes and with one trailing slash, or '' for none. */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}
