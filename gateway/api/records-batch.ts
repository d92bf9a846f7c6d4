import { Router } from 'express';
import { DomicileError, type Issue } from '../../policy/index.ts';
import type { BatchCreateItem } from '../../store/vault.ts';
import { actorOf, authenticate, credentialOf } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { addRoute, type RouteSpec } from '../openapi.ts';
import { parseInput, parseScopedInput } from '../validation.ts';
import { BATCH_MAX, batchBody, batchBodyDocument, batchItem, batchResponse } from './schemas.ts';

type ItemResult =
  | { index: number; status: 201; subjectToken: string; version: number }
  | { index: number; status: number; error: { code: string; message: string; issues: readonly Issue[] } };

/** Moves the paths of an item's issues under `$.records[index]`, so a caller can tell which item failed. */
function itemError(index: number, error: DomicileError): ItemResult {
  const prefix = `$.records[${index}]`;
  const rebase = (text: string): string => text.replace(/(^|\s)\$(?=[.[\s]|$)/g, `$1${prefix}`);
  return {
    index,
    status: error.status,
    error: { code: error.code, message: rebase(error.message), issues: error.issues.map((issue) => ({ path: rebase(issue.path), message: issue.message })) },
  };
}

/** `POST /api/v1/records:batch`: create up to BATCH_MAX records in one transaction, with one result per item. */
export function recordsBatchRouter(deps: GatewayDeps, specs: RouteSpec[]): Router {
  const router = Router();

  addRoute(
    router,
    specs,
    {
      method: 'post',
      path: '/api/v1/records\\:batch',
      operationId: 'createRecords',
      summary: `Create up to ${BATCH_MAX} records of new subjects at once`,
      description:
        'Each item is validated on its own and gets its own result: 201 with the subject token, or the status and error it would get alone. ' +
        'The valid items are written in one transaction. Items may carry an idempotencyKey, with the meaning of the Idempotency-Key header of a single create.',
      tags: ['records'],
      auth: 'credential',
      body: batchBodyDocument,
      responses: {
        200: { description: 'one result per item, in request order', schema: batchResponse },
        400: { description: 'the body is not a list of 1 to 100 records' },
        401: { description: 'missing or invalid API credential' },
        413: { description: 'body too large' },
      },
    },
    authenticate(deps.db),
    async (req, res) => {
      const credential = credentialOf(res);
      const body = parseInput(batchBody, req.body, '$');
      const results: Array<ItemResult | undefined> = new Array(body.records.length);
      const accepted: Array<{ index: number; item: BatchCreateItem }> = [];

      body.records.forEach((raw, index) => {
        try {
          const parsed = parseScopedInput(batchItem, raw, '$', deps.policy, credential, 'records:create');
          const item: BatchCreateItem = { recordType: parsed.recordType, values: parsed.values, purpose: parsed.purpose };
          if (parsed.idempotencyKey !== undefined) {
            item.idempotencyKey = parsed.idempotencyKey;
          }
          accepted.push({ index, item });
        } catch (error) {
          if (!(error instanceof DomicileError)) throw error;
          results[index] = itemError(index, error);
        }
      });

      if (accepted.length > 0) {
        const created = await deps.vault.createMany({ items: accepted.map((entry) => entry.item), actor: actorOf(credential) });
        created.forEach((result, position) => {
          const index = accepted[position]?.index ?? -1;
          results[index] = result.ok ? { index, status: 201, subjectToken: result.subjectToken, version: result.version } : itemError(index, result.error);
        });
      }
      res.json({ results });
    },
  );

  return router;
}
