/** Identity and location of the caller: a credential, a widget session or an operator. */
export interface Actor {
  id: string;
  location: 'in-country' | 'abroad';
}

/** A record in clear as the store returns it; the gateway applies egress forms. */
export interface RecordView {
  subjectToken: string;
  recordType: string;
  version: number;
  policyVersion: number;
  /** ISO 8601 timestamp of the last write. */
  updatedAt: string;
  /** Normalized values by field name; absent fields are left out. */
  values: Record<string, string | number | boolean>;
}
