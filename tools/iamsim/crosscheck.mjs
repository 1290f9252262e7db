// Evaluates the least-privilege proof's authorization requests with
// @cloud-copilot/iam-simulate, a published IAM simulator, so that the proof
// does not rest on its own evaluator alone (infra/iamproof.RunCrossCheck).
//
//   node tools/iamsim/crosscheck.mjs requests.json
//
// The file: {account: {ID}, principals: {name: {arn, policies: [{name,
// policy}]}}, requests: [{principal, action, resource, context}]}. Prints
// a JSON list, one {index, result, allowed, error} per request.
import { readFileSync } from 'node:fs'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = []
for (const [index, req] of input.requests.entries()) {
  const who = input.principals[req.principal]
  const contextVariables = {}
  for (const [k, v] of Object.entries(req.context ?? {})) {
    contextVariables[k] = v.length === 1 ? v[0] : v
  }
  const simulation = {
    identityPolicies: who.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal: who.arn,
      action: req.action,
      resource: { resource: req.resource, accountId: input.account.ID },
      contextVariables,
    },
  }
  try {
    const r = await runSimulation(simulation, {})
    if (r.resultType === 'error') {
      out.push({ index, result: '', allowed: false, error: JSON.stringify(r.errors) })
    } else {
      out.push({ index, result: r.overallResult, allowed: r.overallResult === 'Allowed' })
    }
  } catch (e) {
    out.push({ index, result: '', allowed: false, error: String(e?.stack ?? e) })
  }
}
process.stdout.write(JSON.stringify(out) + '\n')
