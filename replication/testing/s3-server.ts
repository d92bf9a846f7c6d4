import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

/** Access key that s3rver accepts by default; test credentials only. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * An s3rver on 127.0.0.1 with one bucket, for tests. `stop()` and `start()`
 * take the server down and bring it back on the same port with the same
 * objects, so a test can simulate a destination outage.
 */
export interface TestS3Server {
  readonly endpoint: string;
  readonly bucket: string;
  /** A client with the test credentials, for reading what a destination wrote. */
  readonly client: S3Client;
  start(): Promise<void>;
  stop(): Promise<void>;
  getText(key: string): Promise<string | undefined>;
  putText(key: string, text: string): Promise<void>;
  listKeys(): Promise<string[]>;
  /** Stops the server and deletes its files. */
  dispose(): Promise<void>;
}

export async function startTestS3Server(bucket = 'partial-copies'): Promise<TestS3Server> {
  const directory = await mkdtemp(path.join(tmpdir(), 'domicile-s3rver-'));
  let port = 0;
  let server: S3rver | undefined;

  const start = async (): Promise<void> => {
    const instance = new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      configureBuckets: [{ name: bucket, configs: [] }],
    });
    const address = await instance.run();
    port = address.port;
    server = instance;
  };
  const stop = async (): Promise<void> => {
    const instance = server;
    server = undefined;
    await instance?.close();
  };

  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'eu-central-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  return {
    endpoint,
    bucket,
    client,
    start,
    stop,

    async getText(key: string): Promise<string | undefined> {
      try {
        const output = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return await output.Body?.transformToString('utf8');
      } catch (error) {
        if (error instanceof Error && error.name === 'NoSuchKey') {
          return undefined;
        }
        throw error;
      }
    },

    async putText(key: string, text: string): Promise<void> {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: text }));
    },

    async listKeys(): Promise<string[]> {
      const output = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
      return (output.Contents ?? []).map((object) => object.Key ?? '').sort();
    },

    async dispose(): Promise<void> {
      client.destroy();
      await stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
