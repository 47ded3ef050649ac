// node-casbin (an independent implementation of Casbin) deciding insitu's requests.
// stdin: {"model": text, "rules": [[role, department, obj, action, purpose], ...],
//         "requests": [{"roles": [...], "department", "obj", "action", "purpose"}, ...]}
// stdout: {"casbin": version, "decisions": [true|false, ...]}: allowed when any role is granted,
// as insitu asks (one enforce per role the caller holds).
'use strict';
const { newEnforcer, newModelFromString } = require('casbin');
const { version } = require('casbin/package.json');

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const enforcer = await newEnforcer(newModelFromString(input.model));
  await enforcer.addPolicies(input.rules);
  const decisions = [];
  for (const r of input.requests) {
    let allowed = false;
    for (const role of r.roles) {
      if (await enforcer.enforce(role, r.department, r.obj, r.action, r.purpose)) {
        allowed = true;
        break;
      }
    }
    decisions.push(allowed);
  }
  process.stdout.write(JSON.stringify({ casbin: version, decisions }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
