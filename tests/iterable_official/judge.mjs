// Runs Iterable's official TypeScript client (@iterable/api, pinned in
// package-lock.json) against an Iterable stand-in, and reports what its zod schemas
// think of every answer.
//
//   node judge.mjs < plan.json > results.jsonl
//
// plan.json: {"baseUrl": "http://127.0.0.1:PORT/us", "keys": {"good": "...", ...},
//             "steps": [{"name", "key", "method", "args", "expect", "until"?, "max"?}]}
//   method: an IterableClient method name (getLists, bulkUpdateUsers, ...)
//   expect: "ok" (a 2xx whose body the client's schema accepts) or an HTTP status
//           (an error whose body parses as Iterable's error shape, IterableApiError)
//   until:  call repeatedly (at most `max` times) until a call fails; the last call
//           must then meet `expect` (used for a rate limit's 429)
//
// One JSON line per step on stdout: {name, method, pass, kind, status, detail, calls}.
// kind: "ok" | "validation" (IterableResponseValidationError: a zod rejection) |
//       "api_error" | "raw_error" (an error body the client could not read as
//       Iterable's) | "network" | "other". Exit code 0 when every step passed, 1 when
//       any failed, 2 on a bad plan. Only plan.baseUrl is ever contacted.
import {
  IterableClient,
  IterableApiError,
  IterableRawError,
  IterableResponseValidationError,
  IterableNetworkError,
} from "@iterable/api";

// zod 4 formats its issues as a JSON array: one "path: message" per issue.
function zodIssues(text) {
  try {
    return JSON.parse(text)
      .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
      .join("; ");
  } catch {
    return text;
  }
}

function classify(error) {
  if (error instanceof IterableResponseValidationError) {
    return { kind: "validation", status: error.statusCode, detail: zodIssues(error.validationError) };
  }
  if (error instanceof IterableApiError) {
    return {
      kind: "api_error",
      status: error.statusCode,
      detail: `${error.code}: ${error.message}`,
    };
  }
  if (error instanceof IterableRawError) {
    return { kind: "raw_error", status: error.statusCode, detail: error.truncatedResponse };
  }
  if (error instanceof IterableNetworkError) {
    return { kind: "network", status: null, detail: error.message };
  }
  return { kind: "other", status: null, detail: String(error?.stack || error) };
}

function verdict(step, outcome) {
  if (step.expect === "ok") return outcome.kind === "ok";
  return outcome.kind === "api_error" && outcome.status === step.expect;
}

async function call(client, step) {
  const method = client[step.method];
  if (typeof method !== "function") {
    return { kind: "other", status: null, detail: `no such client method: ${step.method}` };
  }
  try {
    const value = await method.call(client, step.args ?? {});
    return { kind: "ok", status: 200, detail: summarise(value) };
  } catch (error) {
    return classify(error);
  }
}

function summarise(value) {
  const text = JSON.stringify(value);
  return text && text.length > 300 ? text.slice(0, 300) + "..." : text;
}

async function runStep(clients, step) {
  const client = clients[step.key ?? "good"];
  if (!client) return { kind: "other", status: null, detail: `no key named ${step.key}`, calls: 0 };
  if (!step.until) return { ...(await call(client, step)), calls: 1 };
  const max = step.max ?? 50;
  let outcome = null;
  for (let i = 1; i <= max; i++) {
    outcome = await call(client, step);
    if (outcome.kind !== "ok") return { ...outcome, calls: i };
  }
  return { ...outcome, calls: max, detail: `no failure in ${max} calls: ${outcome.detail}` };
}

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  let plan;
  try {
    plan = JSON.parse(input);
  } catch (error) {
    console.error(`bad plan: ${error.message}`);
    process.exit(2);
  }
  const clients = {};
  for (const [name, apiKey] of Object.entries(plan.keys)) {
    clients[name] = new IterableClient({ apiKey, baseUrl: plan.baseUrl, timeout: 30000 });
  }
  let failed = 0;
  for (const step of plan.steps) {
    const outcome = await runStep(clients, step);
    const pass = verdict(step, outcome);
    if (!pass) failed += 1;
    process.stdout.write(
      JSON.stringify({ name: step.name, method: step.method, expect: step.expect, pass, ...outcome }) + "\n",
    );
  }
  for (const client of Object.values(clients)) client.destroy();
  process.exit(failed ? 1 : 0);
}

main();
