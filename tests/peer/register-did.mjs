#!/usr/bin/env node
// Registers a new did:plc in the peer's PLC directory whose document names the given
// #atproto signing key (did:key), handle and PDS endpoint, and prints {"did": "..."}: a test
// can then serve that DID's repo from a PDS of its own (a hostile one, say) while the
// reference directory vouches for the document.
//
//   node register-did.mjs --peer FILE --signing-key did:key:z... --handle h.test --pds http://127.0.0.1:P
import { readPeerInfo, requireNode22 } from './lib/common.mjs'

requireNode22('register-did.mjs')
await import('./lib/loopback-guard.mjs')
const { parseArgs } = await import('node:util')
const { Client } = await import('@did-plc/lib')
const { Secp256k1Keypair } = await import('@atproto/crypto')

const { values: opt } = parseArgs({
  options: {
    peer: { type: 'string', default: './data/peer.json' },
    'signing-key': { type: 'string' },
    handle: { type: 'string' },
    pds: { type: 'string' },
  },
})
for (const k of ['signing-key', 'handle', 'pds']) {
  if (!opt[k]) {
    process.stderr.write(`register-did.mjs: --${k} is required\n`)
    process.exit(2)
  }
}
const peer = readPeerInfo(opt.peer)
// A throwaway rotation key: the test never updates the DID.
const rotation = await Secp256k1Keypair.create()
const did = await new Client(peer.plc.url).createDid({
  signingKey: opt['signing-key'],
  handle: opt.handle,
  pds: opt.pds,
  rotationKeys: [rotation.did()],
  signer: rotation,
})
process.stdout.write(JSON.stringify({ did }) + '\n')
