import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { DomicileError } from '../policy/index.ts';
import { exportLocalKeyFile, importLocalKeyFile } from '../tokenizer/keys/local-file-export.ts';
import { loadConfig, type Config } from './config.ts';

/**
 * The passphrase comes from DOMICILE_KEY_PASSPHRASE or a hidden prompt on a
 * terminal, never from a command-line flag, because arguments show in `ps` and
 * in shell history.
 */
const PASSPHRASE_VARIABLE = 'DOMICILE_KEY_PASSPHRASE';

/** Adds `domicile keys export|import`. */
export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('back up and restore the local key encryption key');

  keys
    .command('export')
    .description(`write the local key file, encrypted with a passphrase (scrypt, AES-256-GCM), to FILE with mode 0600; the passphrase comes from ${PASSPHRASE_VARIABLE} or a prompt`)
    .requiredOption('--out <file>', 'file to create; an existing file is not overwritten')
    .action(async (options: { out: string }) => {
      const config = localConfig();
      const passphrase = await readPassphrase(true);
      const data = await exportLocalKeyFile(config.keyFile, passphrase);
      const out = path.resolve(options.out);
      await writeFile(out, data, { mode: 0o600, flag: 'wx' }).catch((error: unknown) => {
        throw (error as NodeJS.ErrnoException).code === 'EEXIST'
          ? new DomicileError('conflict', `${out} already exists: choose another file or remove it`)
          : error;
      });
      console.log(`exported the local key file ${config.keyFile} to ${out}; keep the passphrase apart from this file`);
    });

  keys
    .command('import')
    .description(`restore the local key file from an export; an existing key file is replaced only by an export that contains all its key versions`)
    .requiredOption('--in <file>', 'export file written by keys export')
    .action(async (options: { in: string }) => {
      const config = localConfig();
      const data = await readFile(path.resolve(options.in));
      const passphrase = await readPassphrase(false);
      const result = await importLocalKeyFile(config.keyFile, data, passphrase);
      const messages = {
        created: `created the local key file ${config.keyFile} from the export`,
        unchanged: `the local key file ${config.keyFile} already contains the keys of the export`,
        extended: `added the newer key versions of the export to the local key file ${config.keyFile}`,
      };
      console.log(messages[result]);
    });
}

function localConfig(): Config {
  const config = loadConfig();
  if (config.keyProvider !== 'local') {
    throw new DomicileError('invalid_request', 'keys export and import apply to the local key file only; with aws-kms the KEK never leaves KMS');
  }
  return config;
}

async function readPassphrase(confirm: boolean): Promise<string> {
  const fromEnvironment = process.env[PASSPHRASE_VARIABLE];
  if (fromEnvironment !== undefined && fromEnvironment !== '') {
    return fromEnvironment;
  }
  if (!process.stdin.isTTY) {
    throw new DomicileError('invalid_request', `no passphrase: set ${PASSPHRASE_VARIABLE} or run the command on a terminal`);
  }
  const passphrase = await promptHidden('passphrase: ');
  if (confirm && (await promptHidden('passphrase again: ')) !== passphrase) {
    throw new DomicileError('invalid_request', 'the two passphrases differ');
  }
  return passphrase;
}

/** Reads one line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(question);
  input.setRawMode(true);
  input.setEncoding('utf8');
  input.resume();

  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const character of chunk) {
        if (character === '\r' || character === '\n') {
          finish();
          resolve(value);
          return;
        }
        if (character === '\u0003' || character === '\u0004') {
          finish();
          reject(new DomicileError('invalid_request', 'passphrase entry cancelled'));
          return;
        }
        if (character === '\u007f' || character === '\b') {
          value = [...value].slice(0, -1).join('');
        } else {
          value += character;
        }
      }
    };
    input.on('data', onData);
  });
}
