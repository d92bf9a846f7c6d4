export * from './schema.ts';
export * from './errors.ts';
export { isAtLeastAsStrong, loadPolicyFile, parsePolicy } from './load.ts';
