// Checks Guildhall's lexicons with the official @atproto/lexicon package: each document against
// the lexicon meta-schema (parseLexiconDoc), then example records with Lexicons.assertValidRecord.
//
//   node check-lexicons.mjs [cases.json]
//
// cases.json (optional): [{ "name", "nsid", "record", "valid": bool }] — records in the JSON data
// model; the Rust tests use it to compare their verdicts with the official ones.
// Prints one JSON object on stdout: { docs: [ids], results: [{ name, nsid, expected, actual, error }] }.
// Exits 1 if a document is rejected or any verdict differs from `valid`.
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Lexicons, jsonToLex, parseLexiconDoc } from '@atproto/lexicon'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const dirs = [
  join(root, 'lexicons', 'dev', 'guildhall'),
  join(root, 'lexicons', 'dev', 'guildhall', 'ledger'),
  join(root, 'crates', 'lexicon', 'external'),
]

const lex = new Lexicons()
const docs = []
let failed = false
for (const dir of dirs) {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const doc = JSON.parse(readFileSync(join(dir, file), 'utf8'))
    try {
      // Lexicons.add() only registers; parseLexiconDoc() is what checks the meta-schema.
      lex.add(parseLexiconDoc(doc))
      docs.push(doc.id)
    } catch (err) {
      failed = true
      console.error(`lexicon ${file} rejected: ${err.message}`)
    }
  }
}

// A few built-in examples so the script checks something useful when run alone.
const did = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const cid = 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq'
let cases = [
  {
    name: 'service: full',
    nsid: 'dev.guildhall.service',
    valid: true,
    record: {
      $type: 'dev.guildhall.service',
      name: 'SMS gateway',
      capabilities: ['sms.send'],
      operations: [{ id: 'send_sms', inputSchema: { type: 'object' } }],
      endpoints: [{ protocol: 'mcp', url: 'https://sms.example.com/mcp' }],
      pricing: [{ model: 'per_call', amount: '0.002', currency: 'USD', unit: 'call' }],
      sla: { latencyP95Ms: 800, availabilityBp: 9990, successRateBp: 9950 },
      regions: ['DE'],
      createdAt: '2026-11-26T10:00:00.000Z',
    },
  },
  {
    name: 'service: availability above 100%',
    nsid: 'dev.guildhall.service',
    valid: false,
    record: {
      $type: 'dev.guildhall.service',
      name: 'x',
      capabilities: ['sms.send'],
      endpoints: [{ protocol: 'mcp', url: 'https://sms.example.com/mcp' }],
      sla: { availabilityBp: 10001 },
      createdAt: '2026-11-26T10:00:00.000Z',
    },
  },
  {
    name: 'endorsement: pinned',
    nsid: 'dev.guildhall.endorsement',
    valid: true,
    record: {
      $type: 'dev.guildhall.endorsement',
      subject: did,
      service: { uri: `at://${did}/dev.guildhall.service/sms`, cid },
      strength: 80,
      createdAt: '2026-11-26T10:00:00.000Z',
    },
  },
  {
    name: 'endorsement: strength 0',
    nsid: 'dev.guildhall.endorsement',
    valid: false,
    record: { $type: 'dev.guildhall.endorsement', subject: did, strength: 0, createdAt: '2026-11-26T10:00:00.000Z' },
  },
  {
    name: 'operator: minimal',
    nsid: 'dev.guildhall.operator',
    valid: true,
    record: { $type: 'dev.guildhall.operator', displayName: 'Example Ops', createdAt: '2026-11-26T10:00:00.000Z' },
  },
  {
    name: 'operator: missing displayName',
    nsid: 'dev.guildhall.operator',
    valid: false,
    record: { $type: 'dev.guildhall.operator', createdAt: '2026-11-26T10:00:00.000Z' },
  },
]
if (process.argv[2]) cases = JSON.parse(readFileSync(process.argv[2], 'utf8'))

const results = []
for (const c of cases) {
  let actual = true
  let error = null
  try {
    lex.assertValidRecord(c.nsid, jsonToLex(c.record))
  } catch (err) {
    actual = false
    error = err.message
  }
  if (actual !== c.valid) failed = true
  results.push({ name: c.name, nsid: c.nsid, expected: c.valid, actual, error })
}

process.stdout.write(JSON.stringify({ docs, results }, null, 1) + '\n')
process.exit(failed ? 1 : 0)
