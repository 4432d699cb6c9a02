// Runs graphql-http's server audit (the GraphQL-over-HTTP specification's
// checks) against the URL given, and prints the verdicts as JSON:
// {"ok": n, "warn": n, "error": n, "findings": [{id, name, status, reason}]}.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
const findings = [];
let ok = 0;
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  if (result.status === 'ok') ok++;
  else findings.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason });
}
const count = (status) => findings.filter((f) => f.status === status).length;
console.log(JSON.stringify({ ok, warn: count('warn'), error: count('error'), findings }));
