// ESLint flat configuration: ESLint's recommended core rules and the
// typescript-eslint recommended rules, without type-aware rules so linting
// needs no TypeScript program.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { defineConfig } from 'eslint/config';
import { builtinRules } from 'eslint/use-at-your-own-risk';
import tseslint from 'typescript-eslint';

// The same rule set as `js.configs.recommended` of @eslint/js, read from the
// rule metadata of the installed ESLint, so that package is not a dependency.
const recommendedCoreRules = Object.fromEntries(
  [...builtinRules]
    .filter(([, rule]) => rule.meta?.docs?.recommended === true)
    .map(([name]) => [name, 'error']),
);

// Scripts that run in the browser: the widgets and the example app's pages.
const BROWSER_SCRIPTS = ['gateway/widgets/static/**/*.js', 'examples/*/public/**/*.js'];

// Globals of the Node.js process that runs ESLint, used for plain JavaScript
// files (TypeScript files leave undefined names to the compiler).
const nodeGlobals = Object.fromEntries(
  Object.getOwnPropertyNames(globalThis).map((name) => [name, 'readonly']),
);

// Globals of a browser window, read from the DOM declarations that ship with
// TypeScript, so no list is kept by hand.
const domDeclarations = readFileSync(createRequire(import.meta.url).resolve('typescript/lib/lib.dom.d.ts'), 'utf8');
const browserGlobals = Object.fromEntries(
  [...domDeclarations.matchAll(/^declare (?:var|function) (\w+)/gm)].map(([, name]) => [name, 'readonly']),
);

export default defineConfig(
  {
    ignores: ['node_modules/', 'data/', '.tmp/', '**/*.d.ts'],
  },
  {
    files: ['**/*.{js,mjs,cjs,ts,mts,cts}'],
    rules: recommendedCoreRules,
  },
  tseslint.configs.recommended,
  {
    files: ['**/*.{js,mjs,cjs}'],
    ignores: BROWSER_SCRIPTS,
    languageOptions: {
      globals: nodeGlobals,
    },
  },
  {
    files: BROWSER_SCRIPTS,
    languageOptions: {
      globals: browserGlobals,
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
