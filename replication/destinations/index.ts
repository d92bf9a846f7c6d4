import path from 'node:path';
import type { DestinationTarget } from '../../policy/schema.ts';
import type { Destination } from './destination.ts';
import { createFolderDestination } from './folder.ts';
import { createS3Destination } from './s3.ts';

export { partialCopyKey, validateObjectKey, type Destination } from './destination.ts';
export { createFolderDestination } from './folder.ts';
export { createS3Destination } from './s3.ts';

/** Creates the destination a policy target describes; a relative folder path resolves against `dataDir`. */
export function createDestination(target: DestinationTarget, dataDir: string): Destination {
  switch (target.kind) {
    case 'folder':
      return createFolderDestination(path.resolve(dataDir, target.path));
    case 's3':
      return createS3Destination(target);
  }
}
