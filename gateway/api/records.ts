import { Router } from 'express';
import { z } from 'zod';
import { actorOf, authenticate, credentialOf, requireScope } from '../auth.ts';
import type { GatewayDeps } from '../deps.ts';
import { recordForCaller } from '../egress.ts';
import { parseInput, requirePurpose, requireRecordType } from '../validation.ts';

const PURPOSE_HEADER = 'x-access-purpose';

const createBody = z.strictObject({
  recordType: z.string().min(1).max(64),
  values: z.record(z.string(), z.unknown()),
  purpose: z.string().min(1).max(64),
});

const recordTypeQuery = z.object({ recordType: z.string().min(1).max(64) });

/**
 * Idempotency keys are client-chosen ids, not data: printable ASCII only, so a
 * key can be stored and compared without normalization.
 */
const idempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be 1 to 200 printable ASCII characters without spaces');

/** Routes of `/api/v1/records`: create, read and erase by subject token. */
export function recordsRouter(deps: GatewayDeps): Router {
  const { policy, vault, keyring } = deps;
  const router = Router();
  const auth = authenticate(deps.db);

  router.post('/api/v1/records', auth, async (req, res) => {
    const credential = credentialOf(res);
    const body = parseInput(createBody, req.body, '$');
    requireRecordType(policy, body.recordType, '$.recordType');
    requireScope(credential, 'records:create', body.recordType);
    const purpose = requirePurpose(policy, body.purpose, '$.purpose');
    const key = req.headers['idempotency-key'];
    const request = {
      recordType: body.recordType,
      values: body.values,
      actor: actorOf(credential),
      purpose,
      ...(key === undefined ? {} : { idempotencyKey: parseInput(idempotencyKey, key, 'header.idempotency-key') }),
    };

    const created = await vault.create(request);
    res.status(201).json({ subjectToken: created.subjectToken, version: created.version });
  });

  router.get('/api/v1/records/:subjectToken', auth, async (req, res) => {
    const credential = credentialOf(res);
    const { recordType } = parseInput(recordTypeQuery, req.query, 'query');
    requireRecordType(policy, recordType, 'query.recordType');
    requireScope(credential, 'records:read', recordType);
    const purpose = requirePurpose(policy, req.get(PURPOSE_HEADER), `header.${PURPOSE_HEADER}`);

    const view = await vault.read({ subjectToken: String(req.params.subjectToken), recordType, actor: actorOf(credential), purpose });
    res.setHeader('Cache-Control', 'no-store');
    res.json(recordForCaller(policy, keyring, view, credential.location));
  });

  router.delete('/api/v1/records/:subjectToken', auth, async (req, res) => {
    const credential = credentialOf(res);
    const { recordType } = parseInput(recordTypeQuery, req.query, 'query');
    requireRecordType(policy, recordType, 'query.recordType');
    requireScope(credential, 'records:erase', recordType);
    const purpose = requirePurpose(policy, req.get(PURPOSE_HEADER), `header.${PURPOSE_HEADER}`);

    // Erasing a subject removes every record type it has, so the credential
    // needs the erase scope for the named type; the vault erases the subject.
    await vault.erase({ subjectToken: String(req.params.subjectToken), actor: actorOf(credential), purpose });
    res.status(204).end();
  });

  return router;
}

