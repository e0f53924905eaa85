// Record generators for Guildhall's own collections, shaped after
// lexicons/dev/guildhall/{service,endorsement,operator}.json so the indexer
// under test sees realistic records. Deterministic from (run, i) so a
// failing run can be reproduced.

export const SERVICE = 'dev.guildhall.service'
export const ENDORSEMENT = 'dev.guildhall.endorsement'
export const OPERATOR = 'dev.guildhall.operator'

const CAPABILITIES = [
  'sms.send', 'sms.receive', 'email.send', 'payments.card.charge', 'payments.card.refund',
  'translate.text', 'speech.transcribe', 'image.generate', 'search.web', 'calendar.book',
  'weather.forecast', 'geo.geocode', 'docs.summarize', 'code.review',
]

const pick = (i, n, k) => Array.from({ length: k }, (_, j) => CAPABILITIES[(i * 7 + j * 3 + n) % CAPABILITIES.length])

/** A dev.guildhall.service record; `version` bumps on every update. */
export function serviceRecord(i, { version = 0, handle = 'someone.test' } = {}) {
  const caps = [...new Set(pick(i, version, 1 + (i % 3)))]
  return {
    $type: SERVICE,
    name: `Service ${i}`,
    description: `Test service ${i} run by ${handle}, revision ${version}: ${caps.join(', ')}.`,
    capabilities: caps,
    endpoints: [{ protocol: i % 2 ? 'mcp' : 'http', url: `https://svc${i}.example.test/api`, transport: i % 2 ? 'streamable-http' : undefined }].map(
      (e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)),
    ),
    pricing: [i % 4 === 0 ? { model: 'free' } : { model: 'per_call', amount: `0.00${(i % 9) + 1}`, currency: 'USD', unit: 'call' }],
    sla: { latencyP95Ms: 100 + (i % 50) * 10, availabilityBp: 9900 + (i % 100) },
    tags: ['test', `group-${i % 5}`],
    version: `1.${version}.0`,
    createdAt: new Date().toISOString(),
  }
}

/** A dev.guildhall.endorsement of `subject` (a DID). */
export function endorsementRecord(i, subject) {
  return {
    $type: ENDORSEMENT,
    subject,
    capabilities: i % 3 === 0 ? [] : pick(i, 0, 1 + (i % 2)),
    strength: 1 + ((i * 37) % 100),
    comment: `endorsement ${i}`,
    createdAt: new Date().toISOString(),
  }
}

/** The account's dev.guildhall.operator profile (record key "self"). */
export function operatorRecord(i, handle) {
  return {
    $type: OPERATOR,
    displayName: `Operator ${handle}`,
    description: `Operator profile of ${handle}, revision ${i}.`,
    website: `https://${handle}.example.test`,
    contact: `ops@${handle}.example.test`,
    createdAt: new Date().toISOString(),
  }
}
